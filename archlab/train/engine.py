"""The training engine: one run from a :class:`TrainConfig` to stored, reproducible results.

Guarantees (SPEC §1, §4):
- *Validation selects, test reports.* The best epoch, early stopping and plateau LR reductions read
  the validation split only; the test split is evaluated exactly once, at the end, with the
  weights of the best validation epoch.
- *Determinism.* Model initialisation, batch order, augmentation draws and dropout each come from
  their own stream derived from ``config.seed`` (:mod:`archlab._seed`). Because the model is built
  backbone first, variants that share a backbone start from identical backbone weights.
- *Exact resume.* A checkpoint holds weights, optimizer, scheduler, RNG state, the data position
  (epoch, step) and the partial-epoch accumulators, so a run killed and resumed ends with the same
  metrics as an uninterrupted run on CPU.
- *Several processes, one run.* Launched by ``torchrun`` the same run trains with DDP: each process
  takes its slice of the same global batch (:mod:`archlab.train.distributed`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from safetensors.torch import save_file

from archlab import __version__
from archlab._files import chmod_like_open
from archlab._registry import create_model
from archlab._seed import derive_seed
from archlab.analysis.profile import profile
from archlab.data import (
    DeviceLoader,
    Splits,
    build_augment,
    build_eval_transform,
    dataset_stats,
    load_dataset,
    make_splits,
)
from archlab.data.splits import apply_clean_split
from archlab.errors import ConfigError, TrainingFailed
from archlab.train.checkpoint import (
    capture_rng_state,
    load_checkpoint,
    read_weights,
    recover_checkpoint,
    restore_rng_state,
    save_checkpoint,
)
from archlab.train.config import TrainConfig
from archlab.train.distributed import DistContext
from archlab.train.distributed import current as current_distributed
from archlab.train.losses import build_loss
from archlab.train.metrics import classification_metrics, metric_spec
from archlab.train.optim import build_optimizer, build_scheduler
from archlab.train.segmentation import (
    build_segmentation_loss,
    check_segmentation_run,
    evaluate_segmentation,
    is_segmentation,
    segmentation_correct,
)
from archlab.train.speed import (
    enable_compile_cache,
    layout_stable_dropout,
    needs_resolving,
    resolve_speed_options,
    speed_provenance,
)
from archlab.train.tensorboard import open_tensorboard
from archlab.train.transfer import param_groups, transfer_provenance

__all__ = [
    "RunResult",
    "train",
    "evaluate",
    "prepare_data",
    "build_run_model",
    "load_run",
    "resolve_device",
    "provenance",
]

log = logging.getLogger(__name__)

CKPT_DIR = "checkpoint"
BEST_WEIGHTS = "best.safetensors"
RESULT_FILE = "result.json"


@dataclass
class RunResult:
    """What one run produced (also written to ``RUN_DIR/result.json``).

    Attributes:
        config: the resolved config (``TrainConfig.model_dump()``).
        status: ``"done"``.
        best_epoch: 1-based epoch whose weights were tested.
        val: validation metrics at the best epoch.
        test: test metrics (``accuracy``, ``f1_macro``, ``dice``, ``loss``).
        history: one dict per epoch (train loss/accuracy, val metrics, lr, seconds).
        test_predictions / test_targets: per-sample predicted and true classes (paired tests).
        params / flops: model size (FLOPs of one sample's forward pass).
        train_seconds: wall time of training (all attempts of a resumed run added).
        epochs_run: epochs trained (< config.epochs after early stopping).
        provenance: package/torch versions, git commit, hardware.
    """

    config: dict[str, Any]
    status: str
    best_epoch: int
    val: dict[str, float]
    test: dict[str, float]
    history: list[dict[str, float]]
    test_predictions: list[int]
    test_targets: list[int]
    params: int
    flops: int
    train_seconds: float
    epochs_run: int
    provenance: dict[str, Any] = field(default_factory=dict)
    extras: dict[str, Any] = field(default_factory=dict)  # e.g. per-epoch gate values ("gates")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunResult:
        return cls(**d)


def resolve_device(name: str) -> torch.device:
    """``"auto"`` -> CUDA when present, else CPU; anything else is checked."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"device {name!r} is not a valid torch device (use auto, cpu, cuda, cuda:1)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} requested but CUDA is not available; use device: auto or cpu")
    return dev


