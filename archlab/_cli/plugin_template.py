"""``archlab study new NAME --with-plugin``: a head file of the user's own and the study that compares it.

The two files are the README's "Your own component" example: a gated MLP head registered in
``NAME_heads.py`` (outside the package), and ``NAME.yaml`` that imports it and compares it with the
built-in ``linear`` and ``mlp`` heads on the embedded digits, seeds until the answer is decided.
"""

from __future__ import annotations

__all__ = ["plugin_head_file", "plugin_study_file"]


def plugin_head_file() -> str:
    """A 20-line head plugin: ``gated_mlp`` (Linear * sigmoid gate -> Linear)."""
    return '''"""My own head: a gated MLP (value * sigmoid(gate)), registered for archlab studies."""
import math

import torch
import torch.nn as nn

import archlab


@archlab.register_head("gated_mlp")
class GatedMLP(nn.Module):
    def __init__(self, in_shape, num_classes, hidden: int = 64):
        super().__init__()
        features = math.prod(in_shape)  # (C, H, W) feature map or (F,) features, per sample
        self.value = nn.Linear(features, hidden)
        self.gate = nn.Linear(features, hidden)
        self.out = nn.Linear(hidden, num_classes)

    def forward(self, x):
        x = x.flatten(1)  # (B, F)
        return self.out(self.value(x) * torch.sigmoid(self.gate(x)))  # (B, num_classes)
'''


def plugin_study_file(name: str, head_file: str) -> str:
    """The study comparing ``gated_mlp`` of ``head_file`` with the built-in heads."""
    return f'''# archlab study file: archlab study run {name}.yaml
# Is my gated MLP head better than the built-in heads? Same backbone, data, budget and seeds.
name: {name}
imports: [{head_file}]          # my code: a file next to this one (or a module name)
data: {{name: digits, options: {{image_size: 28}}}}
model: {{name: mnist_cnn}}
train: {{epochs: 5, optim: {{name: adam, lr: 0.001}}}}
seeds: {{min: 3, max: 10, until: conclusive}}   # more seeds only while the answer is open
baseline: mlp
variants:
  mlp: {{model: {{head: mlp, head_kwargs: {{hidden: [64]}}}}, description: built-in MLP}}
  linear: {{model: {{head: linear}}, description: built-in linear head}}
  gated: {{model: {{head: gated_mlp, head_kwargs: {{hidden: 64}}}}, description: my head ({head_file})}}
smoke:
  data: {{name: synthetic, options: {{num_classes: 3, num_samples: 150, image_size: 28, channels: 1}}}}
  train: {{epochs: 1}}
  seeds: [0, 1]
'''
