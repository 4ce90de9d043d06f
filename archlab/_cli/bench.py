"""``archlab bench [NAME...]``: run the side-by-side benchmarks in ``bench/`` and write their JSON.

The benchmarks are scripts in the repository's ``bench/`` folder (not part of the installed
package): every ``bench/*.py`` not starting with ``_`` except ``readme_table.py``. Each runs in its
own process (a clean thread pool, no state shared with the others) with the common flags
(``--tiny``, ``--repeats``, ``--threads``, ``--device``, ``--out``) and writes
``bench/results/NAME.json`` (``NAME.tiny.json`` for ``--tiny``); this command then prints one table
of every timed contestant's median and spread and every ratio against its target.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Optional

import typer

NOT_BENCHMARKS = {"readme_table"}


def find_bench_dir(bench: Path | None = None) -> Path:
    """The repository's ``bench/`` folder (default: next to the ``archlab`` package of this checkout).

    Raises:
        ConfigError: no benchmark folder there (e.g. archlab installed without its repository).
    """
    from archlab.errors import ConfigError

    bench = Path(bench) if bench is not None else Path(__file__).resolve().parents[2] / "bench"
    if not (bench / "_common.py").is_file():
        raise ConfigError(
            f"no benchmark folder at {bench}: the benchmarks live in the archlab repository, not in the "
            "installed package; run from a git checkout (pip install -e .) or pass --bench-dir PATH/bench"
        )
    return bench


def discover(bench: Path) -> list[str]:
    """Names of the benchmark scripts in ``bench`` (sorted)."""
    return sorted(p.stem for p in bench.glob("*.py") if not p.name.startswith("_") and p.stem not in NOT_BENCHMARKS)


def summary_rows(name: str, data: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """``(benchmark, what, median, spread)`` rows of one result file, whatever its layout.

    Every ``timing``/``timings`` mapping of contestants with a ``median_ms`` or ``median_s`` gives
    one row per contestant (spread = min..max over the rounds); every ``speedup``/``ratio``/
    ``efficiency`` number gives a row with its target and whether it was met. A smoke result
    (``"tiny": true``) times nothing worth a claim: its rows say so instead of "met"/"NOT met".
    """
    rows: list[tuple[str, str, str, str]] = []
    tiny = bool(data.get("tiny"))

    def verdict(met: Any, target: Any = None) -> str:
        if tiny:
            return " (smoke run: no claim)"
        if met is None:
            return ""
        return f" (target {target}, {'met' if met else 'NOT met'})" if target is not None else f" ({'met' if met else 'NOT met'})"

    def walk(node: Any, path: list[str]) -> None:
        if not isinstance(node, dict):
            return
        where = "/".join(path)
        for key in ("timing", "timings"):
            t = node.get(key)
            if isinstance(t, dict):
                for who, s in t.items():
                    if isinstance(s, dict) and ("median_ms" in s or "median_s" in s):
                        unit = "ms" if "median_ms" in s else "s"
                        med, lo, hi = s[f"median_{unit}"], s.get(f"min_{unit}", float("nan")), s.get(f"max_{unit}", float("nan"))
                        extra = f"  {s['images_per_s']:.0f} img/s" if "images_per_s" in s else ""
                        spread = f"{lo:.4g}..{hi:.4g} {unit} (n={s.get('n', '?')})" if not (math.isnan(lo) or math.isnan(hi)) else "-"
                        rows.append((name, f"{where + ': ' if where else ''}{who}", f"{med:.4g} {unit}{extra}", spread))
        for key in ("speedup", "ratio", "efficiency"):
            v = node.get(key)
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                target = node.get("target")
                met = node.get("met", node.get("meets_target"))
                tail = verdict(met, target) if target is not None and (met is not None or tiny) else ""
                unit = "" if key == "efficiency" else "x"
                rows.append((name, f"{where + ': ' if where else ''}{key}", f"{v:.{3 if unit == '' else 2}f}{unit}{tail}", ""))
        ratios = node.get("ratios")
        if isinstance(ratios, dict):
            met = node.get("targets_met", {})
            for k, v in ratios.items():
                if isinstance(v, (int, float)):
                    tail = verdict(met.get(k)) if k in met else ""
                    rows.append((name, f"{where + ': ' if where else ''}{k}", f"{v:.2f}x{tail}", ""))
        for k, v in node.items():
            if k not in ("timing", "timings", "hardware", "config", "study", "sizes") and isinstance(v, dict):
                walk(v, path + [k])

    walk(data, [])
    return rows


def format_table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> list[str]:
    """Plain aligned columns (no wrapping, so the numbers stay greppable in logs)."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    line = lambda r: "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip()  # noqa: E731
    return [line(header), line(tuple("-" * w for w in widths)), *(line(r) for r in rows)]


def bench_cmd(
    names: Optional[list[str]] = typer.Argument(None, help="benchmarks to run (default: all of bench/*.py)"),
    tiny: bool = typer.Option(False, "--tiny", help="smallest sizes, one round (a smoke run, no timing claims)"),
    repeats: Optional[int] = typer.Option(None, "--repeats", min=1, help="timed interleaved rounds (default: each script's own)"),
    threads: int = typer.Option(2, "--threads", min=1, help="torch intra-op threads"),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda"),
    out_dir: Optional[Path] = typer.Option(None, "--out-dir", help="folder for the JSON results (default bench/results)"),
    bench_dir: Optional[Path] = typer.Option(None, "--bench-dir", help="the repository's bench/ folder (default: found next to the archlab package)"),
) -> None:
    """Run the benchmarks (archlab vs the reference, side by side) and write bench/results/NAME.json."""
    from archlab._cli.console import console, err_console
    from archlab.errors import UnknownNameError

    bench = find_bench_dir(bench_dir)
    available = discover(bench)
    selected = list(names) if names else available
    for n in selected:
        if n not in available:
            raise UnknownNameError("benchmark", n, available)
    results = Path(out_dir) if out_dir is not None else bench / "results"
    results.mkdir(parents=True, exist_ok=True)
    table: list[tuple[str, str, str, str]] = []
    failed: list[str] = []
    for n in selected:
        path = results / (f"{n}.tiny.json" if tiny else f"{n}.json")
        cmd = [sys.executable, str(bench / f"{n}.py"), "--threads", str(threads), "--device", device, "--out", str(path)]
        if tiny:
            cmd.append("--tiny")
        if repeats is not None:
            cmd += ["--repeats", str(repeats)]
        console.print(f"[bold]bench {n}[/] ...", highlight=False)
        before = path.stat().st_mtime_ns if path.is_file() else None
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=bench.parent, capture_output=True, text=True)
        if proc.returncode != 0 or not path.is_file() or path.stat().st_mtime_ns == before:  # never a stale result
            failed.append(n)
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
            err_console.print(f"[red]bench {n} failed[/] (exit {proc.returncode}):", highlight=False)
            for line in tail:
                err_console.print(f"  {line}", highlight=False, markup=False)
            continue
        console.print(proc.stdout.rstrip(), highlight=False, markup=False)
        console.print(f"  ({time.perf_counter() - t0:.0f} s)", highlight=False)
        table += summary_rows(n, json.loads(path.read_text()))
    if table:
        console.print("\n".join(format_table(("benchmark", "contestant / ratio", "median", "spread (min..max)"), table)),
                      highlight=False, markup=False)
    if failed:
        err_console.print(f"[red]error:[/] benchmark(s) failed: {', '.join(failed)}", highlight=False)
        raise typer.Exit(1)