def prepare_data(config: TrainConfig) -> Splits:
    """Load the dataset of ``config`` and split it (the split depends on ``split_seed`` only)."""
    d = config.data
    parts = load_dataset(d.name, root=d.root, **d.options)
    splits = make_splits(
        parts,
        val_fraction=d.val_fraction,
        test_fraction=d.test_fraction,
        seed=d.split_seed,
        balance=d.balance,
        resample_seed=d.resample_seed,
    )
    splits = apply_clean_split(splits, d.clean_split) if d.clean_split else splits
    if d.clean is not None:  # the training split only: val/test stay identical across variants
        from archlab.data.cleaning import clean_train_split

        splits = clean_train_split(splits, d.clean)
    return splits


def build_run_model(config: TrainConfig, splits: Splits, *, pretrained: bool = True) -> nn.Module:
    """Build the model of ``config`` for the data in ``splits`` with the run's init stream.

    With ``model.pretrained`` the backbone is loaded from the file (strict, head new) and with
    ``model.freeze_backbone`` frozen (:mod:`archlab.train.transfer`); ``pretrained=False`` skips
    the file (for a caller that loads trained weights over the model anyway).
    """
    m = config.model
    with _seeded(derive_seed(config.seed, "model-init")):
        model = create_model(
            m.name,
            num_classes=splits.train.num_classes,
            in_chans=splits.train.in_chans,
            head=m.head,
            head_kwargs=m.head_kwargs,
            input_size=model_input_size(config, splits),
            **m.kwargs,
        )
    if m.pretrained or m.freeze_backbone:
        from archlab.train.transfer import apply_transfer

        apply_transfer(model, config, load=pretrained)
    return model


def model_input_size(config: TrainConfig, splits: Splits) -> tuple[int, int]:
    """(H, W) the model sees: the crop size when one is set, else the stored image size."""
    c = config.data.crop_size
    return (c, c) if c is not None else tuple(splits.train.image_size)


def _loaders(
    config: TrainConfig, splits: Splits, device: torch.device, targets: str = "labels"
) -> tuple[DeviceLoader, ...]:
    d = config.data
    if d.normalize == "dataset":
        mean, std = dataset_stats(splits.train)
    elif d.normalize == "none":
        mean, std = None, None
    else:
        mean, std = d.normalize
        if len(mean) != splits.train.in_chans or len(std) != splits.train.in_chans:
            raise ConfigError(
                f"data.normalize has {len(mean)} means / {len(std)} stds but the images have "
                f"{splits.train.in_chans} channels"
            )
    size = model_input_size(config, splits)
    aug = build_augment(d.augment, image_size=size, in_chans=splits.train.in_chans)
    eval_tf = build_eval_transform(d.augment, image_size=size, in_chans=splits.train.in_chans)
    if size != tuple(splits.train.image_size) and d.augment != "medical":
        raise ConfigError(
            f"data.crop_size {d.crop_size} needs augment: medical (the preset that crops); "
            f"the images are {splits.train.image_size}"
        )
    common = dict(device=device, mean=mean, std=std, targets=targets)
    train = DeviceLoader(
        splits.train, config.batch_size, shuffle=True, seed=config.seed, drop_last=config.drop_last, augment=aug, **common
    )
    val = DeviceLoader(splits.val, config.eval_batch_size, shuffle=False, seed=config.seed, augment=eval_tf, **common)
    test = DeviceLoader(splits.test, config.eval_batch_size, shuffle=False, seed=config.seed, augment=eval_tf, **common)
    return train, val, test


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: DeviceLoader,
    loss_fn: nn.Module,
    num_classes: int,
    *,
    amp: bool = False,
    dist: DistContext | None = None,
) -> tuple[dict[str, float], torch.Tensor, torch.Tensor]:
    """Loss and classification metrics of ``model`` over one pass of ``loader``.

    With ``dist`` every rank evaluates its slice of each batch and all ranks return the same
    metrics and the predictions of the whole pass, in order.

    Returns:
        ``(metrics, predictions (N,), targets (N,))`` with predictions and targets on the CPU.
        A segmentation model gets Dice instead (:func:`archlab.train.segmentation.evaluate_segmentation`).
    """
    if is_segmentation(model):
        return evaluate_segmentation(model, loader, loss_fn, amp=amp, dist=dist)
    was_training = model.training
    model.eval()
    preds, targets = [], []
    loss_sum = torch.zeros((), dtype=torch.float64, device=loader.device)
    n = 0
    for x, y in loader.epoch(0):
        if dist is not None:
            x, y, _ = dist.shard_batch(x, y)
            if y.shape[0] == 0:  # a batch smaller than the process count
                preds.append(y)
                targets.append(y)
                continue
        with _autocast(loader.device, amp):
            logits = model(x)
        loss_sum += loss_fn(logits.float(), y).double() * y.shape[0]
        n += y.shape[0]
        preds.append(logits.argmax(1))
        targets.append(y)
    model.train(was_training)
    if dist is not None:
        p, t = dist.gather_batches(preds), dist.gather_batches(targets)
        loss_sum, n_all = dist.sum(loss_sum, n)
        n = int(n_all)
    else:
        p, t = torch.cat(preds).cpu(), torch.cat(targets).cpu()
    metrics = classification_metrics(p, t, num_classes)
    metrics["loss"] = float(loss_sum) / max(n, 1)
    return metrics, p, t


