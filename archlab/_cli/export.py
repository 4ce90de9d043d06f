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
    from archlab.export import export_run, onnx_check_result

    path = export_run(run_dir, format, out, weights=weights)
    size = path.stat().st_size
    console.print(f"wrote {path} ({format}, {size / 1e6:.2f} MB)", highlight=False)
    if format == "onnx":
        data = path.with_name(path.name + ".data")
        if data.is_file():  # only for graphs over protobuf's 2 GiB limit
            console.print(f"  with its weights in {data} (keep both files together)", highlight=False)
        checked = onnx_check_result(path)
        if checked is None:
            console.print("  not checked: onnxruntime is not installed (.venv/bin/pip install -e '.[onnx]')",
                          highlight=False)
        else:
            console.print(
                f"  onnxruntime {checked['onnxruntime']} ran the graph on a batch of {checked['batch']}: "
                f"max |ONNX - PyTorch| = {checked['max_abs_diff']:.2g} (tolerance {checked['tolerance']})",
                highlight=False,
            )
