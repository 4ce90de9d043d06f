"""Study wall time: the runner's worker/thread choice vs one process with all threads (SPEC §9).

A small study of small models — ``studies/quickstart.yaml`` (``mnist_cnn`` on the embedded digits
at 28 px with 5 heads: linear, MLP, spinal, NCP-LTC, NCP-CfC; its epochs and optimizer) with 3 seeds = 15 runs — is
run end to end with :func:`archlab.study.runner.run_study` — grid,
database, worker start-up, data loading, training, testing — two ways, interleaved round by round,
each round into a fresh folder:

- ``runner``: the runner's own choice for this machine, ``workers="auto"``
  (:func:`archlab.study.runner.choose_workers` worker processes x
  :func:`archlab.study.runner.choose_threads` torch threads each).
- ``one_process``: ``workers=1`` — the study runs in this process with every core as a torch thread.

Reports median wall time, spread and the ratio (one_process / runner; > 1 means the runner's choice
is faster), plus the mean test accuracy of each way (the two differ only by float reduction order,
since a different thread count sums in another order). Writes ``bench/results/study.json``.

    python bench/study.py [--repeats 5]   # full run (default 7 rounds after a warm-up round)
    python bench/study.py --tiny       # CI smoke run (synthetic data, 2 short runs, one round)
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import parse_args, spread, write_result  # noqa: E402

from archlab.study.config import Study  # noqa: E402
from archlab.study.runner import choose_threads, choose_workers, run_study  # noqa: E402

def _quickstart(seeds: list[int]) -> dict[str, Any]:
    """studies/quickstart.yaml (5 heads on mnist_cnn, digits 28 px) with ``seeds``."""
    import yaml

    spec = yaml.safe_load((Path(__file__).resolve().parents[1] / "studies" / "quickstart.yaml").read_text())
    spec.pop("smoke", None)
    return {**spec, "name": "bench_study", "seeds": seeds}


STUDY: dict[str, Any] = _quickstart([0, 1, 2])
TINY: dict[str, Any] = {
    "variants": {"linear": {"model": {"head": "linear"}}, "mlp": {"model": {"head": "mlp"}}},
    "data": {"name": "synthetic", "options": {"num_samples": 90, "image_size": 28, "channels": 1, "num_classes": 3}},
    "train": {"epochs": 1, "batch_size": 30},
    "seeds": [0],
}


def _accuracy(store) -> float:
    rows = store.rows()
    return statistics.fmean(r.test["accuracy"] for r in rows) if rows else float("nan")


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    spec = {**STUDY, **TINY} if args.tiny else STUDY
    study = Study.model_validate(spec)
    runs = len(study.grid())
    repeats = 1 if args.tiny else args.repeats
    warmup = 0 if args.tiny else 1
    cores = os.cpu_count() or 1
    auto_workers = choose_workers(runs)
    auto_threads = choose_threads(auto_workers)
    ways = {"runner": "auto", "one_process": 1}
    seconds: dict[str, list[float]] = {k: [] for k in ways}
    accuracy: dict[str, list[float]] = {k: [] for k in ways}
    with tempfile.TemporaryDirectory(prefix="archlab-bench-study-") as tmp:
        for r in range(warmup + repeats):
            for name, workers in ways.items():
                out = Path(tmp) / f"{name}-{r}"
                torch.set_num_threads(cores)  # what a fresh `archlab study run` process starts with
                t0 = time.perf_counter()
                store = run_study(study, out, workers=workers, report=False)
                dt = time.perf_counter() - t0
                if r >= warmup:
                    seconds[name].append(dt)
                    accuracy[name].append(_accuracy(store))
                store.close()
    timing = {k: spread(v, "s") for k, v in seconds.items()}
    ratio = timing["one_process"]["median_s"] / timing["runner"]["median_s"]
    result = {
        "device": "cpu",
        "repeats": repeats,
        "warmup_rounds": warmup,
        "study": spec,
        "runs": runs,
        "cores": cores,
        "runner_choice": {"workers": auto_workers, "threads_per_worker": auto_threads},
        "one_process": {"workers": 1, "threads": choose_threads(1)},
        "timing": timing,
        "mean_test_accuracy": {k: statistics.fmean(v) for k, v in accuracy.items()},
        "ratio": ratio,
        # best round of each way: on a shared machine other jobs only ever slow a round down
        "ratio_best_round": timing["one_process"]["min_s"] / timing["runner"]["min_s"],
        "target": 1.0,
        "met": ratio > 1.0,
    }
    print(
        f"study of {runs} runs on {cores} cores: runner ({auto_workers} workers x {auto_threads} threads) "
        f"{timing['runner']['median_s']:.1f} s   one process x {choose_threads(1)} threads "
        f"{timing['one_process']['median_s']:.1f} s   ratio {ratio:.2f}x (best rounds {result['ratio_best_round']:.2f}x)"
    )
    path = write_result("study", result, args.out, tiny=args.tiny)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
