"""``archlab export RUN_DIR --format onnx|safetensors``: export a trained run's model."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def export_cmd(
    run_dir: Path = typer.Argument(..., help="run folder written by `archlab train` (its --out)"),
    format: str = typer.Option(..., "--format", "-f", help="onnx (graph for inference runtimes) or safetensors (weights + config)"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="file to write (default RUN_DIR/model.onnx or model.safetensors)"),
    weights: str = typer.Option("best", "--weights", help="best (the tested weights) or last (the last checkpoint)"),
) -> None:
    """Export a trained run's model to ONNX or safetensors.

    ONNX takes float images in [0, 1] of shape (N, C, H, W), any N, with the run's normalisation
    inside the graph; it is checked against PyTorch with onnxruntime when that is installed.
    safetensors holds the weights and the run config (archlab.export.load_safetensors_export).
    """
    from archlab._cli.console import console
    from archlab.export import export_run

    path = export_run(run_dir, format, out, weights=weights)
    size = path.stat().st_size
    console.print(f"wrote {path} ({format}, {size / 1e6:.2f} MB)")
