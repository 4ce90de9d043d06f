"""``archlab train``: one run from flags and/or a flat YAML run file.

Errors name what the user wrote: a bad ``--set optim.lr=abc`` is blamed on ``--set optim.lr``, a
bad ``--lr`` on ``--lr`` and a bad key of the file on the file. ``--print-config`` prints the
commented run-file template (:func:`archlab._cli.schema.run_template`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer
import yaml

from archlab._cli.console import console
from archlab.errors import CheckpointError, ConfigError

# flag -> config key it sets (the flag is named when its value is rejected)
FLAG_KEYS = {
    "--model": "model.name",
    "--head": "model.head",
    "--dataset": "data.name",
    "--data-root": "data.root",
    "--image-size": "data.options.image_size",
    "--augment": "data.augment",
    "--epochs": "epochs",
    "--batch-size": "batch_size",
    "--lr": "optim.lr",
    "--optimizer": "optim.name",
    "--scheduler": "scheduler.name",
    "--loss": "loss",
    "--seed": "seed",
    "--device": "device",
    "--tensorboard": "tensorboard",
}
# top-level keys of a study file: a run file holding them was meant for `archlab study run`
STUDY_ONLY_KEYS = ("train", "variants", "seeds", "baseline", "datasets", "smoke", "name", "description")


def train_cmd(
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="flat YAML run file (template: --print-config)"),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="registered model (list: archlab models)"),
    head: Optional[str] = typer.Option(None, "--head", help="classification head (default: the model's own)"),
    dataset: Optional[str] = typer.Option(None, "--dataset", "-d", help="dataset name, e.g. digits, mnist, image_folder"),
    data_root: Optional[str] = typer.Option(
        None, "--data-root", "--root",
        help="data root, as `archlab data download --data-root` (--root: alias; image_folder: the folder of class folders)",
    ),
    image_size: Optional[int] = typer.Option(None, "--image-size", help="dataset option image_size (e.g. 28)"),
    augment: Optional[str] = typer.Option(None, "--augment", help="augmentation preset: none, cifar, spinal_mnist, medical"),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="training epochs (default 10)"),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="training batch size (default 64)"),
    lr: Optional[float] = typer.Option(None, "--lr", help="learning rate (default 0.001)"),
    optimizer: Optional[str] = typer.Option(None, "--optimizer", help="adam, adamw or sgd"),
    scheduler: Optional[str] = typer.Option(
        None, "--scheduler", help="none, cosine_restarts, plateau, step or onecycle (options: --set scheduler.kwargs=...)"
    ),
    loss: Optional[str] = typer.Option(None, "--loss", help="ce, mse or bce_dice"),
    seed: Optional[int] = typer.Option(None, "--seed", help="seed of init, batch order, augmentation, dropout"),
    device: Optional[str] = typer.Option(None, "--device", help="auto, cpu, cuda or cuda:N"),
    tensorboard: bool = typer.Option(
        False, "--tensorboard", help="also write TensorBoard event files to OUT/tensorboard (results unchanged)"
    ),
    overrides: list[str] = typer.Option([], "--set", metavar="KEY=VALUE", help="override any config key: --set optim.weight_decay=1e-4"),
    out: Path = typer.Option(Path("runs/train"), "--out", "-o", help="run folder (checkpoints, result.json)"),
    resume: bool = typer.Option(True, "--resume/--no-resume", help="continue from the run folder's checkpoint"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bar and no per-epoch lines"),
    print_config: bool = typer.Option(
        False, "--print-config", help="print a commented run-file template with every key and its default, then exit"
    ),
) -> None:
    """Train one model (flags or a YAML file), then print its validation and test metrics."""
    from archlab._validation import load_yaml

    if print_config:
        from archlab._cli.schema import run_template

        print(run_template(), end="")
        return
    data: dict[str, Any] = load_yaml(config) if config is not None else {}
    file_source = str(config) if config is not None else "flags"
    if config is not None:
        _check_flat(data, config)
    if "imports" in data:  # a run file's own code (archlab.plugins), imported before it is validated
        from archlab.plugins import import_plugins

        data["plugins"] = import_plugins(data.pop("imports") or [], Path(config).parent if config else None,
                                         file_source)
    origins: dict[str, str] = {}
    flags = dict(zip(FLAG_KEYS, (model, head, dataset, data_root, image_size, augment, epochs, batch_size, lr,
                                 optimizer, scheduler, loss, seed, device, tensorboard or None)))
    for flag, value in flags.items():
        if value is not None:
            _set_path(data, FLAG_KEYS[flag], value, flag)
            origins[FLAG_KEYS[flag]] = flag
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set expects KEY=VALUE (e.g. optim.lr=0.01), got {item!r}")
        key, raw = item.split("=", 1)
        key = key.strip()
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            raise ConfigError(f"--set {key}: {raw!r} is not a YAML value ({getattr(exc, 'problem', exc)})") from None
        _set_path(data, key, value, f"--set {key}")
        origins[key] = f"--set {key}"
    _default_data_fits_default_model(data)
    cfg = validate_with_origins(data, file_source, origins)
    if cfg.data.name == "image_folder" and cfg.data.root is None:
        raise ConfigError(
            "image_folder reads the folder you point it at: pass --data-root FOLDER (one sub-folder per class), "
            "or set data.root in the run file"
        )
    from archlab._validation import check_out_dir

    check_out_dir(out)  # a file, /dev/null, /proc/x: one line now, not an OSError later
    from archlab.train.distributed import is_main, launch

    with launch(cfg.device):  # started by torchrun: one DDP run over all its processes
        if is_main():
            _run_training(cfg, out, resume=resume, quiet=quiet)
        else:  # the other ranks train silently; rank 0 prints
            with console.capture():
                _run_training(cfg, out, resume=resume, quiet=True)


def _default_data_fits_default_model(data: dict[str, Any]) -> None:
    """Left to the defaults, the data is the run template's: digits at 28 px.

    The default dataset (the embedded 8x8 digits) is smaller than the default model (``mnist_cnn``,
    28x28) takes; a run that names no dataset and no ``image_size`` gets the template's
    ``data.options`` (``image_size: 28``), as ``--print-config`` shows, so ``archlab train`` with no
    flags runs. A named dataset or an explicit ``image_size`` is left as written.
    """
    from archlab._cli.schema import RUN_TEMPLATE_DATA  # imports pydantic: loaded only when a run starts

    section = data.get("data")
    if section is None:
        section = data["data"] = {}
    if not isinstance(section, dict) or "name" in section:
        return
    options = section.setdefault("options", {})
    if isinstance(options, dict) and "image_size" not in options:
        options.update(RUN_TEMPLATE_DATA["options"])


def validate_with_origins(data: dict[str, Any], file_source: str, origins: dict[str, str]):
    """``TrainConfig.model_validate(data)``; each problem is blamed on the flag or file that set it.

    Raises:
        ConfigError: one line per problem, ``ORIGIN: key 'a.b': what is wrong (got ...)`` where
            ORIGIN is the ``--set key`` / ``--flag`` that set the key (or a parent of it), else
            the run file.
    """
    from pydantic import ValidationError

    from archlab._validation import format_validation_error
    from archlab.train.config import TrainConfig

    try:
        return TrainConfig.model_validate(data)
    except ValidationError as exc:
        marker = "\x00"
        lines = format_validation_error(exc, TrainConfig, marker).split("\n")
        errors = exc.errors()
        if len(lines) != len(errors):  # a message spanning lines: blame the file as a whole
            raise ConfigError(format_validation_error(exc, TrainConfig, file_source)) from None
        out = []
        for line, err in zip(lines, errors):
            loc = ".".join(str(p) for p in err["loc"])
            out.append(line.replace(marker, _origin(loc, origins, file_source), 1))
        raise ConfigError("\n".join(out)) from None


def _origin(loc: str, origins: dict[str, str], default: str) -> str:
    best = ""
    for key in origins:
        if (loc == key or loc.startswith(key + ".")) and len(key) > len(best):
            best = key
    return origins[best] if best else default


def _check_flat(data: dict[str, Any], path: Path) -> None:
    """A run file holding study keys (``train:``, ``variants:`` ...) gets a pointed hint."""
    found = [k for k in STUDY_ONLY_KEYS if k in data]
    if not found:
        return
    if "train" in data and not any(k in data for k in ("variants", "seeds", "baseline")):
        inner = data["train"] if isinstance(data["train"], dict) else {}
        keys = ", ".join(sorted(inner)) or "epochs, optim, ..."
        raise ConfigError(
            f"{path}: unknown key 'train': a run file is flat; put {keys} at the top level, next to data: and "
            "model: (`archlab train --print-config` prints the template). A `train:` block belongs in a study file."
        )
    raise ConfigError(
        f"{path}: unknown key(s) {', '.join(repr(k) for k in found)}: this looks like a study file; run it with "
        f"`archlab study run {path}` (a run file for `archlab train` is flat: `archlab train --print-config`)"
    )


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

        try:
            result = train(cfg, out, resume=resume, on_step=on_step, on_epoch=on_epoch, splits=splits)
        except CheckpointError as exc:
            if not resume:
                raise
            # the library's advice (strict=False) is not the CLI user's: point at the flags instead
            reason = str(exc).split(". It was saved from another architecture")[0]
            raise CheckpointError(
                f"{reason}.\nThe run folder {out} holds a checkpoint of another model: pass --no-resume to train "
                "from scratch there (its checkpoint is replaced), or choose another --out"
            ) from None
    console.print(
        f"best epoch {result.best_epoch}: val accuracy {result.val['accuracy']:.4f}, f1 {result.val['f1_macro']:.4f}"
    )
    console.print(
        f"test accuracy {result.test['accuracy']:.4f}  f1_macro {result.test['f1_macro']:.4f}  "
        + (f"dice {result.test['dice']:.4f}  " if cfg.monitor == "dice" else "")
        + f"loss {result.test['loss']:.4f}  ({result.params:,} params, {result.train_seconds:.1f} s training)"
    )
    if cfg.tensorboard:
        console.print(f"TensorBoard: tensorboard --logdir {out / 'tensorboard'}", highlight=False)


def _set_path(data: dict[str, Any], dotted: str, value: Any, origin: str = "") -> None:
    node = data
    parts = dotted.split(".")
    for p in parts[:-1]:
        nxt = node.setdefault(p, {})
        if not isinstance(nxt, dict):
            raise ConfigError(f"{origin or dotted}: cannot set {dotted!r}: {p!r} is not a mapping")
        node = nxt
    node[parts[-1]] = value
