"""The verdict rule by simulation: error rates under repeated looks, power, seeds used (issue 13).

Paired per-seed differences are drawn as Normal(delta, sd) and fed, seed by seed, to the
sequential design that ``seeds: {min, max, step, until: conclusive}`` runs
(:func:`archlab.study.sequential.sequential_path`: Lan–DeMets O'Brien–Fleming spending, repeated
t intervals, stopping for a difference or for equivalence within ±margin). Per scenario it reports
the rate of each verdict, the mean number of seeds used, and the number of seeds a *fixed* design
needs for the same power (two-sided paired t at the same alpha, noncentral t). It also repeats the
seeds × images check: two equal heads tested on the same images for every seed, where the old
pooled McNemar rejected far more often than alpha.

    python bench/verdicts.py            # writes bench/results/verdicts.json (about a minute)
    python bench/verdicts.py --tiny     # a few hundred repetitions (CI smoke run)
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
from scipy import stats as sps

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from archlab.study.sequential import plan_looks, sequential_path  # noqa: E402
from archlab.study.stats import power_paired_t, seeds_images_test  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def simulate(delta: float, sd: float, margin: float, looks: list[int], alpha: float, reps: int, seed: int,
             p_fail: float = 0.0) -> dict:
    """Rates of the four verdicts and seeds used, over ``reps`` simulated comparisons."""
    rng = np.random.default_rng(seed)
    n_max = looks[-1]
    counts = {"better": 0, "worse": 0, "equivalent": 0, "inconclusive": 0}
    used = []
    for _ in range(reps):
        d = rng.normal(delta, sd, n_max)
        lost = np.flatnonzero(rng.random(n_max) < p_fail).tolist()
        diffs = {i: float(d[i]) for i in range(n_max) if i not in lost}
        dec = sequential_path(diffs, lost, n_max, looks=looks, margin=margin, alpha=alpha)
        counts[dec.verdict] += 1
        used.append(dec.look)
    rates = {k: v / reps for k, v in counts.items()}
    mc = {k: math.sqrt(max(r * (1 - r), 1e-12) / reps) for k, r in rates.items()}
    return {"rates": rates, "mc_se": mc, "mean_seeds": float(np.mean(used)), "max_seeds": n_max}


def fixed_seeds_for_power(delta: float, sd: float, alpha: float, power: float) -> int | None:
    """Seeds a fixed design needs to reach ``power`` (two-sided paired t); None beyond 10000."""
    if delta == 0 or power <= alpha:
        return None
    for n in range(2, 10_001):
        if power_paired_t(delta, sd, n, alpha) >= power:
            return n
    return None


def images_check(reps: int, seeds: int, images: int, alpha: float, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    ours = pooled = 0
    for _ in range(reps):
        difficulty = rng.normal(1.0, 1.5, images)
        img = rng.normal(0.0, 0.8, (2, images))
        sd = rng.normal(0.0, 0.3, (2, seeds, 1))
        logits = difficulty + img[:, None, :] + sd
        c = rng.random((2, seeds, images)) < 1 / (1 + np.exp(-logits))
        ours += seeds_images_test(c[0], c[1]).p < alpha
        b, k = int(np.sum(c[0] & ~c[1])), int(np.sum(~c[0] & c[1]))
        pooled += sps.binomtest(b, b + k, 0.5).pvalue < alpha
    return {"reps": reps, "seeds": seeds, "images": images, "alpha": alpha,
            "false_positive_rate": {"seeds_x_images": ours / reps, "pooled_mcnemar": pooled / reps},
            "mc_se_at_alpha": math.sqrt(alpha * (1 - alpha) / reps)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tiny", action="store_true", help="few repetitions (CI smoke run)")
    p.add_argument("--reps", type=int, default=4000, help="repetitions per scenario")
    p.add_argument("--out", type=Path, default=None, help="JSON path (default bench/results/verdicts.json)")
    a = p.parse_args(argv)
    reps = 200 if a.tiny else a.reps
    alpha, sd, margin = 0.05, 1.0, 0.5
    looks = plan_looks(3, 20, 1)
    t0 = time.perf_counter()
    scenarios = {}
    for name, delta, p_fail in (("no_difference", 0.0, 0.0), ("no_difference_10pct_lost", 0.0, 0.1),
                                ("delta_0.5sd", 0.5, 0.0), ("delta_0.8sd", 0.8, 0.0), ("delta_1.2sd", 1.2, 0.0),
                                ("delta_2sd", 2.0, 0.0), ("delta_1.2sd_10pct_lost", 1.2, 0.1)):
        r = simulate(delta, sd, margin, looks, alpha, reps, seed=len(scenarios), p_fail=p_fail)
        r.update(delta_over_sd=delta, margin_over_sd=margin, p_fail=p_fail)
        if delta > 0:
            # the same power, capped at 0.99 (a simulated power of 1.0 has no finite fixed design)
            power = min(r["rates"]["better"], 0.99)
            n_fixed = fixed_seeds_for_power(delta, sd, alpha, power)
            r["fixed_design_power_target"] = power
            r["fixed_design_seeds_same_power"] = n_fixed
            r["seeds_saved_fraction"] = None if n_fixed is None else 1 - r["mean_seeds"] / n_fixed
        scenarios[name] = r
        rr = r["rates"]
        print(f"{name:26s} better {rr['better']:.3f} worse {rr['worse']:.3f} equivalent {rr['equivalent']:.3f} "
              f"inconclusive {rr['inconclusive']:.3f}  mean seeds {r['mean_seeds']:.2f}"
              + (f"  fixed design of equal power: {r['fixed_design_seeds_same_power']} seeds" if delta > 0 else ""))
    h0 = scenarios["no_difference"]
    false = h0["rates"]["better"] + h0["rates"]["worse"]
    bound = alpha + 3 * math.sqrt(alpha * (1 - alpha) / reps)
    img = images_check(100 if a.tiny else 2000, 5, 200, alpha, seed=99)
    print(f"false better/worse rate under no difference: {false:.4f} (bound alpha + 3 MC SE = {bound:.4f})")
    print(f"equal heads, same images every seed: seeds x images FPR {img['false_positive_rate']['seeds_x_images']:.3f}, "
          f"pooled McNemar {img['false_positive_rate']['pooled_mcnemar']:.3f}")
    payload = {
        "name": "verdicts", "tiny": a.tiny, "reps": reps, "alpha": alpha,
        "design": {"looks": looks, "spending": "Lan-DeMets O'Brien-Fleming", "sd": sd, "margin": margin},
        "scenarios": scenarios,
        "false_difference_rate": {"value": false, "bound": bound, "met": false <= bound},
        "images": img,
        "seconds": time.perf_counter() - t0,
        "command": "python bench/verdicts.py" + (" --tiny" if a.tiny else f" --reps {reps}"),
    }
    out = a.out or RESULTS / ("verdicts.tiny.json" if a.tiny else "verdicts.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(payload, indent=2, sort_keys=True))
    print(f"wrote {out}")
    return 0 if false <= bound else 1


if __name__ == "__main__":
    raise SystemExit(main())
