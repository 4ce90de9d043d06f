"""Transfer learning in a run or study: a pretrained backbone, frozen or with its own learning rate.

A run (or study) file names the weights in its model section::

    model:
      name: resnet18
      head: spinal
      pretrained: weights/resnet18-f37072fd.pth   # torchvision / timm / archlab layout
      freeze_backbone: false                      # true: train the head only
      backbone_lr_scale: 0.1                      # backbone lr = optim.lr x 0.1 (head: optim.lr)

What this module guarantees:

- *Provenance.* The file's SHA-256 is part of the resolved config (``model.pretrained_sha256``,
  filled in when the config is validated), so a changed weights file is a changed config: a study
  refuses to resume or relabel runs trained from the old file, and the run's provenance records
  path and hash. A file that changed after the config was made is refused when the model is built.
- *Strict loading.* The backbone is loaded with :func:`archlab.pretrained.load_pretrained`
  (``strict=True``): every backbone tensor must come from the file, the source classifier is
  dropped and the head keeps its fresh initialisation. Weights of another architecture are one
  :class:`~archlab.errors.CheckpointError` (exit 2) naming the file and the missing/unexpected keys.
- *Freezing.* ``freeze_backbone`` turns off the backbone's gradients and keeps it in eval mode
  (BatchNorm running statistics and dropout fixed), so its state dict after training equals the
  file exactly.
- *Parameter groups.* With ``backbone_lr_scale != 1`` the optimizer gets two groups (backbone at
  ``lr x scale``, the rest at ``lr``); every scheduler scales both alike.
"""

from __future__ import annotations

import hashlib
import os
import types
from pathlib import Path
from typing import Any

import torch.nn as nn

from archlab.errors import ConfigError, ConfigMismatch
from archlab.pretrained import load_pretrained

__all__ = ["file_sha256", "apply_transfer", "freeze_module", "param_groups", "transfer_provenance"]

_HASHES: dict[tuple[str, int, int], str] = {}


def file_sha256(path: str | Path) -> str:
    """SHA-256 (hex) of a file, cached per (path, size, modification time) in this process.

    Raises:
        ConfigError: the file does not exist or cannot be read.
    """
    p = Path(path).expanduser()
    try:
        st = p.stat()
    except OSError as exc:
        raise ConfigError(f"model.pretrained: weights file {p} not found ({exc.strerror}); give the path of a "
                          ".safetensors/.pth state dict") from None
    if not p.is_file():
        raise ConfigError(f"model.pretrained: {p} is not a file")
    key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _HASHES:
        h = hashlib.sha256()
        try:
            with p.open("rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
        except OSError as exc:
            raise ConfigError(f"model.pretrained: cannot read {p} ({exc})") from None
        _HASHES[key] = h.hexdigest()
    return _HASHES[key]


def freeze_module(module: nn.Module) -> int:
    """Freeze ``module``: no gradients, and always in eval mode (BatchNorm statistics, dropout).

    ``module.train(True)`` (also through a parent's ``train()``) leaves it in eval mode.

    Returns:
        The number of parameters frozen.
    """
    n = 0
    for p in module.parameters():
        if p.requires_grad:
            p.requires_grad_(False)
            n += p.numel()

    def _train(self: nn.Module, mode: bool = True) -> nn.Module:
        return nn.Module.train(self, False)

    module.train = types.MethodType(_train, module)  # type: ignore[method-assign]
    module.train(False)
    return n


def _backbone(model: nn.Module) -> nn.Module:
    backbone = getattr(model, "backbone", None)
    if not isinstance(backbone, nn.Module) or getattr(model, "head", None) is None:
        raise ConfigError(
            f"model {type(model).__name__} has no backbone/head split; pretrained, freeze_backbone and "
            "backbone_lr_scale need a classifier built as backbone + head"
        )
    return backbone


def apply_transfer(model: nn.Module, config: Any, *, load: bool = True) -> dict[str, Any] | None:
    """Load the pretrained backbone of ``config.model`` and freeze it when asked (in place).

    Args:
        model: the freshly built run model (backbone + head).
        config: the run's :class:`~archlab.train.config.TrainConfig`.
        load: read the weights file (``False``: only freeze; for a caller that loads trained
            weights over the model, so the file need not exist any more).

    Returns:
        ``None`` without transfer options, else ``{"loaded": n keys, "dropped": [...], "frozen": n}``.

    Raises:
        ConfigMismatch: the weights file changed since the config recorded its hash.
        CheckpointError: the file holds weights of another architecture (keys named).
    """
    m = config.model
    if not m.pretrained and not m.freeze_backbone:
        return None
    backbone = _backbone(model)
    info: dict[str, Any] = {}
    if m.pretrained and load:
        actual = file_sha256(m.pretrained)
        if m.pretrained_sha256 is not None and m.pretrained_sha256 != actual:
            raise ConfigMismatch(
                f"weights file {m.pretrained} changed since this run was configured (sha256 {m.pretrained_sha256[:12]}… "
                f"recorded, {actual[:12]}… now); restore the file, or start a new run/--out for the new weights"
            )
        report = load_pretrained(model, m.pretrained, strict=True)
        info.update(loaded=len(report.loaded), dropped=report.dropped, adapted=report.adapted)
    if m.freeze_backbone:
        info["frozen"] = freeze_module(backbone)
    return info


def param_groups(model: nn.Module, config: Any) -> Any:
    """The optimizer's parameters: all of them, or with ``backbone_lr_scale != 1`` two groups.

    Frozen parameters are left out. The group order (backbone, rest) is fixed, so checkpoints
    resume. Without transfer options this is ``model.parameters()`` (the layout of earlier runs).
    """
    m = config.model
    if m.backbone_lr_scale == 1.0 and not m.freeze_backbone:
        return model.parameters()
    if m.backbone_lr_scale == 1.0:
        return [p for p in model.parameters() if p.requires_grad]
    backbone = _backbone(model)
    ids = {id(p) for p in backbone.parameters()}
    bb = [p for p in backbone.parameters() if p.requires_grad]
    rest = [p for p in model.parameters() if id(p) not in ids and p.requires_grad]
    lr = config.optim.lr
    groups = [{"params": rest, "lr": lr}]
    if bb:
        groups.insert(0, {"params": bb, "lr": lr * m.backbone_lr_scale})
    return groups


def transfer_provenance(config: Any) -> dict[str, Any]:
    """``{"pretrained": {path, sha256, freeze_backbone, backbone_lr_scale}}`` or ``{}``."""
    m = config.model
    if not m.pretrained:
        return {}
    return {"pretrained": {"path": os.fspath(m.pretrained), "sha256": m.pretrained_sha256,
                           "freeze_backbone": m.freeze_backbone, "backbone_lr_scale": m.backbone_lr_scale}}
