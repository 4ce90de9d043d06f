"""A seed-002 mini-VGG study end to end: this checkout's defaults vs main at c88f8a6 (issue 16).

The study (smoke-sized, real epochs): the seed-002 mini-VGG variants — the plain model, two
weight-normalized ones of ``studies/seed002_weightnorm.yaml`` and one rotation-invariant one of
``studies/seed002_rotation.yaml`` — on synthetic 32x32 RGB images (4 classes: a task the models
learn within the few epochs, so rounding differences do not flip a chaotic near-chance training)
with the ``cifar`` augmentation, batch 32 and Adam as in the study files, a few epochs, one seed.

Contestants, each ``archlab study run STUDY.yaml --out DIR`` in a fresh process with the CLI's
defaults, interleaved round by round, each round into a fresh folder:

- ``main_c88f8a6``: the archlab source of commit c88f8a6 (``git archive``; its defaults: one
  process, every core a torch thread, contiguous memory format).
- ``now``: this checkout's committed HEAD, extracted like the baseline (its defaults: ``channels_last``/``compile``/``amp`` resolved by
  :func:`archlab.train.speed.resolve_speed_options`, the runner's worker/thread schedule).
- ``now_contiguous``: this checkout with ``train.channels_last: false`` (the memory format's share
  of the gain, everything else equal).
- ``main_1thread``: main again, with one torch thread per run (its ``--workers 2``, which gives each
  of two workers ``cores // 2`` threads). Not timed against: it measures how far main's own per-run
  metrics move under a rounding-only change, the float tolerance of this study (below).

Reports median wall time, spread and ``speedup`` = main / now (target >= 1.3).

Same per-run metrics within float tolerance. The runs of ``now`` compute what main's compute, on
the same data, init, batches, augmentation draws and dropout masks; they differ by float rounding
only: another memory format (channels_last), thread count (1 per run instead of 2) and the fused
Adam kernel sum and multiply in another order. Over 176 steps of 4 epochs a chaotic training
amplifies a 1e-7 rounding difference into different final weights, so the final metrics of two
rounding-equivalent runs differ by more than rounding. The tolerance is therefore measured, not
assumed: main's own metrics under a rounding-only change (``main_1thread`` vs ``main``) give, per
metric, the largest per-run difference rounding produces in this study; ``now`` must stay within
``ENVELOPE`` times it (and never tighter than 2 test images or ``LOSS_RTOL_MIN``). Before chaos
grows, the first epoch's training loss of each run must agree with main's to ``FIRST_EPOCH_RTOL``.
Writes ``bench/results/seed002_study.json``.

    python bench/seed002_study.py [--repeats 3] [--seeds 3 --out bench/results/seed002_study_3seeds.json]
    python bench/seed002_study.py --tiny   # CI: 2 tiny runs, one round; without git history the
                                           # baseline is this checkout with main's settings
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import parse_args, spread, write_result  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
BASELINE_COMMIT = "c88f8a6"
TARGET = 1.3
ENVELOPE = 1.5  # now vs main may differ by 1.5x what a rounding-only change does to main itself
LOSS_RTOL_MIN = 0.05  # test loss: the envelope is never tighter than 5 %
FIRST_EPOCH_RTOL = 0.01  # epoch-1 training loss (44 steps, before chaos grows): within 1 %

STUDY: dict[str, Any] = {
    "name": "seed002_speed",
    "description": "seed-002 mini-VGG variants, smoke-sized with real epochs (bench/seed002_study.py)",
    "data": {"name": "synthetic", "options": {"num_samples": 2000, "image_size": 32, "channels": 3, "num_classes": 4},
             "val_fraction": 0.1, "augment": "cifar"},
    "model": {"name": "mini_vgg"},
    "train": {"epochs": 4, "batch_size": 32, "optim": {"name": "adam", "lr": 0.001}},
    "seeds": [1337],
    "baseline": "plain",
    "variants": {
        "plain": {},
        "norm_conv": {"model": {"kwargs": {"norm_conv": True}}},
        "norm_conv_dense": {"model": {"kwargs": {"norm_conv": True, "norm_dense": True}}},
        "4_rot_1": {"model": {"kwargs": {"rot_convs": 1, "rotations": 4}}},
    },
}
TINY = {
    "data": {"name": "synthetic", "options": {"num_samples": 90, "image_size": 32, "channels": 3, "num_classes": 3},
             "augment": "cifar"},
    "train": {"epochs": 1, "batch_size": 16},
    "variants": {"plain": {}, "norm_conv": {"model": {"kwargs": {"norm_conv": True}}}},
}


def extract_baseline(dest: Path, commit: str = BASELINE_COMMIT) -> Path | None:
    """The archlab package of ``commit`` under ``dest`` (None when git or the commit is unavailable)."""
    archive = dest / f"src-{commit}.tar"
    try:
        with archive.open("wb") as f:
            proc = subprocess.run(["git", "-C", str(ROOT), "archive", commit, "archlab"], stdout=f,
                                  stderr=subprocess.PIPE, timeout=120)
    except (OSError, subprocess.SubprocessError):
        return None
    if proc.returncode != 0:
        return None
    src = dest / f"archlab-{commit}"
    with tarfile.open(archive) as t:
        t.extractall(src, filter="data")
    return src


def _head() -> str | None:
    try:
        proc = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return proc.stdout.strip() or None if proc.returncode == 0 else None


def run_cli(src: Path, study_file: Path, out: Path, threads_env: dict[str, str], extra: tuple[str, ...] = ()) -> float:
    """``archlab study run`` of ``study_file`` with the archlab found in ``src``; returns wall seconds.

    The clock stops when the command's output pipes close, i.e. when every process that holds them
    (the study process, its workers and fork server) has exited: what ``| tee`` or a script waits for.
    (No CPU time: a fork server's workers are not the study process's children, so ``RUSAGE_CHILDREN``
    would miss them.)
    """
    env = {**os.environ, **threads_env, "PYTHONPATH": str(src)}
    code = "import sys; from archlab.cli import main; sys.exit(main(sys.argv[1:]))"
    if (Path(src) / "archlab" / "cli.py").read_text().count("def entry()"):
        code = "from archlab.cli import entry; entry()"  # what the `archlab` command of that checkout runs
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code, "study", "run", str(study_file), "--out", str(out), *extra],
                          env=env, capture_output=True, text=True, cwd=out.parent)
    dt = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"study run with {src} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return dt


def run_metrics(out: Path) -> dict[str, dict[str, float]]:
    """``variant/seed`` -> test accuracy and loss, read from each run's result.json."""
    found = {}
    for path in sorted((out / "runs").glob("*/*/seed*/result.json")):
        r = json.loads(path.read_text())
        found[f"{path.parent.parent.name}/{path.parent.name}"] = {
            "test_accuracy": r["test"]["accuracy"], "test_loss": r["test"]["loss"], "test_samples": len(r["test_targets"]),
            "epoch1_train_loss": r["history"][0]["train_loss"],
            "channels_last": r["config"].get("channels_last"), "threads": r["provenance"].get("threads"),
        }  # fmt: skip
    return found


