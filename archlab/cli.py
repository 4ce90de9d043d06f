"""The ``archlab`` command line (SPEC §7).

Exit codes: 0 ok, 1 failure while working, 2 usage error / bad input. User errors print one red
line, never a traceback.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, Optional

import typer
import yaml
from rich.table import Table

from archlab._cli.bench import bench_cmd
from archlab._cli.console import console, err_console
from archlab._cli.data import data_app
from archlab._cli.export import export_cmd
from archlab._cli.study import study_app
from archlab._cli.train import train_cmd
from archlab.errors import ArchlabError, ConfigError

app = typer.Typer(
    name="archlab",
    help="Fair, fast, statistically honest experiments with CNN architecture components.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.command("models")
def models_cmd(pattern: str = typer.Argument("*", help="shell-style filter, e.g. 'vgg*'")) -> None:
    """List the registered models (and the heads any of them can take)."""
    from archlab import list_heads, list_models
    from archlab._registry import model_entrypoint

    names = list_models(pattern)
    if not names:
        raise ConfigError(f"no model matches {pattern!r}; run `archlab models` for the full list")
    table = Table("model", "description")
    for n in names:
        doc = (model_entrypoint(n).__doc__ or "").strip().splitlines()
        table.add_row(n, doc[0] if doc else "")
    console.print(table)
    console.print(f"heads: {', '.join(list_heads())}")


@app.command("info")
def info_cmd(
    model: str = typer.Argument(..., help="registered model name"),
    input_size: Optional[int] = typer.Option(None, "--input-size", help="input height = width (default: the model's own)"),
    in_chans: int = typer.Option(3, "--in-chans"),
    num_classes: int = typer.Option(10, "--num-classes"),
    head: Optional[str] = typer.Option(None, "--head"),
    latency_runs: int = typer.Option(10, "--latency-runs", help="timed forward passes (0: skip)"),
    as_json: bool = typer.Option(False, "--json", help="print the profile as JSON"),
) -> None:
    """Parameters, FLOPs, output shape per stage and latency of MODEL."""
    from archlab import create_model, profile

    m = create_model(model, num_classes=num_classes, in_chans=in_chans, head=head, input_size=input_size)
    prof = profile(m, (1, in_chans, *m.input_size), latency_runs=latency_runs)
    if as_json:
        print(json.dumps(prof.to_dict(), indent=2))
        return
    console.print(f"[bold]{model}[/] head={m.head_name} input=1x{in_chans}x{m.input_size[0]}x{m.input_size[1]}")
    console.print(f"parameters: {prof.params_total:,} ({prof.params_trainable:,} trainable)")
    console.print(f"FLOPs: {prof.flops:,}" + (f"   latency: {prof.latency_ms:.2f} ms" if prof.latency_ms else ""))
    table = Table("stage", "output shape", "parameters")
    for name, shape in prof.stage_shapes.items():
        short = name.removeprefix("backbone.")
        params = prof.params_per_stage.get(short, prof.params_per_module.get(short, 0))
        table.add_row(name, "x".join(map(str, shape)), f"{params:,}")
    console.print(table)


# The larger commands live in archlab/_cli/, one file each.
app.command("train")(train_cmd)
app.add_typer(study_app, name="study")

analyze_app = typer.Typer(help="Analyses of models and trained runs (PNG + CSV outputs).", no_args_is_help=True)
app.add_typer(analyze_app, name="analyze")


def _test_images(splits: Any, n: int) -> tuple[Any, Any]:
    if n < 1:
        raise ConfigError(f"--images must be at least 1, got {n}")
    ds = splits.test
    n = min(n, len(ds))
    return ds.images[:n].float() / 255.0, ds.labels[:n]


@analyze_app.command("profile")
def analyze_profile_cmd(
    models: list[str] = typer.Argument(..., help="registered model names"),
    input_size: Optional[int] = typer.Option(None, "--input-size"),
    in_chans: int = typer.Option(3, "--in-chans"),
    num_classes: int = typer.Option(10, "--num-classes"),
    latency_runs: int = typer.Option(10, "--latency-runs"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="also write profile.csv and profile.json here"),
) -> None:
    """Parameters, FLOPs, latency and peak memory per model."""
    import csv

    from archlab import create_model, profile

    rows = []
    for name in models:
        m = create_model(name, num_classes=num_classes, in_chans=in_chans, input_size=input_size)
        p = profile(m, (1, in_chans, *m.input_size), latency_runs=latency_runs)
        rows.append({"model": name, "input": "x".join(map(str, p.input_size[1:])), "params": p.params_total,
                     "flops": p.flops, "latency_ms": p.latency_ms, "peak_memory_mb": p.peak_memory_mb})
    table = Table("model", "input", "parameters", "FLOPs", "latency ms")
    for r in rows:
        lat = f"{r['latency_ms']:.2f}" if r["latency_ms"] is not None else "-"
        table.add_row(r["model"], r["input"], f"{r['params']:,}", f"{r['flops']:,}", lat)
    console.print(table)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        with open(out / "profile.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
        (out / "profile.json").write_text(json.dumps(rows, indent=1))
        console.print(f"wrote {out / 'profile.csv'}")


@analyze_app.command("rotation")
def analyze_rotation_cmd(
    runs: list[Path] = typer.Argument(..., help="run folders (archlab train / study runs)"),
    images: int = typer.Option(100, "--images", help="test images to rotate"),
    step: float = typer.Option(1.0, "--step", help="angle step in degrees (0..360)"),
    out: Path = typer.Option(Path("analysis/rotation"), "--out", "-o"),
) -> None:
    """Probability of the correct class vs rotation angle, and % of angles classified correctly."""
    import torch

    from archlab.analysis.rotation import rotation_analysis
    from archlab.train.engine import load_run

    if not 0 < step <= 360:
        raise ConfigError(f"--step must be in (0, 360], got {step}")
    models, x, y, norm = {}, None, None, None
    for run in runs:
        model, cfg, splits, norm_r = load_run(run)
        xi, yi = _test_images(splits, images)
        if x is not None and (xi.shape != x.shape or not torch.equal(yi, y)):
            raise ConfigError(f"{run}: its test split differs from {runs[0]}'s; compare runs of one dataset")
        x, y, norm = xi, yi, norm_r
        models[_run_label(run)] = model
    res = rotation_analysis(models, x, y, out, angles=torch.arange(0.0, 360.0, step), transform=norm)
    for name, summ in res["summary"].items():
        console.print(
            f"{name}: {summ['mean']:.1f} % of angles correct on average (median {summ['median']:.1f} %)", highlight=False
        )
    console.print(f"wrote {', '.join(str(p) for p in res['paths'].values())}")


@analyze_app.command("transplant")
def analyze_transplant_cmd(
    run: Path = typer.Argument(..., help="run folder of the baseline (ordinary convolutions)"),
    images: int = typer.Option(100, "--images"),
    step: float = typer.Option(1.0, "--step"),
    out: Path = typer.Option(Path("analysis/transplant"), "--out", "-o"),
) -> None:
    """Load a baseline's weights into its rotation-invariant twins and evaluate them."""
    import torch

    from archlab.analysis.transplant import transplant_analysis
    from archlab.train.engine import load_run

    model, cfg, splits, norm = load_run(run)
    x, y = _test_images(splits, images)
    res = transplant_analysis(model, x, y, out, angles=torch.arange(0.0, 360.0, step), transform=norm)
    for name, acc in res["accuracy"].items():
        console.print(f"{name}: test accuracy {acc:.4f}", highlight=False)
    console.print(f"wrote {', '.join(str(p) for p in res['paths'].values())}")