def train(
    config: TrainConfig,
    out_dir: str | Path | None = None,
    *,
    resume: bool = True,
    on_step: Callable[[int], None] | None = None,
    on_epoch: Callable[[dict[str, float]], None] | None = None,
    splits: Splits | None = None,
) -> RunResult:
    """Train one run and test it once.

    Args:
        config: the resolved run config.
        out_dir: run folder for checkpoints and ``result.json``; ``None`` keeps everything in
            memory (no resume).
        resume: continue from ``out_dir``'s checkpoint when there is one; a finished run returns
            its stored result without training.
        on_step: called with the global step after each optimizer step (progress bars; a callback
            that raises stops the run — the last checkpoint stays resumable).
        on_epoch: called with each epoch's history row.
        splits: pre-loaded data (a study loads the data once for all its runs).

    Returns:
        The :class:`RunResult`.

    Raises:
        TrainingFailed: the loss became NaN/Inf.
    """
    if needs_resolving(config):  # "auto" speed options -> the measured rule's choice, recorded in config.json
        splits = splits if splits is not None else prepare_data(config)
        config = resolve_speed_options(config, splits)
    if config.threads is None:  # recorded as what ran: float reductions depend on the thread count
        config = config.model_copy(update={"threads": torch.get_num_threads()})
    out = Path(out_dir) if out_dir is not None else None
    if out is not None and resume and (out / RESULT_FILE).is_file():
        return read_result(out / RESULT_FILE, config)
    torch.set_num_threads(config.threads)
    ddp = current_distributed(config.device)  # launched by torchrun: see archlab.train.distributed
    device = ddp.device if ddp is not None else resolve_device(config.device)
    amp = config.amp and device.type == "cuda"
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fastest conv algorithms for the fixed shapes (CUDA is not bit-exact anyway)
    splits = splits if splits is not None else prepare_data(config)
    num_classes = splits.train.num_classes
    model = build_run_model(config, splits)
    seg = is_segmentation(model)  # masks as targets, mask + has_mask loss, Dice
    if seg:
        check_segmentation_run(config, splits)
    prof = profile(model, (1, splits.train.in_chans, *model_input_size(config, splits)))
    model.to(device)
    if config.channels_last:
        model.to(memory_format=torch.channels_last)
        layout_stable_dropout(model)  # the contiguous run's dropout masks: the format changes rounding only
    train_loader, val_loader, test_loader = _loaders(config, splits, device, targets="masks" if seg else "labels")
    if ddp is not None:
        ddp.check_batches(len(splits.train), config.batch_size, config.drop_last)
        model = ddp.convert_batchnorm(model)  # global-batch statistics, as in one process
    if seg:
        loss_fn = build_segmentation_loss(config.loss, **config.loss_kwargs)
    else:
        loss_fn = build_loss(config.loss, num_classes=num_classes, **config.loss_kwargs)
    o = config.optim
    optimizer = build_optimizer(
        o.name, param_groups(model, config), lr=o.lr, weight_decay=o.weight_decay, momentum=o.momentum, nesterov=o.nesterov,
        fused=config.fused_optimizer is True,
    )
    sched_kwargs = dict(config.scheduler.kwargs)
    if config.scheduler.name == "plateau":
        sched_kwargs.setdefault("monitor", config.monitor)
    scheduler = build_scheduler(
        config.scheduler.name, optimizer, epochs=config.epochs, steps_per_epoch=len(train_loader), **sched_kwargs
    )
    # float16 needs loss scaling; bfloat16 has float32's range, and the scaler's inf check syncs every step
    scaler = torch.amp.GradScaler("cuda") if amp and not torch.cuda.is_bf16_supported() else None
    spec = metric_spec(config.monitor)
    if config.compile:
        enable_compile_cache()  # compiled graphs persist across runs (~/.cache/archlab/inductor)
    step_fn = torch.compile(model) if config.compile else model

    state: dict[str, Any] = {
        "epoch": 0,  # epoch in progress (0-based)
        "step": 0,  # next step inside that epoch
        "global_step": 0,
        "best_value": spec.worst,
        "best_epoch": 0,
        "bad_epochs": 0,
        "history": [],
        "train_seconds": 0.0,
        "loss_sum": 0.0,
        "correct": 0,
        "seen": 0,
        "stopped_early": False,
        "gates": [],  # per-epoch GatedConnection values (connected_net), for the connections analysis
    }
    torch.manual_seed(derive_seed(config.seed, "train"))  # dropout and other in-model randomness
    if ddp is not None:
        ddp.seed_dropout(config.seed)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        if ddp is not None:  # rank 0 finishes an interrupted checkpoint swap before anyone reads
            ddp.main_first(recover_checkpoint, out / CKPT_DIR)
        if resume and recover_checkpoint(out / CKPT_DIR):
            ckpt_config = read_checkpoint_config(out / CKPT_DIR)
            check_same_config(ckpt_config, config, out / CKPT_DIR)
            _, saved = load_checkpoint(out / CKPT_DIR, model=model)
            optimizer.load_state_dict(saved["optimizer"])
            scheduler.load_state_dict(saved["scheduler"])
            if scaler is not None and saved.get("scaler"):
                scaler.load_state_dict(saved["scaler"])
            restore_rng_state(saved["rng"])
            if ddp is not None:
                ddp.restore_rank_rng(saved, config.seed, saved["progress"]["global_step"])
            state.update(saved["progress"])
            log.info("resumed %s at epoch %d step %d", out, state["epoch"] + 1, state["step"])
        if ddp is None or ddp.is_main:
            (out / "config.json").write_text(json.dumps(config.model_dump(mode="json"), indent=2, sort_keys=True))
    if ddp is not None:
        step_fn = ddp.wrap(model, compile=config.compile)

    def checkpoint() -> None:
        if out is None:
            return
        rng_ranks = ddp.gather_rng() if ddp is not None else None
        if ddp is not None and not ddp.is_main:
            ddp.barrier()
            return
        save_checkpoint(
            out / CKPT_DIR,
            model=model,
            config=config.model_dump(mode="json"),
            state={
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict() if scaler is not None else {},
                "rng": capture_rng_state(),
                "progress": dict(state),
                **({"rng_ranks": rng_ranks} if rng_ranks is not None else {}),
            },
        )
        if ddp is not None:
            ddp.barrier()

    best_weights: dict[str, torch.Tensor] | None = None
    if out is not None and not resume and (out / RESULT_FILE).is_file():
        (out / RESULT_FILE).unlink()  # a fresh start: the old result no longer describes this folder
    if out is not None and resume and state["global_step"] > 0 and (out / BEST_WEIGHTS).is_file():
        best_weights = {  # a damaged file is one CheckpointError, not a safetensors traceback
            k: v.to(device)
            for k, v in read_weights(
                out / BEST_WEIGHTS, fix="train with --no-resume (or into a fresh --out) to start over"
            ).items()
        }

    # optional TensorBoard curves (RUN_DIR/tensorboard): a view only, the results are unchanged
    tb = open_tensorboard(config, out, start_epoch=state["epoch"], main=ddp is None or ddp.is_main)
    model.train()
    steps_per_epoch = len(train_loader)
    while state["epoch"] < config.epochs and not state["stopped_early"]:
        epoch = state["epoch"]
        t0 = time.perf_counter()
        loss_sum = torch.tensor(state["loss_sum"], dtype=torch.float64, device=device)
        correct = torch.tensor(state["correct"], dtype=torch.int64, device=device)
        seen = state["seen"]
        if ddp is not None and not ddp.is_main:  # rank 0 carries the resumed partial sums
            loss_sum.zero_(), correct.zero_()
            seen = 0
        for step, (x, y) in enumerate(train_loader.epoch(epoch, state["step"]), start=state["step"]):
            if ddp is not None:
                x, y, weight = ddp.shard_batch(x, y)
            if config.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with _autocast(device, amp):
                logits = step_fn(x)
                loss = loss_fn(logits if seg else logits.float(), y)
            grad_loss = loss if ddp is None else loss * weight  # DDP's mean = global-batch mean
            optimizer.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(grad_loss).backward()
                scaler.unscale_(optimizer)
            else:
                grad_loss.backward()
            if config.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            if scaler is not None:
                scaler.step(optimizer)
                scaler.update()
            else:
                optimizer.step()
            scheduler.step_batch()
            loss_sum += loss.detach().double() * y.shape[0]
            correct += segmentation_correct(logits, y) if seg else (logits.detach().argmax(1) == y).sum()
            seen += y.shape[0]
            state["step"] = step + 1
            state["global_step"] += 1
            every = config.checkpoint_every_steps
            if every and state["global_step"] % every == 0 and step + 1 < steps_per_epoch:
                g_loss, g_correct, g_seen = _global_sums(ddp, loss_sum, correct, seen)
                _check_finite(g_loss, epoch, step)
                state.update(loss_sum=float(g_loss), correct=int(g_correct), seen=int(g_seen))
                state["train_seconds"] += time.perf_counter() - t0
                t0 = time.perf_counter()
                checkpoint()
            if on_step is not None:
                on_step(state["global_step"])
        loss_sum, correct, seen = _global_sums(ddp, loss_sum, correct, seen)
        _check_finite(loss_sum, epoch, state["step"] - 1)
        val, _, _ = evaluate(model, val_loader, loss_fn, num_classes, amp=amp, dist=ddp)
        row = {
            "epoch": epoch + 1,
            "train_loss": float(loss_sum) / max(seen, 1),
            "train_accuracy": int(correct) / max(seen, 1),
            **{f"val_{k}": v for k, v in val.items()},
            "lr": scheduler.lr,
        }
        scheduler.step_epoch(val[config.monitor])
        if spec.is_better(val[config.monitor], state["best_value"], config.min_delta):
            state.update(best_value=val[config.monitor], best_epoch=epoch + 1, bad_epochs=0)
            best_weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
            if out is not None and (ddp is None or ddp.is_main):
                _atomic_save_safetensors(best_weights, out / BEST_WEIGHTS)
        else:
            state["bad_epochs"] += 1
        state["train_seconds"] += time.perf_counter() - t0
        row["seconds"] = state["train_seconds"]
        state["history"].append(row)
        if tb is not None:
            tb.log_epoch(row)
        if _has_gates(model):
            from archlab.analysis.connections import read_gates

            state["gates"].append(read_gates(model))
        patience = config.early_stopping_patience
        state["stopped_early"] = bool(patience and state["bad_epochs"] >= patience)
        state.update(epoch=epoch + 1, step=0, loss_sum=0.0, correct=0, seen=0)
        checkpoint()
        if on_epoch is not None:
            on_epoch(row)

    if tb is not None:
        tb.close()
    if best_weights is not None:
        model.load_state_dict(best_weights)
    best_row = state["history"][state["best_epoch"] - 1] if state["best_epoch"] else state["history"][-1]
    test, preds, targets = evaluate(model, test_loader, loss_fn, num_classes, amp=amp, dist=ddp)
    result = RunResult(
        config=config.model_dump(mode="json"),
        status="done",
        best_epoch=state["best_epoch"] or len(state["history"]),
        val={k[4:]: v for k, v in best_row.items() if k.startswith("val_")},
        test=test,
        history=state["history"],
        test_predictions=preds.tolist(),
        test_targets=targets.tolist(),
        params=prof.params_total,
        flops=prof.flops,
        train_seconds=state["train_seconds"],
        epochs_run=len(state["history"]),
        provenance={
            **provenance(device),
            "speed": speed_provenance(config, device),
            **transfer_provenance(config),
            "split_sizes": {"train": len(splits.train), "val": len(splits.val), "test": len(splits.test)},
        },
        extras={"gates": state["gates"]} if state["gates"] else {},
    )
    if out is not None and (ddp is None or ddp.is_main):
        write_result(out / RESULT_FILE, result)
    if ddp is not None:
        ddp.barrier()
    return result