def main() -> None:
    args = parse_args(__doc__.splitlines()[0], lambda p: p.add_argument(
        "--seeds", type=int, default=1, help="seeds per variant (3: the fewest paired seeds a verdict needs)"))
    spec = {**STUDY, **TINY} if args.tiny else json.loads(json.dumps(STUDY))
    if not args.tiny:
        spec["seeds"] = [1337, *range(args.seeds - 1)]  # the seed-002 study files' seeds: 1337, 0, 1, 2, 3
    repeats, warmup = (1, 0) if args.tiny else (args.repeats, 0)
    with tempfile.TemporaryDirectory(prefix="archlab-bench-seed002-") as tmp:
        tmp = Path(tmp)
        base_src = extract_baseline(tmp)
        head = _head()
        # "now" is the committed HEAD (a snapshot: edits made in the working tree meanwhile do not leak in)
        now_src = extract_baseline(tmp, head) if head and not args.tiny else None
        if base_src is None and not args.tiny:
            raise SystemExit(f"cannot extract commit {BASELINE_COMMIT} with git archive (a shallow clone?); "
                             "fetch the history or run --tiny")
        files = {}
        now_spec = json.loads(json.dumps(spec))
        contiguous = json.loads(json.dumps(spec))
        contiguous["train"]["channels_last"] = False
        base_spec = json.loads(json.dumps(spec))
        if base_src is None:  # emulate main's defaults in this checkout: contiguous, per-tensor Adam
            base_spec["train"].update(channels_last=False, fused_optimizer=False)
        for name, s in {"main": base_spec, "now": now_spec, "now_contiguous": contiguous}.items():
            files[name] = tmp / f"{name}.yaml"
            files[name].write_text(yaml.safe_dump(s, sort_keys=False))
        cores = str(os.cpu_count() or 1)  # what a fresh shell gives every contestant
        contestants = {  # name: (source, study file, extra flags, OMP_NUM_THREADS)
            f"main_{BASELINE_COMMIT}": (base_src or ROOT, files["main"], (), cores),
            "now": (now_src or ROOT, files["now"], (), cores),
            "now_contiguous": (now_src or ROOT, files["now_contiguous"], (), cores),
            "main_1thread": (base_src or ROOT, files["main"], ("--workers", "2"), cores),
        }
        seconds: dict[str, list[float]] = {k: [] for k in contestants}
        metrics: dict[str, dict[str, dict[str, float]]] = {}
        for r in range(warmup + repeats):
            order = list(reversed(contestants)) if r % 2 == 0 else list(contestants)
            for k in order:
                src, f, extra, omp = contestants[k]
                out = tmp / f"{k}-{r}"
                dt = run_cli(src, f, out, {"OMP_NUM_THREADS": omp}, extra)
                print(f"  round {r + 1}: {k:16s} {dt:7.1f} s", file=sys.stderr, flush=True)
                if r >= warmup:
                    seconds[k].append(dt)
                    metrics[k] = run_metrics(out)
    base = f"main_{BASELINE_COMMIT}"
    timing = {k: spread(v, "s") for k, v in seconds.items()}
    speedup = timing[base]["median_s"] / timing["now"]["median_s"]
    per_run = {}
    for run in sorted(metrics[base]):
        row = {k: metrics[k].get(run) for k in metrics}
        per_run[run] = row
    def max_diffs(k: str) -> dict[str, float]:
        rows = [(per_run[r][k], per_run[r][base]) for r in per_run]
        return {
            "max_abs_test_accuracy": max(abs(a["test_accuracy"] - b["test_accuracy"]) for a, b in rows),
            "max_rel_test_loss": max(abs(a["test_loss"] / b["test_loss"] - 1) for a, b in rows),
            "max_rel_epoch1_train_loss": max(abs(a["epoch1_train_loss"] / b["epoch1_train_loss"] - 1) for a, b in rows),
        }

    diffs = {k: max_diffs(k) for k in metrics if k != base}
    n_test = min(m["test_samples"] for m in metrics[base].values())
    envelope = diffs["main_1thread"]  # what rounding alone does to main's own runs
    acc_tol = max(ENVELOPE * envelope["max_abs_test_accuracy"], 2 / n_test)
    loss_rtol = max(ENVELOPE * envelope["max_rel_test_loss"], LOSS_RTOL_MIN)
    d = diffs["now"]  # the default path is what must match; the other contestants are informative
    within = (d["max_abs_test_accuracy"] <= acc_tol and d["max_rel_test_loss"] <= loss_rtol
              and d["max_rel_epoch1_train_loss"] <= FIRST_EPOCH_RTOL)
    result = {
        "device": "cpu",
        "repeats": repeats,
        "now": {"commit": head if now_src is not None else None, "kind": "git archive" if now_src else "working tree"},
        "baseline": {"commit": BASELINE_COMMIT if base_src is not None else None,
                     "kind": "git archive" if base_src is not None else
                     "emulated (this checkout, channels_last and fused_optimizer false)"},
        "study": spec,
        "runs": len(per_run),
        "timing": timing,
        "speedup": speedup,
        "speedup_best_round": timing[base]["min_s"] / timing["now"]["min_s"],
        "speedup_memory_format_only": timing["now_contiguous"]["median_s"] / timing["now"]["median_s"],
        "target": TARGET,
        "met": speedup >= TARGET and within,
        "tolerance": {"test_accuracy_abs": acc_tol, "test_samples": n_test, "test_loss_rel": loss_rtol,
                      "epoch1_train_loss_rel": FIRST_EPOCH_RTOL, "envelope_factor": ENVELOPE,
                      "rounding_envelope_of_main": envelope},
        "metrics_within_tolerance": within,
        "max_diff_vs_main": diffs,
        "per_run": per_run,
    }
    print(f"seed-002 study ({len(per_run)} runs): main {timing[base]['median_s']:.1f} s, now {timing['now']['median_s']:.1f} s, "
          f"-> {speedup:.2f}x (target {TARGET}x; memory format alone {result['speedup_memory_format_only']:.2f}x); "
          f"metrics within tolerance: {within} {diffs}")
    print(f"wrote {write_result('seed002_study', result, args.out, tiny=args.tiny)}")


if __name__ == "__main__":
    main()
