"""The README's benchmark table from bench/results/*.json (never from hand-typed numbers).

    python bench/readme_table.py            # print the table
    python bench/readme_table.py --write    # replace it in README.md (between the bench markers)

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
        f"{t['plain_wide']['median_ms']:.1f} ms | {r['archlab_over_plain_wide']:.2f}x the time | <= 1.2x | "
        f"{_yes(d['targets_met']['archlab_over_plain_wide'])} | {hw} |",
    ]


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
        if "archlab_channels_last" in t:
            out.append(
                f"| the same with channels_last | {t['archlab_channels_last']['images_per_s']:.0f} img/s | "
                f"{t[ref]['images_per_s']:.0f} img/s | {_speed(c['speedup_channels_last'])} | (option) | - | {hw} |"
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


KNOWN = {"ltc": _ltc, "rotation_conv": _rotation_conv, "engine": _engine, "study": _study}


def rows(results: Path = RESULTS) -> list[str]:
    out = list(HEADER)
    files = sorted(p for p in results.glob("*.json") if not p.name.endswith(".tiny.json"))
    order = {n: i for i, n in enumerate(["engine", "engine_1thread", "study", "ltc", "rotation_conv"])}
    for path in sorted(files, key=lambda p: (order.get(p.stem, len(order)), p.stem)):
        d = json.loads(path.read_text())
        kind = path.stem.split("_1thread")[0]  # engine_1thread.json: the engine run with --threads 1
        out += KNOWN.get(kind, lambda d, n=path.stem: _generic(n, d))(d)
    return out


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
        print("\n".join(table))
        return
    readme = args.readme
    readme.write_text(replace_table(readme.read_text(), table))
    print(f"wrote {len(table) - 2} rows to {readme}", file=sys.stderr)


if __name__ == "__main__":
    main()