@analyze_app.command("connections")
def analyze_connections_cmd(
    run: Path = typer.Argument(..., help="run folder of a connected_net run"),
    threshold: Optional[float] = typer.Option(None, "--threshold", help="also list the connections this gate value keeps"),
    out: Path = typer.Option(Path("analysis/connections"), "--out", "-o"),
) -> None:
    """Gate values of every GatedConnection per epoch (evolution plot + CSV)."""
    from archlab.analysis.connections import connections_analysis
    from archlab.train.engine import RESULT_FILE, load_run

    result_path = run / RESULT_FILE
    if not result_path.is_file():
        raise ConfigError(f"{run}: no {RESULT_FILE}; the connections analysis needs a finished run")
    gates = json.loads(result_path.read_text()).get("extras", {}).get("gates")
    if not gates:
        raise ConfigError(f"{run}: the run recorded no gate values (is it a connected_net run?)")
    model = load_run(run)[0] if threshold is not None else None
    connections_analysis(gates, out, model=model, threshold=threshold)
    console.print(f"wrote {out} ({len(gates)} epochs)")
    if model is not None:
        # The pruned model as a study variant: add it to the same study file and re-run the study;
        # finished runs are kept and only the pruned variant trains (from scratch, same seeds).
        pattern = model.pruned_connections(threshold)
        cfg = json.loads((run / "config.json").read_text())["model"]
        variant = {f"pruned_{threshold:g}": {"model": {"name": cfg["name"], "kwargs": {**cfg["kwargs"], "connections": pattern}}}}
        text = yaml.safe_dump(variant, default_flow_style=None, sort_keys=False)
        (out / "pruned_variant.yaml").write_text(text)
        before = sum(p.numel() for p in model.parameters())
        after = sum(p.numel() for p in model.prune(threshold, seed=0).parameters())
        console.print(f"pruned at {threshold:g}: {before:,} -> {after:,} parameters; add this variant to the study:")
        console.print(text, highlight=False, markup=False)


