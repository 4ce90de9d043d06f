"""Speed options resolved to concrete choices: memory format, fused optimizer, ``torch.compile`` and AMP.

SPEC §9: the fastest correct settings are chosen by default and recorded. A run's result must
depend only on its recorded config, so ``"auto"`` is never decided by a timed probe at run start
(a probe can flip from run to run on a busy machine). :func:`resolve_speed_options` replaces each
``"auto"`` by a fixed, measured rule of the model's structure and the device type, and the
resolved config (``true``/``false``) is what ``config.json`` and the study database store.

The rules, and the measurements behind them (``bench/speed_rule.py`` re-derives them with
``probe_memory_format`` (``bench/_timing.py``) on the machine it runs on and writes ``bench/results/speed_rule.json``):

- ``channels_last: auto`` -> ``true`` when 2-d convolutions carry at least
  :data:`CONV_SHARE_CHANNELS_LAST` (10 %) of the model's forward FLOPs (:func:`conv_flop_share`,
  counted with ``torch.utils.flop_counter``'s formulas on one sample of the run's input size), else ``false``.
  Measured on 2 CPU cores, torch 2.13, one training step per format, interleaved rounds
  (``bench/results/speed_rule.json``): channels_last was faster for every conv net timed on an idle
  machine — ``mnist_cnn`` 1.37x, ``mini_vgg`` 1.30x (batch 32) to 1.56x (batch 128), the seed-002
  weight-normalized and rotation variants 1.06-1.24x, ``connected_net`` 1.11x, EfficientNet-B0 1.40x,
  DenseNet-BC 1.18x, CRNet 1.23x; ResNet-18 (CIFAR stem) was a tie — and even ``mnist_cnn`` with the
  NCP head, whose counted FLOPs are only 19 % convolutions (the head's element-wise ops are not
  counted), gained 1.12x: the conv part gets faster and the rest does not care. The threshold only
  keeps channels_last off where convolutions are negligible. One measured exception: when the first
  convolution (the one reading the image) is rotation-invariant with 8 rotations — ``mini_vgg``
  ``8_rot_4``, 0.93x in channels_last in two separate measurements — the rule picks contiguous
  (:func:`channels_last_for`).
  Convolutions on CUDA prefer the same format (NHWC is cuDNN's native layout for tensor cores), so
  the rule does not depend on the device; ``bench/gpu.py`` measures the gain there.
- ``fused_optimizer: auto`` -> ``true`` on CPU and CUDA: torch's fused Adam/AdamW/SGD update every
  parameter in one vectorised kernel instead of ~5 tensor ops per parameter tensor. Measured on
  this 2-core CPU, 1 thread, mini-VGG (1.25 M parameters): 5.5 ms -> 1.7 ms per Adam step (about 8 %
  of a batch-32 training step); the update is the same formula, equal up to float rounding
  (``tests/train/test_speed_options.py``). Elsewhere (MPS, XLA) ``false``.
- ``compile: auto`` -> ``false``. On CPU ``torch.compile`` took ~27 s to compile ``mini_vgg`` and gave
  no per-step gain, so it never pays back within a run; on CUDA its gain is not measured yet
  (``bench/gpu.py`` records it when a GPU is lent), so auto stays off rather than hoped for.
- ``amp: auto`` -> ``true`` on CUDA (bfloat16 where the GPU supports it, else float16 with a
  gradient scaler), ``false`` on CPU (CPU autocast is slower than float32 for these models).
- On CUDA the engine also sets ``torch.backends.cudnn.benchmark`` (recorded in the result's
  provenance as ``speed.cudnn_benchmark``); CUDA results are not promised bit-exact, CPU ones are.

The memory format changes the convolution algorithm, so a ``channels_last`` run equals a contiguous
one only up to float rounding (``tests/train/test_speed_options.py`` states the tolerance); given the
resolved config, results stay exactly reproducible on CPU.
"""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Any

import torch
import torch.nn as nn

from archlab._registry import create_model
from archlab.analysis.flops import count_flops
from archlab.data import Splits
from archlab.errors import ConfigError
from archlab.layers.rotation_conv import RotationInvariantConv2d
from archlab.train.config import ModelConfig, TrainConfig
from archlab.train.run import model_input_size, prepare_data, resolve_device

__all__ = [
    "CONV_SHARE_CHANNELS_LAST",
    "channels_last_for",
    "channels_last_rule",
    "conv_flop_share",
    "needs_resolving",
    "resolve_speed_options",
    "speed_provenance",
]

CONV_SHARE_CHANNELS_LAST = 0.1  # conv FLOP share from which channels_last is chosen (bench/speed_rule.py)

_CONV_OPS = ("convolution", "_convolution", "conv2d", "cudnn_convolution", "mkldnn_convolution")


