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
console = Console()
err_console = Console(stderr=True)


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
    _run_training(cfg, out, resume=resume, quiet=quiet)


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
                )

        result = train(cfg, out, resume=resume, on_step=on_step, on_epoch=on_epoch, splits=splits)
    console.print(
        f"best epoch {result.best_epoch}: val accuracy {result.val['accuracy']:.4f}, f1 {result.val['f1_macro']:.4f}"
    )
    console.print(
        f"test accuracy {result.test['accuracy']:.4f}  f1_macro {result.test['f1_macro']:.4f}  "
        f"loss {result.test['loss']:.4f}  ({result.params:,} params, {result.train_seconds:.1f} s training)"
    )


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
