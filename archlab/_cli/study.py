"""``archlab study new|run|status|report|export``: studies from a YAML file to a report."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any, Optional

import typer
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from archlab._cli.console import console, err_console
from archlab.errors import ConfigError

study_app = typer.Typer(help="Run, inspect and report studies (variant x seed x dataset grids).", no_args_is_help=True)

# TrainConfig keys a user may write at a study's top level by mistake (they belong under `train:`)
_NAME = re.compile(r"^[A-Za-z0-9_.+-]+$")


def _open_store(directory: Path):
    from archlab.study.store import DB_NAME, StudyStore

    db = directory / DB_NAME
    if not db.is_file():
        raise ConfigError(f"{directory}: no {DB_NAME} here; run `archlab study run FILE --out {directory}` first")
    return StudyStore(db)


def _parse_workers(value: str) -> int | str:
    """``--workers``: a positive int or ``auto``."""
    if value.strip().lower() == "auto":
        return "auto"
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"--workers must be a positive integer or 'auto', got {value!r}") from None


def load_study_with_hint(file: Path, *, smoke: bool):
    """:func:`archlab.study.config.load_study`, with a hint when run-file keys sit at the top level."""
    from archlab._validation import load_yaml
    from archlab.study.config import load_study
    from archlab.train.config import TrainConfig

    try:
        return load_study(file, smoke=smoke)
    except ConfigError as exc:
        raw = load_yaml(file) if file.is_file() else {}
        flat = [k for k in raw if k in TrainConfig.model_fields and k not in ("data", "model")]
        if not flat:
            raise
        keys = ", ".join(flat)
        raise ConfigError(
            f"{exc}\n{file}: {keys} belong under `train:` in a study file (run files for `archlab train` are "
            f"flat, study files are not); `archlab study new NAME` writes a commented template"
        ) from None


@study_app.command("new")
def study_new_cmd(
    name: str = typer.Argument(..., help="study name (letters, digits, _ . + -); writes NAME.yaml"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="file to write (default ./NAME.yaml)"),
    force: bool = typer.Option(False, "--force", help="overwrite an existing file"),
    with_plugin: bool = typer.Option(False, "--with-plugin",
                                     help="also write NAME_heads.py (a head of your own) and compare it in the study"),
) -> None:
    """Write a commented study template that runs as written (digits, two heads, three seeds)."""
    from archlab._cli.plugin_template import plugin_head_file, plugin_study_file
    from archlab._cli.schema import study_template

    if not _NAME.match(name):
        raise ConfigError(f"study name {name!r} may only use letters, digits and _ . + -")
    path = out if out is not None else Path(f"{name}.yaml")
    head = path.with_name(f"{path.stem}_heads.py")
    for p in (path, head) if with_plugin else (path,):
        if p.exists() and not force:
            raise ConfigError(f"{p} exists; pass --force to overwrite it or --out another file")
    path.parent.mkdir(parents=True, exist_ok=True)
    if with_plugin:
        head.write_text(plugin_head_file())
        path.write_text(plugin_study_file(name, head.name))
        console.print(f"wrote {head} (your head: gated_mlp)", highlight=False)
    else:
        path.write_text(study_template(name))
    console.print(f"wrote {path}; run it with  archlab study run {path}  (--smoke: a quick check on tiny synthetic data)",
                  highlight=False)


@study_app.command("run")
def study_run_cmd(
    file: Path = typer.Argument(..., help="study YAML file (template: archlab study new NAME)"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="study folder (default runs/<study name>)"),
    workers: str = typer.Option(
        "auto", "--workers", "-w", metavar="N|auto",
        help="parallel worker processes, or 'auto': as many runs side by side as the cores allow for the runs' "
        "train.threads (1 unless the study sets it). Changes the schedule only, never a result",
    ),
    smoke: bool = typer.Option(False, "--smoke", help="use the study's smoke section (synthetic, tiny)"),
    retry_failed: bool = typer.Option(False, "--retry-failed", help="run failed runs again"),
    ray: Optional[str] = typer.Option(
        None, "--ray", metavar="ADDRESS",
        help="run every run as a Ray task on this cluster ('local': start one here); --out must be on a "
        "path all nodes share. Needs .venv/bin/pip install -e '.\\[ray]'",
    ),
) -> None:
    """Run every (dataset, variant, seed) of FILE that is not done yet, then write the report.

    Shows every run in flight (epoch, step) and an ETA. Ctrl-C stops cleanly (exit 130): finished
    runs are kept and the same command resumes the rest.
    """
    if ray is None and workers.strip() != "1":
        # worker processes fork from a server that imports torch now, beside this process's imports
        from archlab.study.backends.local import start_worker_server

        start_worker_server()
    from archlab._cli.progress import StudyProgress
    from archlab.study.runner import choose_workers, run_dir, run_study

    study = load_study_with_hint(file, smoke=smoke)
    main_metric = "dice" if study.train.get("monitor") == "dice" else "accuracy"  # segmentation studies
    out = out or Path("runs") / (study.name + ("-smoke" if smoke else ""))
    from archlab._validation import check_out_dir

    check_out_dir(out)  # a file, /dev/null, /proc/x: one line now, not an OSError later
    grid = study.grid()
    n_workers = _parse_workers(workers)
    plan = study.seeds_plan
    seeds = (f"{plan.min}-{plan.max} seeds (adaptive: {plan.min} first, then {plan.step} more per round "
             "until decided)" if plan is not None else f"{len(study.seeds)} seeds")
    console.print(
        f"[bold]study {study.name}[/]: {len(study.variants)} variants x {seeds} x "
        f"{len(study.dataset_configs())} dataset(s) = {'at most ' if plan is not None else ''}{len(grid)} runs -> {out}"
    )
    failed: list[str] = []
    side_by_side = None if ray else (choose_workers(len(grid)) if n_workers == "auto" else n_workers)
    with StudyProgress(console, len(grid), lambda key: run_dir(out, key), workers=side_by_side) as display:

        def on_event(kind: str, key: Any, info: dict[str, Any]) -> None:
            display.on_event(kind, key, info)
            if kind == "done":
                display.print(
                    f"{key.label}: test {main_metric} {info['test'][main_metric]:.4f} ({info['train_seconds']:.1f} s)",
                    highlight=False,
                )
            elif kind == "trial_done":  # a tuning trial: validation only
                display.print(f"{key.label} (tuning trial): val {main_metric} {info['val'][main_metric]:.4f}",
                              highlight=False)
            elif kind in ("failed", "trial_failed"):
                failed.append(key.label)
                display.print(f"[red]{key.label} failed[/]: {info['error'].splitlines()[0]}", highlight=False)
            elif kind in ("round", "look"):
                for line in round_lines(kind, info, multi_dataset=len(study.dataset_configs()) > 1):
                    display.print(line, highlight=False)
            elif kind == "analysis_failed":  # retried by the next `study run`; the study goes on
                display.print(f"[yellow]{key.label} analysis {info['analysis']} failed[/]: "
                              f"{info['error'].splitlines()[0]}", highlight=False)

        try:
            store = run_study(
                study, out, workers=n_workers, retry_failed=retry_failed, on_event=on_event, ray_address=ray
            )
        except KeyboardInterrupt:
            # (click would turn it into "Aborted!" and exit 1)
            display.stop()
            err_console.print(
                f"[yellow]interrupted[/]: finished runs are kept and the stopped ones resume from their last "
                f"checkpoint; run the same command again to continue ({out})",
                highlight=False,
            )
            raise typer.Exit(130) from None
    from archlab.study.report import markdown_table

    print_markdown(markdown_table(store.rows(), baseline=study.baseline, metric=main_metric,
                                  settings=study.model_dump(mode="json")))  # the report's verdicts
    console.print(f"report: {out / 'report.html'}  ({out / 'report.md'})", highlight=False)
    if failed:
        err_console.print(f"[red]{len(failed)} run(s) failed[/]; see `archlab study status {out}`")
        raise typer.Exit(1)


def round_lines(kind: str, info: dict[str, Any], *, multi_dataset: bool = False) -> list[str]:
    """What ``study run`` prints for the adaptive-seeds events: the round it starts (``round``), and
    after it why each comparison stopped or continues (``look``)."""
    if kind == "round":
        n = info["seeds"]
        return [f"[bold]round {info['round']}/{info['rounds']}[/]: seeds 0-{n - 1} for {info['comparisons']} "
                f"undecided comparison{'s' if info['comparisons'] != 1 else ''}, {info['runs']} run"
                f"{'s' if info['runs'] != 1 else ''} to do (at most {info['max_runs']} in all)"]
    # scipy-backed wording: imported by adaptive studies only, which have imported it already
    from archlab.study.wording import sequential_reason

    out = []
    for (dataset, variant), dec in info["decisions"].items():
        who = f"{variant} ({dataset})" if multi_dataset else variant
        out.append(f"  {who}: {sequential_reason(dec, info['margin'], info['metric'])}")
    return out


def lock_holder(directory: Path) -> int | None:
    """The pid of the live ``study run`` holding ``directory``'s lock, or None when none does.

    A holder is found by trying a shared ``flock`` on the lock file without blocking (the running
    study holds it exclusively; the kernel drops the lock when that process dies, even by kill -9).
    """
    import fcntl

    from archlab.study.runner import StudyLock

    path = StudyLock(directory).path
    if not path.is_file():
        return None
    fd = os.open(path, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            text = os.read(fd, 64).decode(errors="replace").strip()
            return int(text) if text.isdigit() else -1
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


@study_app.command("status")
def study_status_cmd(directory: Path = typer.Argument(..., help="study folder")) -> None:
    """Progress of a study: runs per status (running vs interrupted), failures with their reasons."""
    from archlab.study.config import RunKey
    from archlab.study.progress import read_progress
    from archlab.study.runner import run_dir

    store = _open_store(directory)
    counts = store.status_counts()
    total = sum(counts.values())
    holder = lock_holder(directory)
    if counts["running"] and holder is None:
        in_flight = f"[yellow]{counts['running']} interrupted[/] (no study process; the same `study run` resumes them)"
    elif holder is not None:
        in_flight = f"{counts['running']} running (study process pid {holder if holder > 0 else '?'})"
    else:
        in_flight = "0 running"
    console.print(f"[bold]{store.get_meta('name', directory.name)}[/]: {counts['done']}/{total} done, "
                  f"{in_flight}, {counts['pending']} pending, {counts['failed']} failed", highlight=False)
    table = Table("dataset", "variant", "done", "failed", "left")
    agg: dict[tuple[str, str], list[int]] = {}
    for r in store.rows(with_predictions=False, with_history=False):
        a = agg.setdefault((r.dataset, r.variant), [0, 0, 0])
        a[0 if r.status == "done" else 1 if r.status == "failed" else 2] += 1
        if r.status == "failed":
            console.print(f"[red]failed[/] {r.dataset}/{r.variant}/seed{r.seed}: "
                          f"{(r.error or '').splitlines()[0]}", highlight=False)
        elif r.status == "running":
            label = f"{r.dataset}/{r.variant}/seed{r.seed}"
            rec = read_progress(run_dir(directory, RunKey(dataset=r.dataset, variant=r.variant, seed=r.seed)))
            where = (f"epoch {rec['epoch']}/{rec['epochs']}, step {rec['step']}/{rec['steps_per_epoch']}"
                     if rec else "no progress recorded yet")
            state = "running" if holder is not None else "[yellow]interrupted[/]"
            console.print(f"{state} {label}: {where}", highlight=False)
    for (d, v), (done, fail, left) in agg.items():
        table.add_row(d, v, str(done), str(fail), str(left))
    console.print(table)


@study_app.command("report")
def study_report_cmd(directory: Path = typer.Argument(..., help="study folder")) -> None:
    """(Re)write report.md and report.html of a study and print its table."""
    from archlab.study.report import markdown_table
    from archlab.study.runner import write_study_report

    from archlab.plugins import ensure_plugins, recorded_plugins

    store = _open_store(directory)
    # the runs' plugins first: their metrics and analyses are reported like the built-in ones
    ensure_plugins(recorded_plugins(r.config for r in store.rows(with_predictions=False, with_history=False)),
                   str(directory))
    md, html = write_study_report(store, directory)
    study = store.get_meta("study") or {}
    metric = "dice" if (study.get("train") or {}).get("monitor") == "dice" else "accuracy"
    from archlab.study.report import markdown_table

    print_markdown(markdown_table(store.rows(), baseline=store.get_meta("baseline"), metric=metric, settings=study))
    console.print(f"report: {html}  ({md})", highlight=False)


@study_app.command("export")
def study_export_cmd(
    directory: Path = typer.Argument(..., help="study folder"),
    what: str = typer.Option(
        "runs", "--what", metavar="runs|history|verdicts|all",
        help="the table: runs (one row per run: metrics, params, FLOPs, description, hyperparameters, "
        "provenance), history (one row per run and epoch), verdicts (one row per comparison); comma-separated "
        "or all with --out",
    ),
    fmt: str = typer.Option("csv", "--format", "-f", help="csv, json, or parquet (files only; needs pyarrow)"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="folder to write <table>.<format> files into "
                                       "(default: print the one table to stdout)"),
) -> None:
    """Export a study's results as tables: runs, per-epoch history, verdicts (csv, json, parquet).

    Without --out one table is printed to stdout (``archlab study export DIR`` prints the runs as
    CSV, its first columns unchanged from earlier versions). DataFrames of the same tables:
    archlab.study.tables.runs_frame / history_frame / verdicts_frame.
    """
    # pandas/matplotlib-backed (the verdicts reuse the report's statistics): imported here so the
    # CLI starts without them
    from archlab.study.tables import TABLES, export_tables, table_rows, write_table

    tables = list(TABLES) if what.strip() == "all" else [w.strip() for w in what.split(",") if w.strip()]
    bad = [w for w in tables if w not in TABLES]
    if bad or not tables:
        raise ConfigError(f"--what {what!r}: expected one of {', '.join(TABLES)}, a comma-separated list, or all")
    store = _open_store(directory)
    if out is None:
        if len(tables) > 1:
            raise ConfigError(f"--what {what!r} names {len(tables)} tables: pass --out DIR to write one file each")
        sys.stdout.write(write_table(table_rows(store, tables[0]), None, fmt) or "")
        return
    for path in export_tables(store, out, tables, fmt):
        console.print(f"wrote {path}", highlight=False)


# ----------------------------------------------------------------------------------------------
# Markdown -> terminal

_CELL_SPLIT = re.compile(r"(?<!\\)\|")
_SEPARATOR = re.compile(r"^:?-{3,}:?$")


def _unescape(text: str) -> str:
    return re.sub(r"\\([\\`*_{}\[\]()#+\-.!|<>~])", r"\1", text)


def markdown_renderables(md: str) -> list[Any]:
    """The report's Markdown summary as rich renderables: pipe tables become tables, ``**x**`` bold."""
    out: list[Any] = []
    for block in re.split(r"\n\s*\n", md.strip()):
        lines = [ln for ln in block.splitlines() if ln.strip()]
        if lines and all(ln.lstrip().startswith("|") for ln in lines):
            rows = [[_unescape(c).strip() for c in _CELL_SPLIT.split(ln.strip().strip("|"))] for ln in lines]
            header, body = rows[0], rows[1:]
            justify = ["left"] * len(header)
            if body and all(_SEPARATOR.match(c.replace(" ", "")) for c in body[0]):
                justify = ["right" if c.strip().endswith(":") else "left" for c in body[0]]
                body = body[1:]
            table = Table(show_lines=False, box=box.SIMPLE_HEAD, pad_edge=False)
            for name, j in zip(header, justify):
                table.add_column(name, justify=j)
            for row in body:
                table.add_row(*(row + [""] * (len(header) - len(row)))[: len(header)])
            out.append(table)
        else:
            text = Text()
            for part in re.split(r"(\*\*[^*]+\*\*)", "\n".join(lines)):
                if part.startswith("**") and part.endswith("**") and len(part) > 4:
                    text.append(_unescape(part[2:-2]), style="bold")
                else:
                    text.append(_unescape(part))
            out.append(text)
    return out


#: width of the summary off a terminal (a log, a pipe) unless $COLUMNS says otherwise
PIPE_WIDTH = 100


def summary_console() -> Console:
    """The console the end-of-study summary is printed on: the terminal's width, or off a terminal
    ``$COLUMNS`` (else :data:`PIPE_WIDTH`); words wrap at that width (the CLI's console keeps long
    lines whole for greppable logs, which would leave the verdict lines over the width)."""
    if console.is_terminal:
        width = console.width
    else:
        cols = os.environ.get("COLUMNS", "")
        width = int(cols) if cols.isdigit() and int(cols) >= 40 else PIPE_WIDTH
    return Console(file=console.file, width=width, soft_wrap=False, force_terminal=console.is_terminal,
                   no_color=not console.is_terminal, highlight=False)


def print_markdown(md: str) -> None:
    """Print the Markdown summary on the console: tables fit its width, verdicts as lines under them."""
    target = summary_console()
    for r in markdown_renderables(md):
        target.print(r, highlight=False)
