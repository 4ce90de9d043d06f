"""Transfer learning: load pretrained (torchvision / timm / archlab) weights into a backbone.

Seed 001 fine-tunes torchvision's ImageNet models with their classifier replaced by a SpinalNet
head. :func:`load_pretrained` does exactly that for any archlab model: it reads a weights file
without unpickling arbitrary objects (safetensors, or ``torch.load(weights_only=True)`` through
:func:`archlab.train.checkpoint.load_state_dict_file`), maps timm / legacy torchvision names onto
torchvision's, loads the backbone part strictly, drops the source classifier (the archlab head
stays freshly initialised) and can freeze the backbone.

Every backbone family that can take pretrained weights describes its torchvision layout with a
:class:`WeightLayout` (class attribute ``weight_layout``): which source prefixes are the
classifier, how they map onto the family's default head, and the first convolution (adapted when
``in_chans`` differs from the source's 3 channels, as timm does).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch.nn as nn
from torch import Tensor

from archlab.errors import CheckpointError

__all__ = ["WeightLayout", "LoadReport", "load_pretrained", "torchvision_state_dict",
           "adapt_input_conv", "guess_family"]

log = logging.getLogger(__name__)

_SHOW = 6  # keys listed per category in an error message

#: a key only one family's torchvision/timm state dict has — to name the source architecture.
_FAMILY_SIGNATURES: dict[str, tuple[str, ...]] = {
    "resnet": ("layer1.0.conv1.weight",),
    "vgg": ("features.0.weight",),
    "densenet": ("features.conv0.weight",),
    "efficientnet": ("features.0.0.weight", "conv_stem.weight"),
    "recurrent_resnet": ("stem.0.weight",),
}


@dataclass(frozen=True)
class WeightLayout:
    """How a backbone family relates to torchvision's (and timm's) state dicts.

    Attributes:
        family: family name (``"resnet"``, ``"vgg"``...).
        head_map: source classifier prefix -> prefix of the same tensors in the family's default
            head (e.g. ResNet ``{"fc.": "fc."}``, DenseNet ``{"classifier.": "fc."}``).
        drop_prefixes: source keys under these prefixes belong to a classifier and are dropped.
        first_conv: key of the first convolution's weight in the backbone.
        remap: optional function translating other naming schemes (timm, legacy torchvision)
            into torchvision's; must leave torchvision names unchanged.
    """

    family: str
    head_map: Mapping[str, str]
    drop_prefixes: tuple[str, ...]
    first_conv: str
    remap: Callable[[dict[str, Tensor]], dict[str, Tensor]] | None = None


@dataclass
class LoadReport:
    """What :func:`load_pretrained` did.

    Attributes:
        loaded: backbone keys loaded from the file.
        dropped: source keys not loaded because they belong to the source classifier.
        missing / unexpected / mismatched: problems found (non-empty only with ``strict=False``).
        adapted: keys whose tensor was adapted (first conv for another ``in_chans``).
        classifier_loaded: head keys loaded from the source classifier (``keep_classifier``).
        frozen: number of backbone parameters frozen.
    """

    loaded: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)
    adapted: list[str] = field(default_factory=list)
    classifier_loaded: list[str] = field(default_factory=list)
    frozen: int = 0


def adapt_input_conv(weight: Tensor, in_chans: int) -> Tensor:
    """Adapt a first-conv weight ``(O, 3, kh, kw)`` to ``in_chans`` input channels (timm's rule).

    One channel: the RGB filters are summed (a grey image seen as R = G = B gives the same
    response). More channels: the RGB filters are repeated cyclically and scaled by ``3 / in_chans``
    so activations keep their scale.

    Raises:
        CheckpointError: the source weight does not have 3 input channels.
    """
    out_ch, src_in, kh, kw = weight.shape
    if src_in != 3:
        raise CheckpointError(f"can only adapt a 3-channel first convolution, got {tuple(weight.shape)}")
    if in_chans == 1:
        return weight.sum(dim=1, keepdim=True)  # (O, 1, kh, kw)
    reps = math.ceil(in_chans / 3)
    return weight.repeat(1, reps, 1, 1)[:, :in_chans] * (3.0 / in_chans)  # (O, in_chans, kh, kw)


def guess_family(keys: list[str] | Mapping[str, Tensor]) -> str | None:
    """The backbone family a state dict comes from, judged by its key names (``None`` if unknown)."""
    names = set(keys)
    if any(k.startswith("backbone.") for k in names):
        return "archlab"
    for family, sigs in _FAMILY_SIGNATURES.items():
        if any(s in names for s in sigs):
            return family
    return None


def _split_archlab(sd: dict[str, Tensor]) -> tuple[dict[str, Tensor], dict[str, Tensor], list[str]]:
    """An archlab Classifier state dict -> (backbone part, head part, other keys)."""
    bb = {k[len("backbone."):]: v for k, v in sd.items() if k.startswith("backbone.")}
    head = {k[len("head."):]: v for k, v in sd.items() if k.startswith("head.")}
    other = [k for k in sd if not k.startswith(("backbone.", "head."))]
    return bb, head, other


def _listing(label: str, items: list[str]) -> str:
    more = f" (+{len(items) - _SHOW} more)" if len(items) > _SHOW else ""
    return f"{len(items)} {label}: {', '.join(items[:_SHOW])}{more}"


def load_pretrained(
    model: nn.Module,
    path: str | Path,
    *,
    freeze_backbone: bool = False,
    strict: bool = True,
    keep_classifier: bool = False,
    adapt_in_chans: bool = True,
) -> LoadReport:
    """Load pretrained backbone weights into ``model`` (an archlab Classifier or a bare backbone).

    Accepted files (``.safetensors``, ``.pth``/``.pt``/``.bin``/``.ckpt`` via
    ``torch.load(weights_only=True)`` — nothing in the file is executed):

    - a torchvision state dict of the same architecture (``resnet18-*.pth`` ...), legacy key
      names included (old DenseNet ``norm.1``);
    - a timm state dict where the family's names differ (EfficientNet ``conv_stem``/``blocks``);
      timm's ResNet/VGG/DenseNet backbones already use torchvision's names;
    - an archlab state dict: a Classifier's (``backbone.*``/``head.*``) or a backbone's own.

    The source classifier (``fc``/``classifier``/timm's ``head``...) is dropped; the model's head
    keeps its fresh initialisation unless ``keep_classifier`` is set.

    Args:
        model: the model to load into (in place).
        path: the weights file.
        freeze_backbone: set ``requires_grad=False`` on every backbone parameter (train the head
            only). BatchNorm running statistics still update in ``train()`` mode; call
            ``model.backbone.eval()`` after ``model.train()`` to freeze them too.
        strict: every backbone tensor must be in the file with the right shape and the file may
            hold nothing but backbone and classifier tensors; ``False`` loads what matches and
            reports the rest in the returned :class:`LoadReport` (e.g. SE-ResNet from ResNet).
        keep_classifier: also load the source classifier into the head; needs the family's
            default head with matching shapes (e.g. 1000 ImageNet classes).
        adapt_in_chans: adapt a 3-channel first convolution to the model's ``in_chans``.

    Returns:
        A :class:`LoadReport`.

    Raises:
        CheckpointError: unreadable file, a pickle that is not a plain state dict, or (strict)
            weights of another architecture — missing/unexpected keys and shape mismatches are
            listed, with the source architecture when it can be recognised.
    """
    from archlab.train.checkpoint import load_state_dict_file  # train/ imports models: keep lazy

    path = Path(path)
    backbone = getattr(model, "backbone", model)
    layout: WeightLayout | None = getattr(backbone, "weight_layout", None)
    head = getattr(model, "head", None) if backbone is not model else None
    sd = load_state_dict_file(path)
    report = LoadReport()

    head_src: dict[str, Tensor] = {}  # the source classifier
    archlab_head = guess_family(sd) == "archlab"
    if archlab_head:
        src, head_src, other = _split_archlab(sd)
        report.unexpected.extend(other)
        report.dropped.extend(f"head.{k}" for k in head_src)
    else:
        src = layout.remap(dict(sd)) if layout is not None and layout.remap is not None else dict(sd)
    target = backbone.state_dict()

    if not archlab_head and layout is not None:
        for k in list(src):
            if k not in target and k.startswith(layout.drop_prefixes):
                head_src[k] = src.pop(k)
                report.dropped.append(k)

    # Old torchvision files have no BatchNorm `num_batches_tracked`: harmless, keep the model's.
    missing = [k for k in target if k not in src and not k.endswith("num_batches_tracked")]
    report.unexpected.extend(k for k in src if k not in target)
    if layout is not None and adapt_in_chans and layout.first_conv in src and layout.first_conv in target:
        w, t = src[layout.first_conv], target[layout.first_conv]
        if w.ndim == 4 and w.shape != t.shape and w.shape[0] == t.shape[0] and w.shape[2:] == t.shape[2:] \
                and w.shape[1] == 3:
            src[layout.first_conv] = adapt_input_conv(w, t.shape[1])
            report.adapted.append(layout.first_conv)
    mismatched = [f"{k}: file {tuple(src[k].shape)} vs model {tuple(v.shape)}"
                  for k, v in target.items() if k in src and src[k].shape != v.shape]
    report.missing, report.mismatched = missing, mismatched

    if missing or report.unexpected or mismatched:
        parts = [_listing(lbl, items) for lbl, items in (("missing keys", missing),
                 ("unexpected keys", report.unexpected), ("shape mismatches", mismatched)) if items]
        fam = guess_family(sd)
        ours = layout.family if layout is not None else type(backbone).__name__
        src_desc = f" (the file looks like a {fam} state dict)" if fam and fam != ours else ""
        msg = f"weights file {path}{src_desc} does not fit the {ours} backbone: " + "; ".join(parts)
        if strict:
            raise CheckpointError(
                msg + f". Use {ours} weights of the same depth and options (e.g. resnet18 weights for resnet18 "
                "without cifar_stem/se), or pass strict=False to load only the matching tensors")
        log.warning("%s; loading the matching tensors only", msg)

    head_sd = None
    if keep_classifier:  # checked before anything is loaded: a failure leaves the model untouched
        mapping = None if archlab_head or layout is None else layout.head_map
        head_sd = _classifier_state(head, head_src, mapping, path)
    bad = {m.split(":")[0] for m in mismatched}
    to_load = {k: v for k, v in src.items() if k in target and k not in bad}
    backbone.load_state_dict(to_load, strict=False)
    report.loaded = sorted(to_load)
    if head_sd is not None:
        head.load_state_dict(head_sd)
        report.classifier_loaded = sorted(head_sd)
    if freeze_backbone:
        for p in backbone.parameters():
            if p.requires_grad:
                p.requires_grad_(False)
                report.frozen += p.numel()
    return report


def _classifier_state(head: nn.Module | None, head_src: dict[str, Tensor],
                      mapping: Mapping[str, str] | None, path: Path) -> dict[str, Tensor]:
    """The head's state dict made from the source classifier (``keep_classifier=True``).

    ``mapping`` translates source prefixes into head prefixes (``None``: already head names).

    Raises:
        CheckpointError: no classifier in the file, or one that does not fit the head.
    """
    if head is None or not head_src:
        raise CheckpointError(f"keep_classifier=True but {path} holds no classifier for this model's "
                              "head (or the model has no head)")
    mapped: dict[str, Tensor] = {}
    for k, v in head_src.items():
        if mapping is None:
            mapped[k] = v
            continue
        for src_prefix, dst_prefix in mapping.items():
            if k.startswith(src_prefix):
                mapped[dst_prefix + k[len(src_prefix):]] = v
                break
    target = head.state_dict()
    missing = [k for k in target if k not in mapped]
    mismatched = [f"{k}: file {tuple(mapped[k].shape)} vs head {tuple(v.shape)}"
                  for k, v in target.items() if k in mapped and mapped[k].shape != v.shape]
    if missing or mismatched:
        parts = [_listing(lbl, items) for lbl, items in (("missing keys", missing),
                 ("shape mismatches", mismatched)) if items]
        raise CheckpointError(f"the classifier in {path} does not fit the head "
                              f"{getattr(head, 'head_name', type(head).__name__)!r}: " + "; ".join(parts)
                              + ". Use the family's default head with the source's number of classes, "
                              "or keep_classifier=False")
    return {k: mapped[k] for k in target}


def torchvision_state_dict(model: nn.Module) -> dict[str, Tensor]:
    """``model``'s state dict under torchvision's names (backbone keys + the head mapped back).

    Only for a model whose head is its family's default head (the one torchvision's classifier
    maps to); the result loads into the torchvision model of the same architecture with
    ``strict=True``.

    Raises:
        CheckpointError: the backbone has no torchvision layout, or the head is not the default one.
    """
    backbone = getattr(model, "backbone", None)
    layout: WeightLayout | None = getattr(backbone, "weight_layout", None)
    if backbone is None or layout is None:
        raise CheckpointError(f"{type(model).__name__} has no torchvision layout")
    out = dict(backbone.state_dict())
    inverse = {dst: src for src, dst in layout.head_map.items()}
    for k, v in model.head.state_dict().items():
        for dst, src in inverse.items():
            if k.startswith(dst):
                out[src + k[len(dst):]] = v
                break
        else:
            raise CheckpointError(f"head {getattr(model.head, 'head_name', '?')!r} key {k!r} has no "
                                  f"torchvision counterpart; only the {layout.family} default head maps")
    return out