@analyze_app.command("feature-reuse")
def analyze_feature_reuse_cmd(
    run: Path = typer.Argument(..., help="run folder of a DenseNet run"),
    normalize: str = typer.Option("block", "--normalize", help="colour scale: block, target or none"),
    out: Path = typer.Option(Path("analysis/feature_reuse"), "--out", "-o"),
) -> None:
    """DenseNet feature reuse: mean |weight| of each layer on each earlier layer's maps (heatmap + CSV)."""
    from archlab.analysis.feature_reuse import write_feature_reuse
    from archlab.train.engine import load_run

    if normalize not in ("block", "target", "none"):
        raise ConfigError(f"--normalize must be block, target or none, got {normalize!r}")
    paths = write_feature_reuse(load_run(run)[0], out, normalize=normalize)
    console.print(f"wrote {paths['png']} and {paths['csv']}")


@analyze_app.command("excitation")
def analyze_excitation_cmd(
    run: Path = typer.Argument(..., help="run folder of a model with SE blocks"),
    classes: Optional[str] = typer.Option(None, "--classes", help="class ids, e.g. 0,3 (default: all)"),
    blocks: Optional[str] = typer.Option(None, "--blocks", help="SE module names or patterns, comma-separated"),
    images: int = typer.Option(1000, "--images", help="test images to pass through"),
    out: Path = typer.Option(Path("analysis/excitation"), "--out", "-o"),
) -> None:
    """SE excitation distributions per block for chosen classes, on the run's test images (PNG + CSV)."""
    from archlab.analysis.excitation import write_excitation_report
    from archlab.train.engine import load_run

    model, _, splits, norm = load_run(run)
    x, y = _test_images(splits, images)
    try:
        chosen = [int(c) for c in classes.split(",")] if classes else None
    except ValueError:
        raise ConfigError(f"--classes expects comma-separated class ids, got {classes!r}") from None
    paths = write_excitation_report(
        model, x, y, out, classes=chosen, class_names=splits.test.classes,
        blocks=blocks.split(",") if blocks else None, preprocess=norm,
    )  # fmt: skip
    console.print(f"wrote {paths['png']} and {paths['csv']}")




app.add_typer(data_app, name="data")
app.command("bench")(bench_cmd)
app.command("export")(export_cmd)