def _digest(payload: dict[str, Any]) -> str:
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":"), allow_nan=True).encode()
    return hashlib.sha256(blob).hexdigest()


def write_result(path: Path, result: RunResult) -> None:
    """Write ``result.json`` atomically, sealed with the SHA-256 of its content.

    The seal makes an edited file detectable; the config inside makes a file copied from another
    run detectable (:func:`read_result`).
    """
    payload = result.to_dict()
    payload = {**payload, "sha256": _digest(payload)}
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=1))
    os.replace(tmp, path)


def read_result(path: Path, config: TrainConfig) -> RunResult:
    """Read a finished run's ``result.json``; refuse one that is edited, unsealed or of another config.

    Raises:
        CheckpointError: the file is unreadable, its seal does not match its content (edited or
            truncated), or it was computed under another config (copied from another run).
    """
    from archlab.errors import CheckpointError

    try:
        payload = json.loads(path.read_text())
        if not isinstance(payload, dict):
            raise ValueError(f"holds a {type(payload).__name__}, expected an object")
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise CheckpointError(f"{path} is unreadable ({exc}); delete it to train the run again") from None
    seal = payload.pop("sha256", None)
    if seal is None or seal != _digest(payload):
        raise CheckpointError(
            f"{path} does not match its seal ({'missing' if seal is None else 'content changed'}): it was edited or "
            "truncated, so its metrics cannot be trusted; delete it (the run's checkpoint, if any, resumes)"
        )
    check_same_config(payload.get("config") or {}, config, path)
    try:
        return RunResult.from_dict(payload)
    except TypeError as exc:
        raise CheckpointError(f"{path} is not a result of this archlab version ({exc}); delete it") from None


