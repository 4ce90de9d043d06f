"""The README's benchmark table from bench/results/*.json (never from hand-typed numbers).

    python bench/readme_table.py            # print the table
    python bench/readme_table.py --write    # replace it and the notes in README.md (between the markers)

Every result file gets rows: the known layouts (ltc, rotation_conv, engine, study) a row per case,
any other one (e.g. audit) a row per ``speedup``/``ratio`` it reports. Smoke results
(``*.tiny.json``) are never shown.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
README = Path(__file__).resolve().parent.parent / "README.md"
START, END = "<!-- bench:start -->", "<!-- bench:end -->"
NOTES_START, NOTES_END = "<!-- bench-notes:start -->", "<!-- bench-notes:end -->"
COST_START, COST_END = "<!-- study-cost:start -->", "<!-- study-cost:end -->"
PLACEHOLDER = "BENCH_TABLE"
HEADER = [
    "| benchmark | archlab (median) | reference (median) | ratio | target | met | hardware |",
    "|---|---:|---:|---:|---|---|---|",
]


def _hw(d: dict[str, Any], threads: Any = None) -> str:
    h = d["hardware"]
    t = threads if threads is not None else d.get("threads", h.get("torch_threads"))
    where = h.get("gpu") or f"{h['cpu_count']} CPU cores"
    return f"{where}, {t} threads, torch {h['torch']}"


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def _speed(ratio: float) -> str:
    return f"{ratio:.2f}x " + ("faster" if ratio >= 1 else "(slower)")


def _best(ratio: float | None) -> str:
    """The best-round ratio next to the median one (other jobs on a shared machine only slow rounds down)."""
    return f" (best rounds {ratio:.2f}x)" if ratio is not None else ""


def _ltc(d: dict[str, Any]) -> list[str]:
    out = []
    hw = _hw(d)
    for name, c in sorted(d["cases"].items()):
        t = c["timing"]
        out.append(
            f"| LTC fwd+bwd, {name} (batch {c['batch']}, {c['steps']} steps) | {t['archlab']['median_ms']:.1f} ms | "
            f"ncps {t['ncps']['median_ms']:.1f} ms | {c['speedup']:.2f}x faster | >= {c['target']:.0f}x | "
            f"{_yes(c['meets_target'])} | {hw} |"
        )
    return out


def _rotation_conv(d: dict[str, Any]) -> list[str]:
    t, r, cfg = d["timings"], d["ratios"], d["config"]
    hw = _hw(d, cfg["threads"])
    size = f"{cfg['rotations']} rotations, {cfg['channels']}->{cfg['channels']}, {cfg['size']}x{cfg['size']}, batch {cfg['batch']}"
    return [
        f"| Rotation-invariant conv fwd+bwd vs the seed's loop ({size}) | {t['archlab']['median_ms']:.1f} ms | "
        f"{t['seed_loop']['median_ms']:.1f} ms | {r['archlab_over_seed_loop']:.2f}x the time | <= 1.0x | "
        f"{_yes(d['targets_met']['archlab_over_seed_loop'])} | {hw} |",
        f"| Rotation-invariant conv vs one plain conv with 8x the outputs | {t['archlab']['median_ms']:.1f} ms | "
        f"{t['plain_wide']['median_ms']:.1f} ms | {r['archlab_over_plain_wide']:.2f}x the time{_round_range(d)} | <= 1.2x | "
        f"{_yes(d['targets_met']['archlab_over_plain_wide'])} | {hw} |",
    ]


def _round_range(d: dict[str, Any]) -> str:
    """The per-round spread of the rotation-conv ratio (paired rounds), when the result has it."""
    pr = d.get("per_round_ratio_archlab_over_plain_wide")
    if not pr:
        return ""
    return f" (rounds {pr['min']:.2f}..{pr['max']:.2f}x, n={pr['n']})"


def _efficiency(d: dict[str, Any]) -> list[str]:
    out = []
    hw = _hw(d)
    for name, c in d["cases"].items():
        cfg = c["config"]
        fmt = "channels_last" if cfg["channels_last"] else "contiguous"
        out.append(
            f"| Engine efficiency, {name} (batch {cfg['batch_size']}, {fmt}): engine vs fwd+bwd+optimizer on one "
            f"resident batch | {c['engine_images_per_s']:.0f} img/s | limit {c['limit_images_per_s']:.0f} img/s | "
            f"{c['efficiency']:.3f} of the limit (rounds {c['efficiency_min']:.3f}..{c['efficiency_max']:.3f}) | "
            f">= {c['target']} | {_yes(bool(c['met']))} | {hw} |"
        )
    return out


def _seed002_study(d: dict[str, Any]) -> list[str]:
    t = d["timing"]
    base = [k for k in t if k.startswith("main") and k != "main_1thread"][0]
    tol = d["tolerance"]
    return [
        f"| Study wall time, {d['runs']} seed-002 mini-VGG runs ({len(d['study']['variants'])} variants x "
        f"{len(d['study']['seeds'])} seed(s), {d['study']['train']['epochs']} epochs, synthetic 32x32): "
        f"this checkout's defaults vs {base.replace('_', ' at ')} (per-run test metrics within "
        f"{tol['test_accuracy_abs']:.3f} acc / {tol['test_loss_rel']:.0%} loss: "
        f"{_yes(d['metrics_within_tolerance'])}) | {t['now']['median_s']:.1f} s | {t[base]['median_s']:.1f} s | "
        f"{_speed(d['speedup'])}{_best(d.get('speedup_best_round'))}; memory format alone "
        f"{d['speedup_memory_format_only']:.2f}x"
        f" | >= {d['target']}x | {_yes(d['met'])} | "
        f"{d['hardware']['cpu_count']} CPU cores, torch {d['hardware']['torch']} |"
    ]


def _speed_rule(d: dict[str, Any]) -> list[str]:
    cases = d["cases"]
    agree = sum(c["agrees"] for c in cases.values())
    lo = min(cases.values(), key=lambda c: c["speedup"])
    hi = max(cases.values(), key=lambda c: c["speedup"])
    return [
        f"| channels_last rule vs a timed probe per model ({len(cases)} models, one training step each format) | "
        f"rule agrees on {agree}/{len(cases)} | channels_last {lo['speedup']:.2f}x ({lo['model']}"
        f"{' ' + str(lo['options'].get('kwargs', lo['options'].get('head', ''))) if lo['options'] else ''}).."
        f"{hi['speedup']:.2f}x ({hi['model']}) | - | agree (ties within {d['tie_within']:.0%}) | "
        f"{_yes(d['rule_agrees_everywhere'])} | {_hw(d)} |"
    ]


def _gpu(d: dict[str, Any]) -> list[str]:
    hw = _hw(d)
    out = []
    for name, c in d["efficiency"].items():
        out.append(f"| GPU engine efficiency, {name} (data on the GPU) | {c['engine_images_per_s']:.0f} img/s | "
                   f"limit {c['limit_images_per_s']:.0f} img/s | {c['efficiency']:.3f} of the limit | >= 0.95 | "
                   f"{_yes(c['efficiency'] >= 0.95)} | {hw} |")
    for name, c in d["formats"].items():
        ms = c["ms_per_step"]
        gains = f"channels_last {c['gain_channels_last_fp32']:.2f}x"
        if "gain_amp_channels_last" in c:
            gains += f", bf16 AMP {c['gain_amp_contiguous']:.2f}x, both {c['gain_amp_channels_last']:.2f}x"
        out.append(f"| GPU step time, {name} batch {c['batch']}: fp32 contiguous vs faster formats | "
                   f"{min(ms.values()):.2f} ms | {ms['fp32_contiguous']:.2f} ms | {gains} | (measured) | - | {hw} |")
    for name, c in d["vmap_seeds"].items():
        acc = c["mean_test_accuracy"]
        out.append(f"| GPU seeds trained together (vmap), {name.replace('_', ' ')} (test acc {acc['together']:.3f} vs "
                   f"{acc['one_after_another']:.3f}) | {c['together_s']:.1f} s | one after another "
                   f"{c['one_after_another_s']:.1f} s | {_speed(c['speedup'])} | (measured) | - | {hw} |")
    st = d["study"]
    out.append(f"| GPU study wall time, {st['runs']} CIFAR-size mini-VGG runs | {st['wall_s']:.1f} s | - | - | "
               f"(measured) | - | {hw} |")
    return out


def _engine(d: dict[str, Any]) -> list[str]:
    out = []
    hw = _hw(d)
    for name, c in sorted(d["cases"].items()):
        t, a, cfg = c["timing"], c["test_accuracy"], c["config"]
        ref = c["reference"]
        what = (
            f"Training throughput, {cfg['model']['name']} on {cfg['data']['name']} {cfg['data']['augment']} "
            f"({c['train_images_per_run']} images, batch {cfg['batch_size']}; test acc {a['archlab']['mean']:.3f} vs "
            f"{a[ref]['mean']:.3f})"
        )
        out.append(
            f"| {what} | {t['archlab']['images_per_s']:.0f} img/s | DataLoader loop ({ref.replace('reference_', '')}) "
            f"{t[ref]['images_per_s']:.0f} img/s | {_speed(c['speedup'])}{_best(c.get('speedup_best_round'))} | "
            f">= {c['target']:.0f}x | "
            f"{_yes(c['met'])} | {hw} |"
        )
        if "archlab_contiguous" in t:
            out.append(
                f"| the same, archlab with channels_last: false | {t['archlab_contiguous']['images_per_s']:.0f} img/s | "
                f"{t[ref]['images_per_s']:.0f} img/s | {_speed(c['speedup_contiguous'])} | (data path alone) | - | {hw} |"
            )
    return out


def _study(d: dict[str, Any]) -> list[str]:
    t, rc, one = d["timing"], d["runner_choice"], d["one_process"]
    return [
        f"| Study wall time, {d['runs']} small runs: runner's choice ({rc['workers']} workers x "
        f"{rc['threads_per_worker']} thread) vs 1 process x {one['threads']} threads | {t['runner']['median_s']:.1f} s | "
        f"{t['one_process']['median_s']:.1f} s | {_speed(d['ratio'])}{_best(d.get('ratio_best_round'))} | > 1x | "
        f"{_yes(d['met'])} | "
        f"{d['hardware']['cpu_count']} CPU cores, torch {d['hardware']['torch']} |"
    ]


def _generic(name: str, d: dict[str, Any]) -> list[str]:
    """Rows for a result file of another layout: one per reported speedup/ratio."""
    out = []

    def row(where: str, node: dict[str, Any]) -> None:
        for key in ("speedup", "ratio"):
            v = node.get(key)
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                timing = node.get("timing") or node.get("timings") or {}
                med = {k: s.get("median_ms", s.get("median_s")) for k, s in timing.items() if isinstance(s, dict)}
                unit = "ms" if any("median_ms" in s for s in timing.values() if isinstance(s, dict)) else "s"
                mine = med.pop("archlab", None)
                ref = next(iter(med.items()), None)
                met = node.get("met", node.get("meets_target"))
                out.append(
                    f"| {name}{' ' + where if where else ''} | {f'{mine:.4g} {unit}' if mine is not None else '-'} | "
                    f"{f'{ref[0]} {ref[1]:.4g} {unit}' if ref else '-'} | {v:.2f}x | "
                    f"{node.get('target', '-')} | {_yes(met) if met is not None else '-'} | {_hw(d)} |"
                )

    row("", d)
    for case, c in sorted((d.get("cases") or {}).items()):
        if isinstance(c, dict):
            row(case, c)
    return out


def _audit_calibration(d: dict[str, Any]) -> list[str]:
    """Audit precision/recall on real images with planted near-copies (bench/_audit_calibration.py)."""
    out = []
    for name, s in d["sets"].items():
        t = d["target"].get(name, d["target"])  # per set since issue 24 (handwriting: 0.9)
        r, seed = s["settings"]["archlab_default"], s["settings"]["seed_histogram_hash"]
        worst = min(r["per_transformation"].items(), key=lambda kv: kv[1]["recall"])
        out.append(
            f"| Audit on {name} ({s['natural_images']} distinct images + {r['planted']} planted near-copies, "
            f"{len(r['per_transformation'])} kinds): precision / recall at the defaults | {r['precision']:.3f} / "
            f"{r['recall']:.3f} ({r['false_natural_pairs']} distinct pairs flagged) | seed's hash alone "
            f"{seed['precision']:.3f} / {seed['recall']:.3f} | lowest recall: {worst[0]} {worst[1]['recall']:.2f} | "
            f">= {t['precision']} / >= {t['recall']} | {_yes(r['precision'] >= t['precision'] and r['recall'] >= t['recall'])} "
            f"| {_hw(d)} |"
        )
    return out


def _audit_verified(d: dict[str, Any]) -> list[str]:
    """The default (verified) audit of 70,000 real images, wall and CPU time (bench/audit.py --part verified)."""
    st = d["stage_seconds"]
    return [
        f"| Audit at the defaults, {d['images']:,} {d['source'].split(' (')[0]} images "
        f"({d['candidates']:,} candidates, {d['planted']['found']}/{d['planted']['pairs']} planted copies found; "
        f"describe {st['describe']:.0f} s, search {st['search']:.0f} s, verify {st['verify']:.0f} s = "
        f"{d['verify_ms_per_pair']:.2f} ms/pair ({d['verify_cpu_ms_per_pair']:.2f} ms CPU), budget "
        f"{d['verify_budget_ms_per_pair']:.2f}; CPU per stage: " + ", ".join(
            f"{k} {v:.0f} s" for k, v in d["stage_cpu_seconds"].items() if k != "prepare") + "; load "
        f"{d['load_average_1min']['before']:.1f}) | {d['seconds']:.1f} s wall, {d['cpu_seconds_per_thread']:.1f} s "
        f"CPU per thread | - | - | < {d['target_seconds']:.0f} s | {_yes(d['meets_target'])} | {_hw(d)} |"
    ]


KNOWN = {
    "audit_verified": _audit_verified,
    "ltc": _ltc, "rotation_conv": _rotation_conv, "engine": _engine, "study": _study, "efficiency": _efficiency,
    "seed002_study": _seed002_study, "speed_rule": _speed_rule, "audit_calibration": _audit_calibration, "gpu": _gpu,
}  # fmt: skip


def rows(results: Path = RESULTS) -> list[str]:
    out = list(HEADER)
    files = sorted(p for p in results.glob("*.json") if not p.name.endswith(".tiny.json"))
    order = {n: i for i, n in enumerate(["efficiency_1thread", "efficiency", "seed002_study", "speed_rule", "engine",
                                         "engine_1thread", "study", "gpu", "ltc", "rotation_conv"])}
    for path in sorted(files, key=lambda p: (order.get(p.stem, len(order)), p.stem)):
        if path.stem == "study_cost":  # its own table (study_cost_table)
            continue
        d = json.loads(path.read_text())
        kind = path.stem.split("_1thread")[0]  # engine_1thread.json: the engine run with --threads 1
        kind = "seed002_study" if kind.startswith("seed002_study") else kind  # seed002_study_10classes.json
        out += KNOWN.get(kind, lambda d, n=path.stem: _generic(n, d))(d)
    return out


def _load(results: Path, name: str) -> dict[str, Any] | None:
    path = results / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _load_avg(d: dict[str, Any]) -> str:
    la = d["hardware"].get("load_average_1_5_15min")
    return f"load average {la[0]:.1f}" if la else "load not recorded"


def notes(results: Path = RESULTS) -> list[str]:
    """The README's benchmark prose, every number read from ``results`` (a missing file says so)."""
    out: list[str] = []
    for name in ("efficiency_1thread", "efficiency"):
        d = _load(results, name)
        if d:
            effs = ", ".join(f"{k} {c['efficiency']:.3f} ({c['efficiency_min']:.3f}..{c['efficiency_max']:.3f})"
                             for k, c in d["cases"].items())
            out.append(
                f"- **Engine efficiency** (`bench/efficiency.py`, {d['threads']} thread(s), {d['repeats']} rounds, "
                f"{_load_avg(d)}, {'CPU time' if next(iter(d['cases'].values())).get('efficiency_measure') == 'cpu_time' else 'wall clock'}): "
                "the engine's training rate over the pure-compute limit of the same model and "
                f"memory format (fwd + bwd + optimizer on one resident batch) — {effs}; target >= 0.95. "
                "Validation and the final test are not counted as training; no augmentation (it is work the "
                "limit does not do)."
            )
    d = _load(results, "speed_rule")
    if d:
        per = ", ".join(f"{k} {c['speedup']:.2f}x" for k, c in d["cases"].items())
        dis = [k for k, c in d["cases"].items() if not c["agrees"]]
        out.append(
            f"- **Memory format** (`bench/speed_rule.py`, {d['threads']} thread(s), {_load_avg(d)}): `channels_last: "
            f"auto` is a fixed rule (conv nets -> channels_last; `archlab.train.speed`), never a probe at run start. "
            f"Measured channels_last speed-up per training step: {per}. "
            + (f"The rule picks the slower format for {', '.join(dis)}." if dis else "The rule picks the faster format "
               f"(or a tie within {d['tie_within']:.0%}) for every model measured.")
        )
    for path in sorted(results.glob("seed002_study*.json")):
        if path.name.endswith(".tiny.json"):
            continue
        d = json.loads(path.read_text())
        base = [k for k in d["timing"] if k.startswith("main") and k != "main_1thread"][0]
        diff, tol = d["max_diff_vs_main"]["now"], d["tolerance"]
        env = tol["rounding_envelope_of_main"]
        classes = d["study"]["data"]["options"]["num_classes"]
        out.append(
            f"- **A seed-002 study end to end** (`bench/seed002_study.py`, {d['runs']} runs = "
            f"{len(d['study']['variants'])} variants x {len(d['study']['seeds'])} seed(s), {classes} classes, "
            f"{d['repeats']} round(s), {_load_avg(d)}): "
            f"{d['timing']['now']['median_s']:.1f} s with this checkout's defaults vs {d['timing'][base]['median_s']:.1f} s "
            f"with main at {d['baseline']['commit'] or 'an emulated baseline'} ({d['speedup']:.2f}x, target "
            f"{d['target']}x: {'met' if d['met'] else 'NOT met'}; best rounds {d['speedup_best_round']:.2f}x; this checkout "
            f"with channels_last on vs off: {d['speedup_memory_format_only']:.2f}x). Per-run metrics: the runs compute "
            "what main's compute on the same data, init, batches, augmentation and dropout draws, in another "
            "rounding (memory format, one thread per run, fused Adam); over 4 epochs training amplifies rounding, "
            f"so the tolerance is measured: main itself, run with one thread instead of two, moves its runs by up to "
            f"{env['max_abs_test_accuracy']:.3f} test accuracy and {env['max_rel_test_loss']:.1%} test loss. This checkout "
            f"differs from main by at most {diff['max_abs_test_accuracy']:.3f} accuracy and {diff['max_rel_test_loss']:.1%} "
            f"loss (allowed {tol['test_accuracy_abs']:.3f} / {tol['test_loss_rel']:.1%}: {tol['envelope_factor']}x that "
            f"envelope, at least 2 test images / 5%), and by {diff['max_rel_epoch1_train_loss']:.2%} in the first "
            f"epoch's training loss (allowed {tol['epoch1_train_loss_rel']:.0%}): "
            f"{'within' if d['metrics_within_tolerance'] else 'NOT within'}. "
            + ("Other jobs shared the machine during this measurement; a process with 2 threads (main's default) "
               "loses more to shared cores than single-threaded runs do, so the wall-time ratio depends on the load."
               if d["hardware"].get("load_average_1_5_15min") and d["hardware"]["load_average_1_5_15min"][0] > 3 else "")
        )
    for name in ("engine", "engine_1thread"):
        d = _load(results, name)
        if d:
            cases = "; ".join(
                f"{c['config']['model']['name']} {c['speedup']:.2f}x (best rounds {c.get('speedup_best_round', float('nan')):.2f}x; "
                f"{c['speedup_contiguous']:.2f}x with channels_last off)" if "speedup_contiguous" in c else
                f"{c['config']['model']['name']} {c['speedup']:.2f}x"
                for c in d["cases"].values()
            )
            out.append(
                f"- **Training throughput vs a plain loop** (`bench/{name.split('_')[0]}.py`, {d['threads']} thread(s), "
                f"{_load_avg(d)}): {cases}. "
                + ("The reference augments each image with PIL in a `DataLoader` (0 or 2 workers, the faster counts)."
                   if any("archlab_contiguous" in c["timing"] for c in d["cases"].values()) else
                   "Measured before issue 16, against the earlier reference that augmented each image with small "
                   "torch ops (slower than PIL, so these ratios flatter archlab); `bench/engine.py` now uses PIL.")
            )
    d = _load(results, "study")
    if d:
        out.append(
            f"- **Study schedule** (`bench/study.py`, {d['runs']} runs, {_load_avg(d)}): the runner's "
            f"{d['runner_choice']['workers']} workers x {d['runner_choice']['threads_per_worker']} thread vs one "
            f"process: {d['ratio']:.2f}x (best rounds {d.get('ratio_best_round', float('nan')):.2f}x)."
        )
    d = _load(results, "rotation_conv")
    if d:
        r, t = d["ratios"]["archlab_over_plain_wide"], d["timings"]
        pr = d.get("per_round_ratio_archlab_over_plain_wide")
        if pr:
            verdict = ("indistinguishable from it at this spread" if pr["min"] <= 1.0 <= pr["max"]
                       else ("faster" if pr["max"] < 1.0 else "slower") + " in every round")
            spread_txt = f"per paired round {pr['min']:.2f}..{pr['max']:.2f}x (median {pr['median']:.2f}x, n={pr['n']})"
        else:
            best = t["archlab"]["min_ms"] / t["plain_wide"]["min_ms"]
            verdict, spread_txt = "within the noise of this measurement", f"best rounds {best:.2f}x"
        out.append(
            f"- **Rotation-invariant conv vs one plain conv with 8x the outputs** (`bench/rotation_conv.py`, "
            f"{_load_avg(d)}): {r:.2f}x the time (medians), {spread_txt}: {verdict}."
        )
    d = _load(results, "audit_calibration")
    if d:
        parts = []
        for name, s in d["sets"].items():
            r = s["settings"]["archlab_default"]
            kinds = ", ".join(f"{k} {v['recall']:.2f}" for k, v in r["per_transformation"].items())
            flagged = r["natural_pairs_flagged"]
            near = (" — all between digits of the same class" if flagged and all(
                isinstance(f, dict) and f["label_a"] == f["label_b"] for f in flagged) else "")
            parts.append(f"{name}: precision {r['precision']:.3f}, recall {r['recall']:.3f} (per kind: {kinds}); "
                         f"{r['false_natural_pairs']} pairs of distinct natural images flagged{near}; "
                         f"{r['candidates']:,} candidate pairs verified in {r['seconds']:.0f} s")
        seed = d["pooled"]["seed_histogram_hash"]
        out.append(
            f"- **Audit correctness** (`bench/audit.py` -> `audit_calibration.json`, {_load_avg(d)}; descriptor "
            f"threshold {d['defaults']['threshold']}, min_similarity {d['defaults']['min_similarity']}"
            + (f", {d['defaults']['neighbours']} neighbours per image, ratio test {d['defaults']['crowd_ratio']}"
               if "crowd_ratio" in d["defaults"] else "") + "): "
            + "; ".join(parts) + f". The seed's histogram hash alone at {d['defaults']['seed_histogram_threshold']}: "
            f"precision {seed['precision']:.3f}, recall {seed['recall']:.3f} (it misses shifts, crops and "
            "brightness/contrast changes)."
        )
    d = _load(results, "audit")
    if d:
        imp = d.get("implementation_gain_on_subsample")
        if imp:
            out.append(
                f"- **Audit speed** (`bench/audit.py`, seed's hash, {d['images']:,} synthetic images, {_load_avg(d)}): "
                f"{d['archlab_seconds']['median']:.1f} s for hashing, search and classification "
                f"({d['planted_pairs'] - d['planted_missed']}/{d['planted_pairs']} planted pairs found). Gains "
                f"apart: pruning (same implementation, all images) {d['pruning_full']['gain']:.1f}x; implementation "
                f"(unpruned search vs the reference, on a {d['subsample']:,}-image subsample holding "
                f"{d['subsample_check']['planted_pairs_inside']} planted pairs, which all three methods find): "
                f"scipy pdist {imp['search_seed_pdist_over_archlab_unpruned']:.1f}x, scikit-learn "
                f"{imp['search_sklearn_over_archlab_unpruned']:.1f}x; hashing: the seed's per-image loop takes "
                f"{imp['hash_seed_loop_over_archlab']:.2f}x archlab's time"
                + (" (archlab's batched soft-histogram hash is the slower one)." if imp["hash_seed_loop_over_archlab"] < 1
                   else ".")
            )
    d = _load(results, "gpu")
    if d:
        v = "; ".join(f"{k.replace('_', ' ')} {c['speedup']:.2f}x" for k, c in d["vmap_seeds"].items())
        out.append(f"- **GPU** (`bench/gpu.py`, {d['hardware'].get('gpu')}): seeds trained together vs one after "
                   f"another: {v}; study of {d['study']['runs']} runs in {d['study']['wall_s']:.0f} s.")
    else:
        out.append("- **GPU: not measured.** No `bench/results/gpu.json` exists (no GPU was available when these "
                   "results were written); `python bench/gpu.py` on one GPU (<= 8 minutes) writes it and this "
                   "section picks it up. The speed of seeds trained together (vmap) is therefore unmeasured.")
    return out


