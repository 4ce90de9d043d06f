"""The ``archlab`` command line (SPEC §7).

Exit codes: 0 ok, 1 failure while working, 2 usage error / bad input. User errors print one red
line, never a traceback.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Optional

import typer
import yaml
from rich.console import Console
from rich.table import Table

from archlab.errors import ArchlabError, ConfigError

app = typer.Typer(
    name="archlab",
    help="Fair, fast, statistically honest experiments with CNN architecture components.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)


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


@app.command("train")
def train_cmd(
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="YAML file with a TrainConfig"),
    model: Optional[str] = typer.Option(None, "--model", "-m"),
    head: Optional[str] = typer.Option(None, "--head"),
    dataset: Optional[str] = typer.Option(None, "--dataset", "-d"),
    data_root: Optional[str] = typer.Option(None, "--data-root"),
    image_size: Optional[int] = typer.Option(None, "--image-size", help="dataset option image_size (e.g. 28)"),
    augment: Optional[str] = typer.Option(None, "--augment"),
    epochs: Optional[int] = typer.Option(None, "--epochs"),
    batch_size: Optional[int] = typer.Option(None, "--batch-size"),
    lr: Optional[float] = typer.Option(None, "--lr"),
    optimizer: Optional[str] = typer.Option(None, "--optimizer"),
    scheduler: Optional[str] = typer.Option(None, "--scheduler"),
    loss: Optional[str] = typer.Option(None, "--loss"),
    seed: Optional[int] = typer.Option(None, "--seed"),
    device: Optional[str] = typer.Option(None, "--device"),
    overrides: list[str] = typer.Option([], "--set", help="override any config key: --set optim.weight_decay=1e-4"),
    out: Path = typer.Option(Path("runs/train"), "--out", "-o", help="run folder (checkpoints, result.json)"),
    resume: bool = typer.Option(True, "--resume/--no-resume", help="continue from the run folder's checkpoint"),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
) -> None:
    """Train one model (flags or a YAML file), then print its validation and test metrics."""
    from archlab._validation import load_yaml, validate_config
    from archlab.train.config import TrainConfig

    data: dict[str, Any] = load_yaml(config) if config is not None else {}
    source = str(config) if config is not None else "flags"
    flags = {
        "model.name": model,
        "model.head": head,
        "data.name": dataset,
        "data.root": data_root,
        "data.options.image_size": image_size,
        "data.augment": augment,
        "epochs": epochs,
        "batch_size": batch_size,
        "optim.lr": lr,
        "optim.name": optimizer,
        "scheduler.name": scheduler,
        "loss": loss,
        "seed": seed,
        "device": device,
    }
    for key, value in flags.items():
        if value is not None:
            _set_path(data, key, value)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set expects KEY=VALUE (e.g. optim.lr=0.01), got {item!r}")
        key, raw = item.split("=", 1)
        _set_path(data, key.strip(), yaml.safe_load(raw))
    cfg = validate_config(TrainConfig, data, source)
    from archlab.train.distributed import is_main, launch

    with launch(cfg.device):  # started by torchrun: one DDP run over all its processes
        if is_main():
            _run_training(cfg, out, resume=resume, quiet=quiet)
        else:  # the other ranks train silently; rank 0 prints
            with console.capture():
                _run_training(cfg, out, resume=resume, quiet=True)


def _run_training(cfg: Any, out: Path, *, resume: bool, quiet: bool) -> None:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from archlab.train.engine import prepare_data, train

    splits = prepare_data(cfg)
    steps_per_epoch = -(-len(splits.train) // cfg.batch_size)
    if cfg.drop_last:
        steps_per_epoch = len(splits.train) // cfg.batch_size
    total = steps_per_epoch * cfg.epochs
    console.print(
        f"[bold]{cfg.model.name}[/] (head {cfg.model.head or 'default'}) on {cfg.data.name}: "
        f"train {len(splits.train)} / val {len(splits.val)} / test {len(splits.test)}, "
        f"{cfg.epochs} epochs, seed {cfg.seed} -> {out}"
    )
    progress = Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
        console=console, disable=quiet, transient=True,
    )
    with progress:
        task = progress.add_task("training", total=total)

        def on_step(step: int) -> None:
            progress.update(task, completed=step)

        def on_epoch(row: dict[str, float]) -> None:
            if not quiet:
                progress.console.print(
                    f"epoch {row['epoch']:3d}  loss {row['train_loss']:.4f}  "
                    f"val acc {row['val_accuracy']:.4f}  val loss {row['val_loss']:.4f}"
                    + (f"  val dice {row['val_dice']:.4f}" if cfg.monitor == "dice" else "")
                )

        result = train(cfg, out, resume=resume, on_step=on_step, on_epoch=on_epoch, splits=splits)
    console.print(
        f"best epoch {result.best_epoch}: val accuracy {result.val['accuracy']:.4f}, f1 {result.val['f1_macro']:.4f}"
    )
    console.print(
        f"test accuracy {result.test['accuracy']:.4f}  f1_macro {result.test['f1_macro']:.4f}  "
        + (f"dice {result.test['dice']:.4f}  " if cfg.monitor == "dice" else "")
        + f"loss {result.test['loss']:.4f}  ({result.params:,} params, {result.train_seconds:.1f} s training)"
    )


study_app = typer.Typer(help="Run, inspect and report studies (variant x seed x dataset grids).", no_args_is_help=True)
app.add_typer(study_app, name="study")


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


@study_app.command("run")
def study_run_cmd(
    file: Path = typer.Argument(..., help="study YAML file"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="study folder (default runs/<study name>)"),
    workers: str = typer.Option(
        "1", "--workers", "-w",
        help="parallel worker processes, or 'auto': one single-threaded worker per core (faster for studies of small models)",
    ),
    smoke: bool = typer.Option(False, "--smoke", help="use the study's smoke section (synthetic, tiny)"),
    retry_failed: bool = typer.Option(False, "--retry-failed", help="run failed runs again"),
    ray: Optional[str] = typer.Option(
        None, "--ray", metavar="ADDRESS",
        help="run every run as a Ray task on this cluster ('local': start one here); --out must be on a "
        "path all nodes share. Needs pip install archlab\\[ray]",
    ),
) -> None:
    """Run every (dataset, variant, seed) of FILE that is not done yet, then write the report.

    Ctrl-C stops cleanly (exit 130): finished runs are kept and the same command resumes the rest.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from archlab.study.config import load_study
    from archlab.study.report import markdown_table
    from archlab.study.runner import run_study

    study = load_study(file, smoke=smoke)
    main_metric = "dice" if study.train.get("monitor") == "dice" else "accuracy"  # segmentation studies
    out = out or Path("runs") / (study.name + ("-smoke" if smoke else ""))
    grid = study.grid()
    console.print(
        f"[bold]study {study.name}[/]: {len(study.variants)} variants x {len(study.seeds)} seeds x "
        f"{len(study.dataset_configs())} dataset(s) = {len(grid)} runs -> {out}"
    )
    failed: list[str] = []
    progress = Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=console, transient=True,
    )
    with progress:
        task = progress.add_task("runs", total=len(grid))

        def on_event(kind: str, key: Any, info: dict[str, Any]) -> None:
            if kind in ("skip", "done", "failed"):
                progress.advance(task)
            if kind == "start":
                progress.update(task, description=key.label)
            elif kind == "done":
                progress.console.print(
                    f"{key.label}: test {main_metric} {info['test'][main_metric]:.4f} ({info['train_seconds']:.1f} s)",
                    highlight=False,
                )
            elif kind == "failed":
                failed.append(key.label)
                progress.console.print(f"[red]{key.label} failed[/]: {info['error'].splitlines()[0]}", highlight=False)

        try:
            store = run_study(
                study, out, workers=_parse_workers(workers), retry_failed=retry_failed, on_event=on_event, ray_address=ray
            )
        except KeyboardInterrupt:
            # (click would turn it into "Aborted!" and exit 1)
            progress.stop()
            err_console.print(
                f"[yellow]interrupted[/]: finished runs are kept and the stopped ones resume from their last "
                f"checkpoint; run the same command again to continue ({out})",
                highlight=False,
            )
            raise typer.Exit(130) from None
    console.print(markdown_table(store.rows(), baseline=study.baseline, metric=main_metric), highlight=False, markup=False)
    console.print(f"report: {out / 'report.html'}  ({out / 'report.md'})")
    if failed:
        err_console.print(f"[red]{len(failed)} run(s) failed[/]; see `archlab study status {out}`")
        raise typer.Exit(1)