def read_checkpoint_config(dir: Path) -> dict[str, Any]:
    """The config a checkpoint was saved with (its ``config.json``)."""
    from archlab.errors import CheckpointError

    path = dir / "config.json"
    try:
        cfg = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise CheckpointError(f"checkpoint file {path} is missing or corrupt ({exc}); delete {dir} to start afresh") from None
    if not isinstance(cfg, dict):
        raise CheckpointError(f"checkpoint file {path} holds a {type(cfg).__name__}, expected a JSON object")
    return cfg


def check_same_config(found: dict[str, Any], config: TrainConfig, where: Path) -> None:
    """Refuse to resume (or reuse) state computed under another config than ``config``.

    Raises:
        ConfigMismatch: (exit 2) naming the differing keys and the ways out.
    """
    from archlab.errors import ConfigMismatch

    want = json.loads(json.dumps(config.model_dump(mode="json"), sort_keys=True))
    found = normalize_config(found)
    if found == want:
        return
    diff = config_diff(found, want)
    shown = "; ".join(diff[:6]) + (f" (+{len(diff) - 6} more)" if len(diff) > 6 else "")
    raise ConfigMismatch(
        f"{where} was computed with another config ({shown}, recorded -> requested); it is never resumed or "
        "reused under a different config. Use the recorded config to continue it, another --out for the new "
        "config, or --no-resume to start this folder afresh"
    )