def _run_label(run: Path) -> str:
    parts = run.resolve().parts
    return "/".join(parts[-2:]) if parts[-1].startswith("seed") else parts[-1]


def _hide_flag_types(command: Any) -> None:
    """Show no ``<bool>`` type next to on/off flags (``--quiet``, ``--resume/--no-resume``, ``--help``).

    typer prints every option's type in the help; for a flag that takes no value it is noise.
    typer 0.29 vendors its own click, so the context is typer's public ``typer.Context`` (importing
    ``click`` would need a package a plain ``pip install .`` does not bring).
    """
    params = list(command.params)
    help_option = command.get_help_option(typer.Context(command, info_name=command.name))
    if help_option is not None:
        params.append(help_option)
    for param in params:
        if getattr(param, "is_flag", False):
            param.metavar = ""
    for sub in getattr(command, "commands", {}).values():
        _hide_flag_types(sub)


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the CLI and map errors to exit codes."""
    import logging

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    restore = _one_interrupt()
    try:
        # standalone mode: typer/click print usage errors themselves and exit 2 via SystemExit
        command = typer.main.get_command(app)
        _hide_flag_types(command)
        command(args=argv, prog_name="archlab")
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except OSError as exc:  # the machine refused (disk full, permission, a path that cannot exist)
        from rich.markup import escape

        where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        err_console.print(f"[red]error:[/] {escape(where + str(exc.strerror or exc))}", highlight=False)
        return 1
    except ArchlabError as exc:
        from rich.markup import escape

        for i, line in enumerate(str(exc).splitlines() or [type(exc).__name__]):
            text = escape(line)
            err_console.print(f"[red]error:[/] {text}" if i == 0 else f"       {text}", highlight=False)
        return exc.exit_code
    finally:
        if argv is not None:  # called from Python (tests, scripts): leave Ctrl-C as it was
            restore()
        else:  # the process exits now; a late Ctrl-C must not kill it during shutdown (exit -2, not 130)
            _ignore_interrupts()
    return 0


def _ignore_interrupts() -> None:
    import signal
    import threading

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def _one_interrupt():
    """Make Ctrl-C stop the command once: the first raises KeyboardInterrupt, a second one pressed
    while that is handled (two within milliseconds) is ignored instead of interrupting the clean-up
    with a traceback; a third exits at once (exit 130; runs resume from their crash-safe checkpoints).

    Returns:
        A function restoring the previous handler.
    """
    import os
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = signal.getsignal(signal.SIGINT)
    if previous is not signal.default_int_handler:  # someone else handles Ctrl-C: leave it
        return lambda: None
    presses = [0]

    def handler(signum: int, frame: Any) -> None:
        presses[0] += 1
        if presses[0] == 1:
            raise KeyboardInterrupt
        if presses[0] >= 3:
            os.write(2, b"interrupted again: exiting now; the stopped runs resume from their last checkpoint\n")
            os._exit(130)

    signal.signal(signal.SIGINT, handler)
    return lambda: signal.signal(signal.SIGINT, previous)


def entry() -> None:
    """The ``archlab`` command: :func:`main`, then exit without the interpreter's module teardown.

    Once a command has written everything, tearing down the ~2,000 modules a study imports (torch,
    ``torch._dynamo``, scipy, matplotlib) still takes ~0.85 s on a 2-core machine, added to every
    command. The exit handlers still run (``atexit``: logging, multiprocessing, temporary folders)
    and the standard streams are flushed; only that teardown is skipped, and only when no
    non-daemon thread is left (otherwise Python exits as usual, waiting for it).
    """
    code = main()
    import threading

    if any(t is not threading.main_thread() and not t.daemon and t.is_alive() for t in threading.enumerate()):
        sys.exit(code)
    import atexit

    atexit._run_exitfuncs()  # what Python's own exit runs before the teardown
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: nothing more can be said
            pass
    os._exit(code)


if __name__ == "__main__":
    entry()
