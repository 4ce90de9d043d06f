"""Shared machinery of the benchmarks: honest timing and JSON results with provenance.

Each benchmark runs archlab and its reference side by side in one process, interleaved, with
warm-up excluded, and writes ``bench/results/<name>.json``. ``--tiny`` runs a minimal size once so
CI keeps the scripts working without timing anything.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

RESULTS = Path(__file__).resolve().parent / "results"


def parse_args(description: str, extra: Callable[[argparse.ArgumentParser], None] | None = None) -> argparse.Namespace:
    """The common benchmark flags; ``extra`` may add a script's own."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--tiny", action="store_true", help="smallest size, one repeat (CI smoke run)")
    p.add_argument("--repeats", type=int, default=7, help="timed interleaved rounds")
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    p.add_argument("--out", type=Path, default=None, help="JSON path (default bench/results/NAME.json)")
    p.add_argument("--device", default="cpu")
    if extra is not None:
        extra(p)
    return p.parse_args()


def sync(device: str | torch.device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def time_interleaved(
    fns: dict[str, Callable[[], Any]], *, repeats: int, warmup: int = 2, device: str = "cpu",
    samples_out: dict[str, list[float]] | None = None,
) -> dict[str, dict[str, float]]:
    """Time each callable ``repeats`` times, interleaved round by round; median and spread in ms.

    ``samples_out``, when given, receives every round's milliseconds per callable (for paired ratios).
    """
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    sync(device)
    samples: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            sync(device)
            t0 = time.perf_counter()
            fn()
            sync(device)
            samples[name].append((time.perf_counter() - t0) * 1e3)
    if samples_out is not None:
        samples_out.update(samples)
    return {k: spread(v, "ms") for k, v in samples.items()}


def spread(values: list[float], unit: str) -> dict[str, float]:
    """Median, min, max and standard deviation of timed samples, keys suffixed with ``unit``."""
    return {
        f"median_{unit}": statistics.median(values),
        f"min_{unit}": min(values),
        f"max_{unit}": max(values),
        f"stdev_{unit}": statistics.stdev(values) if len(values) > 1 else 0.0,
        "n": len(values),
    }


def hardware(device: str = "cpu") -> dict[str, Any]:
    info = {
        "platform": platform.platform(),
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": str(device),
        # other processes on the machine skew timings; this says how busy it was when the result was written
        "load_average_1_5_15min": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }
    if torch.device(device).type == "cuda":
        info["gpu"] = torch.cuda.get_device_name()
    return info


def write_result(name: str, data: dict[str, Any], out: Path | None = None, *, tiny: bool = False) -> Path:
    """Write ``data`` plus hardware/versions to ``bench/results/NAME.json`` (tiny runs: ``NAME.tiny.json``)."""
    import archlab

    path = out or RESULTS / (f"{name}.tiny.json" if tiny else f"{name}.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"name": name, "archlab": archlab.__version__, "tiny": tiny, "hardware": hardware(data.get("device", "cpu")), **data}
    path.write_text(json.dumps(payload, indent=2, sort_keys=True))
    return path
