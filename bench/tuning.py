"""The cost of equal effort (issue 23): tuning trials × run time, and the seeds `until: conclusive` spends after tuning.

Two parts, written to ``bench/results/tuning.json``:

1. **Simulation** (the protocol of tests/study/test_tuning.py, repeated): two variants share an
   optimum (lr 1e-3) but lose ``sensitivity * (log10 lr + 3)^2`` of accuracy away from it; the study's
   lr is 1e-2. Scenario ``same_optimum``: equal peaks (the true tuned difference is 0); scenario
   ``better_but_sensitive``: the sensitive variant's peak is 1.5 pp higher. Per replication each
   variant is run untuned (the study's lr) and after 12 TPE trials (its own sampler seed per
   replication), then the seed phase ``seeds: {min: 3, max: 20, until: conclusive}`` is decided by
   :func:`archlab.study.sequential.sequential_decisions` (the runner's own rule) on noisy test
   values (sd 0.4 pp per seed). Reported: verdict rates and mean seeds used, untuned vs tuned.
2. **A real study** (synthetic images, mnist_cnn, linear vs MLP head, 2 epochs): the same study
   with and without ``tune: {trials: 6}``, run by ``run_study``; reported: trial runs, their summed
   training seconds, wall seconds of each phase, seed-phase runs and the verdict.

    python bench/tuning.py            # ~5 minutes on 2 busy cores
    python bench/tuning.py --tiny     # a few replications, no real study (CI smoke run)
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from archlab.study.config import Study  # noqa: E402
from archlab.study.record import RunRecord  # noqa: E402
from archlab.study.runner import run_study  # noqa: E402
from archlab.study.sequential import plan_looks, sequential_decisions  # noqa: E402
from archlab.study.stats import compare_variants  # noqa: E402
from archlab.study.store import StudyStore  # noqa: E402
from archlab.study.tune_phase import TUNE_DB  # noqa: E402
from archlab.study.tuning import TuneConfig, run_tuning  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
STUDY_LR, NOISE, MARGIN, ALPHA = 1e-2, 0.004, 0.01, 0.05
SCENARIOS = {
    "same_optimum": {"base": (0.90, 0.01), "sensitive": (0.90, 0.09)},  # (peak, sensitivity)
    "better_but_sensitive": {"base": (0.90, 0.01), "sensitive": (0.915, 0.09)},
}


def score(model: tuple[float, float], lr: float, seed: int, split: str, rep: int, v: int) -> float:
    peak, sens = model
    rng = np.random.default_rng([rep, seed, {"val": 1, "test": 2}[split], v])
    return peak - sens * (math.log10(lr) + 3.0) ** 2 + float(rng.normal(0, NOISE))


def seed_phase(models: dict, lrs: dict, rep: int, looks: list[int]) -> tuple[str, int]:
    """The adaptive seed phase: seeds added look by look until the sequential rule decides."""
    names = list(models)
    for n in looks:
        rows = [RunRecord("sim", name, s, "done", test={"accuracy": score(models[name], lrs[name], s, "test", rep, i)})
                for s in range(n) for i, name in enumerate(names)]
        dec = sequential_decisions(rows, baseline="base", metric="accuracy", margin=MARGIN, alpha=ALPHA,
                                   looks=looks, family=1)[("sim", "sensitive")]
        if dec.decided:
            break
    final = compare_variants(rows, baseline="base", metric="accuracy", margin=MARGIN, looks=looks, aso=False)
    return str(next(s for s in final if s.variant == "sensitive").outcome), n


def simulate(reps: int, trials: int) -> dict:
    looks = plan_looks(3, 20, 1)
    out = {}
    for scen, models in SCENARIOS.items():
        res = {"untuned": {"verdicts": Counter(), "seeds": []}, "tuned": {"verdicts": Counter(), "seeds": []}}
        t_tune = 0.0
        for rep in range(reps):
            v, n = seed_phase(models, {k: STUDY_LR for k in models}, rep, looks)
            res["untuned"]["verdicts"][v] += 1
            res["untuned"]["seeds"].append(n)
            cfg = TuneConfig(space={"train.optim.lr": "loguniform(1e-4, 1e-1)"}, trials=trials, seed=rep)
            best = {}
            t0 = time.perf_counter()
            for i, name in enumerate(models):
                def evaluate(batch, name=name, i=i):
                    return [float(np.mean([score(models[name], t.params["train.optim.lr"], s, "val", rep, i)
                                           for s in t.seeds])) for t in batch]
                best[name] = run_tuning(cfg, name, evaluate, seed_phase=range(20)).best.params["train.optim.lr"]
            t_tune += time.perf_counter() - t0
            v, n = seed_phase(models, best, rep, looks)
            res["tuned"]["verdicts"][v] += 1
            res["tuned"]["seeds"].append(n)
        out[scen] = {
            arm: {"verdict_rates": {k: c / reps for k, c in sorted(r["verdicts"].items())},
                  "mean_seeds": float(np.mean(r["seeds"])), "max_seeds": int(np.max(r["seeds"]))}
            for arm, r in res.items()
        }
        out[scen]["seeds_saved_by_tuning"] = out[scen]["untuned"]["mean_seeds"] - out[scen]["tuned"]["mean_seeds"]
        out[scen]["sampler_seconds_per_variant"] = t_tune / (reps * len(models))
    return out


def real_study(trials: int) -> dict:
    base = {
        "name": "bench_tuning",
        "data": {"name": "synthetic", "options": {"num_classes": 3, "num_samples": 240, "image_size": 16,
                                                  "channels": 1, "seed": 4}, "val_fraction": 0.2, "test_fraction": 0.25},
        "model": {"name": "mnist_cnn"},
        "train": {"epochs": 2, "batch_size": 16, "threads": 1, "optim": {"name": "adam", "lr": 3e-2}},
        "seeds": {"min": 3, "max": 8, "until": "conclusive"},
        "baseline": "linear",
        "variants": {"linear": {"model": {"head": "linear"}},
                     "mlp": {"model": {"head": "mlp", "head_kwargs": {"hidden": [32]}}}},
    }
    out = {}
    for arm, extra in (("untuned", {}), ("tuned", {"tune": {"space": {"train.optim.lr": "loguniform(1e-4, 3e-2)"},
                                                            "trials": trials, "round": 3}})):
        with tempfile.TemporaryDirectory() as d:
            marks: dict[str, float] = {}

            def on_event(kind, key, info, marks=marks):
                if kind == "round" and "seed_phase" not in marks:
                    marks["seed_phase"] = time.perf_counter()

            t0 = time.perf_counter()
            store = run_study(Study.model_validate({**base, **extra}), d, report=False, on_event=on_event)
            t1 = time.perf_counter()
            rows = store.rows()
            trials_rows = StudyStore(Path(d) / TUNE_DB).rows() if (Path(d) / TUNE_DB).exists() else []
            verdict = next(s for s in compare_variants(rows, baseline="linear", metric="accuracy", margin=0.01,
                                                       looks=plan_looks(3, 8, 1), aso=False) if s.variant == "mlp")
            out[arm] = {
                "trial_runs": len(trials_rows),
                "trial_train_seconds": float(sum(r.train_seconds or 0 for r in trials_rows)),
                "start_to_seed_phase_seconds": marks.get("seed_phase", t0) - t0,  # preflight + tuning
                "seed_runs": len(rows),
                "seed_train_seconds": float(sum(r.train_seconds or 0 for r in rows)),
                "total_wall_seconds": t1 - t0,
                "verdict": str(verdict.outcome),
                "chosen_lr": {r.variant: r.config["optim"]["lr"] for r in rows if r.seed == 0},
            }
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tiny", action="store_true")
    p.add_argument("--reps", type=int, default=100)
    p.add_argument("--out", type=Path, default=RESULTS / "tuning.json")
    a = p.parse_args()
    reps = 4 if a.tiny else a.reps
    t0 = time.perf_counter()
    result = {"simulation": {"reps": reps, "trials": 12, "noise_sd": NOISE, "margin": MARGIN,
                             "scenarios": simulate(reps, 12)}}
    if not a.tiny:
        result["real_study"] = real_study(6)
    result["seconds"] = time.perf_counter() - t0
    result["command"] = "python bench/tuning.py" + (" --tiny" if a.tiny else f" --reps {reps}")
    if not a.tiny or a.out != RESULTS / "tuning.json":
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
    print(json.dumps(result, indent=1, sort_keys=True))


if __name__ == "__main__":
    main()