@study_app.command("status")
def study_status_cmd(directory: Path = typer.Argument(..., help="study folder")) -> None:
    """Progress of a study: runs per status, failures with their reasons."""
    store = _open_store(directory)
    counts = store.status_counts()
    total = sum(counts.values())
    console.print(f"[bold]{store.get_meta('name', directory.name)}[/]: {counts['done']}/{total} done, "
                  f"{counts['running']} interrupted/running, {counts['pending']} pending, {counts['failed']} failed")
    table = Table("dataset", "variant", "done", "failed", "left")
    agg: dict[tuple[str, str], list[int]] = {}
    for r in store.rows(with_predictions=False, with_history=False):
        a = agg.setdefault((r["dataset"], r["variant"]), [0, 0, 0])
        a[0 if r["status"] == "done" else 1 if r["status"] == "failed" else 2] += 1
        if r["status"] == "failed":
            console.print(f"[red]failed[/] {r['dataset']}/{r['variant']}/seed{r['seed']}: "
                          f"{(r['error'] or '').splitlines()[0]}", highlight=False)
    for (d, v), (done, fail, left) in agg.items():
        table.add_row(d, v, str(done), str(fail), str(left))
    console.print(table)


@study_app.command("report")
def study_report_cmd(directory: Path = typer.Argument(..., help="study folder")) -> None:
    """(Re)write report.md and report.html of a study and print its table."""
    from archlab.study.report import markdown_table
    from archlab.study.runner import write_study_report

    store = _open_store(directory)
    md, html = write_study_report(store, directory)
    console.print(markdown_table(store.rows(), baseline=store.get_meta("baseline")), highlight=False, markup=False)
    console.print(f"report: {html}  ({md})")