def _days(cpu_s: float) -> str:
    d = cpu_s / 86400
    return f"{d:.3g}" if d >= 0.01 else f"{cpu_s / 3600:.2g} h"


def study_cost_table(results: Path = RESULTS) -> list[str]:
    """The compute each full-size study needs (``bench/study_cost.py``): measured cost x images x epochs x runs."""
    d = _load(results, "study_cost")
    if d is None:
        return ["No `bench/results/study_cost.json` yet: `python bench/study_cost.py` writes it."]
    out = ["| study | runs | epochs | training images / epoch | CPU-ms per training image (min..max over variants) "
           "| training compute (CPU-days) |", "|---|---:|---:|---:|---:|---:|"]
    for name, s in sorted(d["studies"].items()):
        per = [v["cpu_s_per_image"] * 1e3 for v in s["variants"].values()]
        imgs = ", ".join(f"{v['train_images']:,}" for v in s["datasets"].values())
        out.append(f"| `{name}` | {s['runs']} | {s['max_epochs']} | {imgs} | {min(per):.3g}..{max(per):.3g} "
                   f"| {_days(s['cpu_s'])} |")
    h = d["hardware"]
    out += ["", f"Measured by `bench/study_cost.py` ({d['steps']} timed steps of {d['batch']} random images of each "
            f"variant's real input shape after a warm-up, CPU time of one thread, {h['cpu_count']} CPU cores, torch "
            f"{h['torch']}, load average {h['load_average_1_5_15min'][0]:.1f}): training steps only (augmentation "
            "included; validation, test and analyses not counted), for the epochs written (early stopping can end "
            "runs sooner). Anything above a few CPU-days is a GPU study."]
    return out