#: Options whose default is ``"auto"`` but which a config recorded before they existed ran without.
LEGACY_DEFAULTS: dict[str, Any] = {"fused_optimizer": False}


def normalize_config(config: dict[str, Any]) -> dict[str, Any]:
    """A recorded config in today's schema: options added since it was recorded take their defaults.

    New options always default to the old behaviour, so a config recorded before they existed
    means the same computation; one that no longer validates is returned unchanged (and then
    differs from any valid config).
    """
    config = {**LEGACY_DEFAULTS, **config} if isinstance(config, dict) else config
    try:
        canon = TrainConfig.model_validate(config).model_dump(mode="json")
    except ValueError:
        return config
    return json.loads(json.dumps(canon, sort_keys=True))


def config_diff(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two config dicts, as ``key: old -> new``."""
    out: list[str] = []
    for k in sorted(set(old) | set(new), key=str):
        a, b = old.get(k, "<unset>"), new.get(k, "<unset>")
        if isinstance(a, dict) and isinstance(b, dict):
            out += config_diff(a, b, f"{prefix}{k}.")
        elif a != b:
            out.append(f"{prefix}{k}: {a!r} -> {b!r}")
    return out


def _global_sums(
    ddp: DistContext | None, loss_sum: torch.Tensor, correct: torch.Tensor, seen: int
) -> tuple[torch.Tensor, torch.Tensor, int | torch.Tensor]:
    """The training accumulators summed over all ranks (unchanged in a single process)."""
    if ddp is None:
        return loss_sum, correct, seen
    g_loss, g_correct, g_seen = ddp.sum(loss_sum, correct, seen)
    return g_loss, g_correct.long(), int(g_seen)


def _has_gates(model: nn.Module) -> bool:
    from archlab.layers.gated_connection import GatedConnection

    return any(isinstance(m, GatedConnection) for m in model.modules())


def load_run(run_dir: str | Path, *, weights: str = "best") -> tuple[nn.Module, TrainConfig, Splits, nn.Module | None]:
    """Rebuild a trained run from its folder for analysis.

    Args:
        run_dir: a run folder written by :func:`train`.
        weights: ``"best"`` (the tested weights) or ``"last"`` (the last checkpoint).

    Returns:
        ``(model in eval mode, config, splits, normalize)`` where ``normalize`` maps float images
        in [0, 1] to the model's input (None when the run did not normalize).
    """
    from archlab.errors import CheckpointError

    run = Path(run_dir)
    cfg_path = run / "config.json"
    if not cfg_path.is_file():
        raise CheckpointError(f"{run}: no config.json; is this a run folder written by `archlab train`?")
    from pydantic import ValidationError

    from archlab._validation import format_validation_error
    from archlab.train.checkpoint import load_state_dict_file

    try:
        config = TrainConfig.model_validate_json(cfg_path.read_bytes())
    except ValidationError as exc:
        first = format_validation_error(exc, TrainConfig, str(cfg_path)).splitlines()[0]
        raise CheckpointError(
            f"{first} — the run's config.json is damaged or from another archlab version; restore it from "
            "the run's checkpoint/config.json"
        ) from None
    except OSError as exc:
        raise CheckpointError(f"{cfg_path}: cannot be read ({exc.strerror or exc})") from None
    path = run / BEST_WEIGHTS if weights == "best" else run / CKPT_DIR / "model.safetensors"
    if not path.is_file():
        raise CheckpointError(f"{path}: missing; the run has not finished an epoch yet")
    try:
        state = load_state_dict_file(path)  # safetensors: no code runs; a corrupt file is one CheckpointError
    except CheckpointError as exc:
        raise CheckpointError(
            f"{exc}; the run's weights are damaged: restore the file from a backup, or train the run again "
            "into a fresh --out folder"
        ) from None
    splits = prepare_data(config)
    model = build_run_model(config, splits, pretrained=False)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{path} does not fit the model of {cfg_path}: {str(exc).splitlines()[0]}") from None
    model.eval()
    return model, config, splits, input_normalize(config, splits)


def input_normalize(config: TrainConfig, splits: Splits) -> nn.Module | None:
    """The run's input normalisation as a module (float images in [0, 1] -> model input), or None."""
    from archlab.data import Normalize

    d = config.data
    if d.normalize == "dataset":
        return Normalize(*dataset_stats(splits.train))
    if d.normalize != "none":
        return Normalize(*d.normalize)
    return None


def provenance(device: torch.device | None = None) -> dict[str, Any]:
    """Versions, git commit and hardware a result was produced with."""
    import platform

    info: dict[str, Any] = {
        "archlab": __version__,
        "git_commit": _git_commit(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "device": str(device) if device is not None else "cpu",
    }
    if device is not None and device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def _git_commit() -> str | None:
    import subprocess

    root = Path(__file__).resolve().parents[2]
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def _check_finite(loss_sum: torch.Tensor, epoch: int, step: int) -> None:
    value = float(loss_sum)
    if not math.isfinite(value):
        raise TrainingFailed(
            f"training loss became {value} by epoch {epoch + 1} step {step + 1}; lower the learning rate, "
            "enable grad_clip, or check the inputs for NaN/Inf"
        )


def _atomic_save_safetensors(tensors: dict[str, torch.Tensor], path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp))
    chmod_like_open(tmp)  # safetensors writes 0600; the run folder's other files follow the umask
    os.replace(tmp, path)


@contextlib.contextmanager
def _seeded(seed: int):
    """Run a block under the global RNG seeded with ``seed``, restoring the RNG afterwards."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def _autocast(device: torch.device, enabled: bool):
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16)