EXPORT_COLUMNS = ["dataset", "variant", "seed", "status", "test_accuracy", "test_f1_macro", "test_loss",
                  "val_accuracy", "params", "flops", "train_seconds", "best_epoch", "epochs_run", "error"]


@study_app.command("export")
def study_export_cmd(
    directory: Path = typer.Argument(..., help="study folder"),
    fmt: str = typer.Option("csv", "--format", "-f", help="csv or json"),
) -> None:
    """Print one row per run (csv or json)."""
    import csv

    if fmt not in ("csv", "json"):
        raise ConfigError(f"--format must be csv or json, got {fmt!r}")
    rows = []
    for r in _open_store(directory).rows(with_predictions=False, with_history=False):
        row = {k: r.get(k) for k in EXPORT_COLUMNS}
        for split in ("test", "val"):
            for k, v in (r[split] or {}).items():
                row[f"{split}_{k}"] = v
        row["error"] = (r["error"] or "").splitlines()[0] if r["error"] else None
        rows.append({k: row.get(k) for k in EXPORT_COLUMNS})
    if fmt == "json":
        print(json.dumps(rows, indent=1))
    else:
        w = csv.DictWriter(sys.stdout, fieldnames=EXPORT_COLUMNS, lineterminator="\n")
        w.writeheader()
        w.writerows(rows)


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


# Larger command groups live in archlab/_cli/, one file each.
from archlab._cli.bench import bench_cmd  # noqa: E402
from archlab._cli.data import data_app  # noqa: E402
from archlab._cli.export import export_cmd  # noqa: E402

app.add_typer(data_app, name="data")
app.command("bench")(bench_cmd)
app.command("export")(export_cmd)


def _run_label(run: Path) -> str:
    parts = run.resolve().parts
    return "/".join(parts[-2:]) if parts[-1].startswith("seed") else parts[-1]


def _set_path(data: dict[str, Any], dotted: str, value: Any) -> None:
    node = data
    parts = dotted.split(".")
    for p in parts[:-1]:
        nxt = node.setdefault(p, {})
        if not isinstance(nxt, dict):
            raise ConfigError(f"cannot set {dotted!r}: {p!r} is not a mapping")
        node = nxt
    node[parts[-1]] = value


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the CLI and map errors to exit codes."""
    import logging

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        # standalone mode: typer/click print usage errors themselves and exit 2 via SystemExit
        app(args=argv, prog_name="archlab")
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except ArchlabError as exc:
        from rich.markup import escape

        for i, line in enumerate(str(exc).splitlines() or [type(exc).__name__]):
            text = escape(line)
            err_console.print(f"[red]error:[/] {text}" if i == 0 else f"       {text}", highlight=False)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