def replace_cost(text: str, lines: list[str]) -> str:
    """``text`` with the block between the study-cost markers set to ``lines`` (unchanged when absent)."""
    if COST_START in text and COST_END in text:
        return _replace_block(text, COST_START, COST_END, lines, None)
    return text


def _replace_block(text: str, start: str, end: str, lines: list[str], placeholder: str | None) -> str:
    block = "\n".join([start, *lines, end])
    if start in text and end in text:
        head, rest = text.split(start, 1)
        _, tail = rest.split(end, 1)
        return head + block + tail
    if placeholder is not None:
        out = text.splitlines(keepends=True)
        for i, line in enumerate(out):
            if line.strip() == placeholder:
                out[i] = block + "\n"
                return "".join(out)
    raise SystemExit(f"{README}: neither the {start} ... {end} markers nor a {placeholder} line to replace")


def replace_notes(text: str, lines: list[str]) -> str:
    """``text`` with the block between the bench-notes markers set to ``lines`` (unchanged when absent)."""
    if NOTES_START in text and NOTES_END in text:
        return _replace_block(text, NOTES_START, NOTES_END, lines, None)
    return text


def replace_table(text: str, table: list[str]) -> str:
    """``text`` with the block between the bench markers (or the placeholder line) set to ``table``."""
    block = "\n".join([START, *table, END])
    if START in text and END in text:
        head, rest = text.split(START, 1)
        _, tail = rest.split(END, 1)
        return head + block + tail
    lines = text.splitlines(keepends=True)
    for i, line in enumerate(lines):
        if line.strip() == PLACEHOLDER:
            lines[i] = block + "\n"
            return "".join(lines)
    raise SystemExit(f"{README}: neither the {START} ... {END} markers nor a {PLACEHOLDER} line to replace")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--write", action="store_true", help="replace the table in README.md")
    p.add_argument("--readme", type=Path, default=README)
    p.add_argument("--results", type=Path, default=RESULTS)
    args = p.parse_args()
    table = rows(args.results)
    if not args.write:
        print("\n".join([*table, "", *notes(args.results), "", *study_cost_table(args.results)]))
        return
    readme = args.readme
    text = replace_notes(replace_table(readme.read_text(), table), notes(args.results))
    readme.write_text(replace_cost(text, study_cost_table(args.results)))
    print(f"wrote {len(table) - 2} rows to {readme}", file=sys.stderr)


if __name__ == "__main__":
    main()
