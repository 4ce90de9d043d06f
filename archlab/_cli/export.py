"""``archlab export RUN_DIR --format onnx|safetensors``: export a trained run's model."""

from __future__ import annotations


def export_cmd() -> None:
    """Export a trained run's model to ONNX or safetensors."""
    raise NotImplementedError  # the distributed/export issue builds this command