def conv_flop_share(model: nn.Module, input_size: tuple[int, ...]) -> float:
    """Share of the forward FLOPs of ``model`` spent in 2-d convolutions.

    Args:
        model: any module taking one image batch.
        input_size: ``(C, H, W)`` of one sample.

    Returns:
        conv FLOPs / all FLOPs in [0, 1] (0 for a model without counted FLOPs).
    """
    ref = next(model.parameters(), None)
    device = ref.device if ref is not None else torch.device("cpu")
    x = torch.zeros((1, *input_size), device=device)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            counts = count_flops(model, x)
    except RuntimeError as exc:
        raise ConfigError(f"cannot count the FLOPs of the model on input {tuple(input_size)}: {str(exc).splitlines()[0]}") from None
    finally:
        model.train(was_training)
    total = sum(counts.values())
    conv = sum(v for op, v in counts.items() if str(op).split(".")[-1] in _CONV_OPS)  # e.g. "aten.convolution"
    return conv / total if total else 0.0


def _device_type(device: str) -> str:
    return resolve_device(device).type


def channels_last_for(model: nn.Module, input_size: tuple[int, ...]) -> bool:
    """The measured channels_last rule for ``model`` on samples of ``input_size`` ``(C, H, W)``.

    ``True`` when 2-d convolutions carry at least :data:`CONV_SHARE_CHANNELS_LAST` of the forward
    FLOPs, except when the first convolution — the one reading the image — is rotation-invariant
    with 8 rotations (measured 0.93x: ``mini_vgg`` ``8_rot_4``; the same layer deeper in the network,
    ``8_rot_1``..``8_rot_3``, still gains 1.06x).
    """
    first = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    if isinstance(first, RotationInvariantConv2d) and first.rotations == 8:
        return False
    return conv_flop_share(model, input_size) >= CONV_SHARE_CHANNELS_LAST


@lru_cache(maxsize=256)
def _rule_for_model(model_json: str, num_classes: int, in_chans: int, size: tuple[int, int]) -> bool:
    m = ModelConfig.model_validate_json(model_json)
    with torch.random.fork_rng(devices=[]):  # the structure does not depend on the seed; leave the RNG as it was
        torch.manual_seed(0)
        model = create_model(m.name, num_classes=num_classes, in_chans=in_chans, head=m.head,
                             head_kwargs=m.head_kwargs, input_size=size, **m.kwargs)
    return channels_last_for(model, (in_chans, *size))


def needs_resolving(config: TrainConfig) -> bool:
    """Whether any speed option of ``config`` is still ``"auto"``."""
    return "auto" in (config.channels_last, config.compile, config.amp, config.fused_optimizer)


def resolve_speed_options(config: TrainConfig, splits: Splits | None = None) -> TrainConfig:
    """``config`` with every ``"auto"`` speed option replaced by its concrete, rule-based choice.

    Deterministic: the same config and data shape give the same choice on every machine of the
    same device type (no timing is involved). Options already ``true``/``false`` are kept.

    Args:
        config: a :class:`archlab.train.config.TrainConfig`.
        splits: the run's data (its channels, image size and classes); loaded from ``config``
            when ``None`` and the model must be inspected.

    Returns:
        A :class:`TrainConfig` whose ``channels_last``, ``fused_optimizer``, ``compile`` and ``amp``
        are booleans.
    """
    update: dict[str, Any] = {}
    if config.compile == "auto":
        update["compile"] = False
    if config.amp == "auto":
        update["amp"] = _device_type(config.device) == "cuda"
    if config.fused_optimizer == "auto":
        update["fused_optimizer"] = _device_type(config.device) in ("cpu", "cuda")
    if config.channels_last == "auto":
        update["channels_last"] = channels_last_rule(config, splits)
    return config.model_copy(update=update) if update else config


def channels_last_rule(config: TrainConfig, splits: Splits | None = None) -> bool:
    """The measured rule (:func:`channels_last_for`) for the model and input size of ``config``."""
    if splits is None:
        splits = prepare_data(config)
    size = tuple(int(s) for s in model_input_size(config, splits))
    return _rule_for_model(config.model.model_dump_json(), splits.train.num_classes, splits.train.in_chans, size)


def speed_provenance(config: TrainConfig, device: torch.device) -> dict[str, Any]:
    """What the run actually used for speed (for the result's provenance)."""
    amp = bool(config.amp) and device.type == "cuda"
    info: dict[str, Any] = {
        "channels_last": bool(config.channels_last),
        "fused_optimizer": config.fused_optimizer is True,
        "compile": bool(config.compile),
        **({"compile_cache": os.environ.get("TORCHINDUCTOR_CACHE_DIR")} if config.compile else {}),
        "amp": amp,
        "cudnn_benchmark": bool(device.type == "cuda" and torch.backends.cudnn.benchmark),
    }
    if amp:
        info["amp_dtype"] = "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
    return info
