"""The classifier every archlab model is: a backbone followed by a head.

The backbone maps images to a feature tensor whose per-sample shape is *computed* by running the
backbone once on a zero input of the model's input size; the head is built for that shape. Any head
fits any backbone whose feature shape it can take; a head that cannot take it raises
:class:`archlab.errors.IncompatibleError` at construction.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from archlab._registry import build_head
from archlab.errors import IncompatibleError

__all__ = ["Classifier", "infer_feature_shape", "to_2tuple"]


def to_2tuple(size: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    """``28`` -> ``(28, 28)``; ``(h, w)`` stays."""
    if isinstance(size, int):
        return (size, size)
    if len(size) != 2:
        raise IncompatibleError(f"input_size must be an int or (height, width), got {size!r}")
    return (int(size[0]), int(size[1]))


@torch.no_grad()
def infer_feature_shape(
    backbone: nn.Module, in_chans: int, input_size: tuple[int, int], *, model_name: str = "model",
    native_size: int | tuple[int, int] | None = None,
) -> tuple[int, ...]:
    """Per-sample output shape of ``backbone`` for a ``(1, in_chans, H, W)`` input.

    Runs one real forward pass in eval mode (so BatchNorm statistics are not touched) and restores
    the training flags afterwards. ``native_size`` (the family's own input size) is what the error
    suggests resizing the data to.

    Raises:
        IncompatibleError: the input is too small for the backbone (a kernel or pool larger than
            the map, or an empty output).
    """
    was_training = [m.training for m in backbone.modules()]
    backbone.eval()
    try:
        param = next(backbone.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
        x = torch.zeros(1, in_chans, *input_size, device=device)
        out = backbone(x)
    except RuntimeError as exc:
        raise IncompatibleError(
            f"{model_name} cannot take {in_chans}x{input_size[0]}x{input_size[1]} inputs "
            f"({str(exc).splitlines()[0]}); {_resize_hint(native_size)}"
        ) from None
    finally:
        for m, flag in zip(backbone.modules(), was_training):
            m.training = flag
    shape = tuple(out.shape[1:])
    if any(s == 0 for s in shape):
        raise IncompatibleError(
            f"{model_name} gives an empty feature map {shape} for {input_size} inputs; {_resize_hint(native_size)}"
        )
    return shape


def _resize_hint(native_size: int | tuple[int, int] | None) -> str:
    """How to fix an input the backbone cannot take: resize the data once at load."""
    if native_size is None:
        return "use larger inputs: resize the images at load with the dataset option image_size (e.g. image_size=28)"
    h, w = to_2tuple(native_size)
    size = str(h) if h == w else f"[{h}, {w}]"
    return (
        f"resize the images at load with the dataset option image_size={size} (its native size; a run "
        f"file's data.options.image_size, `archlab train --image-size {h}`)"
    )


class Classifier(nn.Module):
    """Backbone + head, with timm's surface.

    Args:
        backbone: module mapping ``(B, in_chans, H, W)`` images to features.
        num_classes: number of logits.
        in_chans: input channels.
        input_size: (H, W) the feature shape is computed for.
        head: registered head name.
        head_kwargs: head options.
        model_name: name used in error messages.
        native_size: the family's own input size, suggested when ``input_size`` does not fit.

    Attributes:
        backbone, head: the two parts (``model.head`` is what head studies swap).
        feature_shape: per-sample backbone output shape, ``(C, H, W)`` or ``(F,)``.
        num_features: channels (or width) of the backbone output, as in timm.

    Shape:
        - Input: ``(B, in_chans, H, W)``
        - Output: ``(B, num_classes)``
    """

    def __init__(
        self,
        backbone: nn.Module,
        *,
        num_classes: int,
        in_chans: int,
        input_size: tuple[int, int],
        head: str = "linear",
        head_kwargs: dict[str, Any] | None = None,
        model_name: str = "model",
        native_size: int | tuple[int, int] | None = None,
    ):
        super().__init__()
        self.backbone = backbone
        self.in_chans = in_chans
        self.input_size = tuple(input_size)
        self.model_name = model_name
        self.feature_shape = infer_feature_shape(
            backbone, in_chans, self.input_size, model_name=model_name, native_size=native_size
        )
        self.num_features = int(self.feature_shape[0])
        self.num_classes = num_classes
        self.head_name = head
        self.head_kwargs = dict(head_kwargs or {})
        try:
            self.head = build_head(head, self.feature_shape, num_classes, **self.head_kwargs)
        except IncompatibleError as exc:
            raise IncompatibleError(
                f"head {head!r} does not fit backbone {model_name!r} with features "
                f"{self.feature_shape}: {exc}"
            ) from None

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Backbone features. Shape: ``(B, in_chans, H, W)`` -> ``(B, *feature_shape)``."""
        return self.backbone(x)

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        """Logits from features. Shape: ``(B, *feature_shape)`` -> ``(B, num_classes)``."""
        return self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def reset_classifier(self, num_classes: int, head: str | None = None, **head_kwargs: Any) -> None:
        """Replace the head by a freshly initialised one (same kind unless ``head`` is given).

        ``head_kwargs`` replace the current head options when ``head`` changes, else update them.
        """
        if head is not None and head != self.head_name:
            self.head_name, self.head_kwargs = head, dict(head_kwargs)
        else:
            self.head_kwargs.update(head_kwargs)
        self.num_classes = num_classes
        ref = next(self.backbone.parameters(), None)
        new = build_head(self.head_name, self.feature_shape, num_classes, **self.head_kwargs)
        self.head = new.to(ref.device) if ref is not None else new

    def extra_repr(self) -> str:
        return f"feature_shape={self.feature_shape}, num_classes={self.num_classes}"


def build_classifier(
    backbone: nn.Module,
    *,
    num_classes: int,
    in_chans: int,
    input_size: int | tuple[int, int] | None,
    head: str | None,
    head_kwargs: dict[str, Any] | None,
    default_input_size: int | tuple[int, int],
    default_head: tuple[str, dict[str, Any]] = ("linear", {}),
    model_name: str = "model",
) -> Classifier:
    """Assemble a :class:`Classifier`, applying the family's default head and input size.

    ``head=None`` takes ``default_head`` with its options updated by ``head_kwargs``; an explicit
    head name uses ``head_kwargs`` alone.
    """
    if head is None:
        head, kwargs = default_head[0], {**default_head[1], **(head_kwargs or {})}
    else:
        kwargs = dict(head_kwargs or {})
    size = to_2tuple(input_size if input_size is not None else default_input_size)
    return Classifier(
        backbone,
        num_classes=num_classes,
        in_chans=in_chans,
        input_size=size,
        head=head,
        head_kwargs=kwargs,
        model_name=model_name,
        native_size=default_input_size,
    )
