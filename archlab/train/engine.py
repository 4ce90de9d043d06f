"""The training engine: one run from a :class:`TrainConfig` to stored, reproducible results.

Shape of a run (SPEC §12, "one place builds a run, one short loop with hooks trains it"):

- :func:`archlab.train.run.build_run` assembles the :class:`~archlab.train.run.Run` — model, loaders,
  :class:`~archlab.train.task.Task`, loss, optimizer, scheduler, and two strategies: mixed precision
  (:class:`~archlab.train.precision.MixedPrecision`) and processes (one, or DDP under ``torchrun``:
  :mod:`archlab.train.distributed`).
- :func:`fit` is the loop: train steps, the epoch's validation, model selection, early stopping. It
  advances a :class:`~archlab.train.state.TrainState` and calls :mod:`hooks <archlab.train.hooks>`
  for everything else: the run folder's checkpoints (:class:`RunFolder`), gate recording,
  TensorBoard curves, progress callbacks.
- :func:`train` is the public entry point: resolve the config, build, restore, fit, test once, store.

Guarantees (SPEC §1, §4):

- *Validation selects, test reports.* The best epoch, early stopping and plateau LR reductions read
  the validation split only; the test split is evaluated exactly once, at the end, with the
  weights of the best validation epoch.
- *Determinism.* Model initialisation, batch order, augmentation draws and dropout each come from
  their own stream derived from ``config.seed`` (:mod:`archlab._seed`).
- *Exact resume.* A checkpoint holds weights, optimizer, scheduler, RNG state, the data position
  (epoch, step) and the partial-epoch sums, so a run killed and resumed ends with the same metrics
  as an uninterrupted run on CPU.
- *Several processes, one run.* Launched by ``torchrun`` the same run trains with DDP: each process
  takes its slice of the same global batch.

The run folder's files and the checks that guard them are in :mod:`archlab.train.results`; their
names are importable from here too (the CLI and the study runner use them).
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from pydantic import ValidationError
from safetensors.torch import save_file

from archlab._files import chmod_like_open
from archlab._seed import derive_seed
from archlab._validation import format_validation_error
from archlab.analysis.profile import Profile, profile
from archlab.data import Splits
from archlab.errors import CheckpointError, TrainingFailed
from archlab.train.checkpoint import (
    MODEL_FILE,
    capture_rng_state,
    load_checkpoint,
    load_state_dict_file,
    read_weights,
    recover_checkpoint,
    restore_rng_state,
    save_checkpoint,
)
from archlab.train.config import TrainConfig
from archlab.train.distributed import SingleProcess
from archlab.train.distributed import current as current_distributed
from archlab.train.hooks import BudgetTests, Callbacks, GateRecorder, Hook, TensorBoardCurves
from archlab.train.metrics import metric_spec
from archlab.train.results import (
    BEST_WEIGHTS,
    CKPT_DIR,
    RESULT_FILE,
    RunResult,
    check_same_config,
    config_diff,
    normalize_config,
    provenance,
    read_checkpoint_config,
    read_result,
    write_result,
)
from archlab.train.run import (
    Run,
    build_run,
    build_run_model,
    input_normalize,
    model_input_size,
    prepare_data,
    resolve_device,
)
from archlab.train.speed import needs_resolving, resolve_speed_options, speed_provenance
from archlab.train.state import TrainState
from archlab.train.transfer import transfer_provenance

__all__ = [
    "EpochSums",
    "RunFolder",
    "TrainState",
    "end_epoch",
    "fit",
    "load_run",
    "load_weights",
    "train",
    "train_step",
    # the run folder's names (archlab.train.results) and the run's parts (archlab.train.run)
    "BEST_WEIGHTS",
    "CKPT_DIR",
    "RESULT_FILE",
    "RunResult",
    "build_run_model",
    "check_same_config",
    "config_diff",
    "input_normalize",
    "model_input_size",
    "normalize_config",
    "prepare_data",
    "provenance",
    "read_result",
    "resolve_device",
    "write_result",
]

log = logging.getLogger(__name__)


def train(
    config: TrainConfig,
    out_dir: str | Path | None = None,
    *,
    resume: bool = True,
    on_step: Callable[[int], None] | None = None,
    on_epoch: Callable[[dict[str, float]], None] | None = None,
    splits: Splits | None = None,
    evaluate_test: bool = True,
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
        evaluate_test: ``False`` for a tuning trial (:mod:`archlab.study.tuning`): the test split
            is never read, and the result has no test metrics or predictions.

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
    # launched by torchrun: one DDP process of several (archlab.train.distributed)
    processes = current_distributed(config.device) or SingleProcess(resolve_device(config.device))
    if processes.device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fastest conv algorithms for the fixed shapes (CUDA is not bit-exact anyway)
    splits = splits if splits is not None else prepare_data(config)
    run = build_run(config, splits, processes.device, processes=processes, test=evaluate_test)
    sizes = profile(run.model, (1, splits.train.in_chans, *model_input_size(config, splits)))
    state = TrainState.start(config)
    torch.manual_seed(derive_seed(config.seed, "train"))  # dropout and other in-model randomness
    processes.seed_dropout(config.seed)
    folder = RunFolder(out, resume=resume) if out is not None else None
    if folder is not None:
        folder.restore(run, state)
    # order matters at each epoch's end: gates and curves are recorded before the checkpoint saves them
    hooks = [GateRecorder(), TensorBoardCurves(out), *([BudgetTests()] if config.budgets else []),
             *([folder] if folder else []), Callbacks(on_step, on_epoch)]
    fit(run, state, hooks)
    if state.best_weights is not None:
        run.model.load_state_dict(state.best_weights)
    if run.test_loader is not None:
        test = run.task.evaluate(
            run.model, run.test_loader, run.loss_fn, amp=run.precision.enabled, dist=processes.context
        )
    else:  # a tuning trial: selection only, nothing from the test split
        test = ({}, torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long))
    result = _result(run, state, sizes, *test)
    if folder is not None and processes.is_main:
        write_result(out / RESULT_FILE, result)
    processes.barrier()
    return result


def fit(run: Run, state: TrainState, hooks: Sequence[Hook] = ()) -> TrainState:
    """Train ``run`` from ``state`` until ``config.epochs`` or early stopping; select on validation.

    The global RNG (dropout) is used as the caller left it: :func:`train` seeds it, or a resume
    restores it. ``state`` is advanced in place; at its end ``state.best_weights`` holds the weights
    of the best validation epoch.

    Args:
        run: the assembled run (:func:`archlab.train.run.build_run`, with optimizer and scheduler).
        state: where to start (:meth:`TrainState.start`, or a restored checkpoint's).
        hooks: called in order at the points :mod:`archlab.train.hooks` lists.

    Returns:
        ``state``.

    Raises:
        TrainingFailed: the training loss became NaN/Inf.
    """
    config = run.config
    for hook in hooks:
        hook.on_start(run, state)
    step_fn = run.processes.wrap(run.model, compile=config.compile)  # DDP and/or torch.compile
    snapshot_every = config.checkpoint_every_steps
    steps_per_epoch = len(run.train_loader)
    run.model.train()
    while state.epoch < config.epochs and not state.stopped_early:
        sums = EpochSums(run, state)
        for x, y in run.train_loader.epoch(state.epoch, state.step):
            loss, out, y = train_step(run, step_fn, x, y)
            sums.add(loss, run.task.correct(out, y), y.shape[0])
            state.step += 1
            state.global_step += 1
            if snapshot_every and state.global_step % snapshot_every == 0 and state.step < steps_per_epoch:
                sums.write_to(state)
                for hook in hooks:
                    hook.on_snapshot(run, state)
            for hook in hooks:
                hook.on_step(run, state)
        row = end_epoch(run, state, sums)
        for hook in hooks:
            hook.on_epoch(run, state, row)
    for hook in hooks:
        hook.on_end(run, state)
    return state


def train_step(
    run: Run, step_fn: nn.Module, x: torch.Tensor, y: torch.Tensor
) -> tuple[torch.Tensor, Any, torch.Tensor]:
    """One optimizer step on a (global) batch: forward, loss, backward, clip, step, schedule.

    Returns:
        ``(loss, model output, targets)`` of this process's part of the batch.

    Shape:
        - x: :math:`(B, C, H, W)`; y: :math:`(B,)` labels or :math:`(B, 1, H, W)` masks
        - loss: :math:`()`
    """
    config, optimizer = run.config, run.optimizer
    x, y, weight = run.processes.shard_batch(x, y)
    if config.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with run.precision.autocast():
        out = step_fn(x)
        loss = run.loss_fn(run.task.loss_input(out), y)
    grad_loss = loss if weight is None else loss * weight  # DDP's mean = global-batch mean
    optimizer.zero_grad(set_to_none=True)
    run.precision.backward(grad_loss, optimizer)
    if config.grad_clip is not None:
        torch.nn.utils.clip_grad_norm_(run.model.parameters(), config.grad_clip)
    run.precision.step(optimizer)
    run.scheduler.step_batch()
    return loss, out, y


class EpochSums:
    """The training loss, correct count and samples of the epoch in progress, and its time.

    The sums stay on the device (no host sync per step); a resumed epoch continues the sums its
    checkpoint recorded (rank 0 carries them in a DDP run, the other ranks start at zero).
    """

    def __init__(self, run: Run, state: TrainState):
        self.processes = run.processes
        self.t0 = time.perf_counter()
        self.loss_sum = torch.tensor(state.loss_sum, dtype=torch.float64, device=run.device)
        self.correct = torch.tensor(state.correct, dtype=torch.int64, device=run.device)
        self.seen = state.seen
        if not self.processes.is_main:  # rank 0 carries the resumed partial sums
            self.loss_sum.zero_(), self.correct.zero_()
            self.seen = 0

    def add(self, loss: torch.Tensor, correct: torch.Tensor, n: int) -> None:
        """Count one batch of ``n`` samples with mean ``loss``. Shape: loss, correct ``()``."""
        self.loss_sum += loss.detach().double() * n
        self.correct += correct
        self.seen += n

    def totals(self, state: TrainState) -> tuple[float, int, int]:
        """``(loss_sum, correct, seen)`` over all processes, checked finite at ``state``'s position."""
        loss_sum, correct, seen = self.processes.global_sums(self.loss_sum, self.correct, self.seen)
        value = float(loss_sum)
        if not math.isfinite(value):
            raise TrainingFailed(
                f"training loss became {value} by epoch {state.epoch + 1} step {state.step}; lower the learning "
                "rate, enable grad_clip, or check the inputs for NaN/Inf"
            )
        return value, int(correct), int(seen)

    def lap(self) -> float:
        """Seconds since the epoch started or the last lap."""
        now = time.perf_counter()
        seconds, self.t0 = now - self.t0, now
        return seconds

    def write_to(self, state: TrainState) -> None:
        """Make ``state`` a resume point inside the epoch: partial sums and time so far."""
        state.loss_sum, state.correct, state.seen = self.totals(state)
        state.train_seconds += self.lap()


def end_epoch(run: Run, state: TrainState, sums: EpochSums) -> dict[str, float]:
    """Validate, select, schedule and stop early after an epoch; move ``state`` to the next epoch.

    Returns:
        The epoch's history row (also appended to ``state.history``).
    """
    config = run.config
    loss_sum, correct, seen = sums.totals(state)
    val, _, _ = run.task.evaluate(
        run.model, run.val_loader, run.loss_fn, amp=run.precision.enabled, dist=run.processes.context
    )
    row = {
        "epoch": state.epoch + 1,
        "train_loss": loss_sum / max(seen, 1),
        "train_accuracy": correct / max(seen, 1),
        **{f"val_{k}": v for k, v in val.items()},
        "lr": run.scheduler.lr,
    }
    run.scheduler.step_epoch(val[config.monitor])
    if metric_spec(config.monitor).is_better(val[config.monitor], state.best_value, config.min_delta):
        state.best_value, state.best_epoch, state.bad_epochs = val[config.monitor], state.epoch + 1, 0
        state.best_weights = {k: v.detach().clone() for k, v in run.model.state_dict().items()}
    else:
        state.bad_epochs += 1
    state.train_seconds += sums.lap()
    row["seconds"] = state.train_seconds
    state.history.append(row)
    patience = config.early_stopping_patience
    state.stopped_early = bool(patience and state.bad_epochs >= patience)
    state.epoch, state.step, state.loss_sum, state.correct, state.seen = state.epoch + 1, 0, 0.0, 0, 0
    return row


class RunFolder(Hook):
    """The run folder as a hook: resume from its checkpoint, save one at every resume point, keep the best weights.

    Files (:mod:`archlab.train.results`): ``checkpoint/`` after every epoch and every
    ``checkpoint_every_steps`` steps, ``best.safetensors`` when the validation metric improves,
    ``config.json`` at the start. In a DDP run only rank 0 writes, and every rank waits for it.

    Args:
        out: the run folder (created when missing).
        resume: continue from its checkpoint when there is one; ``False`` starts afresh (and
            removes a stale ``result.json``).
    """

    def __init__(self, out: Path, *, resume: bool = True):
        self.out, self.resume = out, resume

    def restore(self, run: Run, state: TrainState) -> None:
        """Continue ``run`` and ``state`` from the folder's checkpoint (when resuming), after a kill too.

        Raises:
            ConfigMismatch: the checkpoint was computed under another config.
            CheckpointError: a damaged checkpoint or best-weights file.
        """
        out, config, processes = self.out, run.config, run.processes
        out.mkdir(parents=True, exist_ok=True)
        processes.main_first(recover_checkpoint, out / CKPT_DIR)  # rank 0 finishes an interrupted swap first
        if self.resume and recover_checkpoint(out / CKPT_DIR):
            check_same_config(read_checkpoint_config(out / CKPT_DIR), config, out / CKPT_DIR)
            _, saved = load_checkpoint(out / CKPT_DIR, model=run.model)
            run.optimizer.load_state_dict(saved["optimizer"])
            run.scheduler.load_state_dict(saved["scheduler"])
            run.precision.load_state_dict(saved.get("scaler"))
            restore_rng_state(saved["rng"])
            processes.restore_rank_rng(saved, config.seed, saved["progress"]["global_step"])
            state.restore(saved["progress"])
            log.info("resumed %s at epoch %d step %d", out, state.epoch + 1, state.step)
        if processes.is_main:
            (out / "config.json").write_text(json.dumps(config.model_dump(mode="json"), indent=2, sort_keys=True))
        if not self.resume and (out / RESULT_FILE).is_file():
            (out / RESULT_FILE).unlink()  # a fresh start: the old result no longer describes this folder
        if self.resume and state.global_step > 0 and (out / BEST_WEIGHTS).is_file():
            fix = "train with --no-resume (or into a fresh --out) to start over"
            weights = read_weights(out / BEST_WEIGHTS, fix=fix)  # a damaged file is one CheckpointError
            state.best_weights = {k: v.to(run.device) for k, v in weights.items()}

    def on_snapshot(self, run: Run, state: TrainState) -> None:
        self.save(run, state)

    def on_epoch(self, run: Run, state: TrainState, row: dict[str, float]) -> None:
        if state.best_epoch == row["epoch"] and run.processes.is_main:  # this epoch is the new best
            _atomic_save_safetensors(state.best_weights, self.out / BEST_WEIGHTS)
        self.save(run, state)

    def save(self, run: Run, state: TrainState) -> None:
        """Write the checkpoint of ``run`` at ``state`` (rank 0; all ranks' RNG states)."""
        processes = run.processes
        rng_ranks = processes.gather_rng()
        if processes.is_main:
            save_checkpoint(
                self.out / CKPT_DIR,
                model=run.model,
                config=run.config.model_dump(mode="json"),
                state={
                    "optimizer": run.optimizer.state_dict(),
                    "scheduler": run.scheduler.state_dict(),
                    "scaler": run.precision.state_dict(),
                    "rng": capture_rng_state(),
                    "progress": state.progress(),
                    **({"rng_ranks": rng_ranks} if rng_ranks is not None else {}),
                },
            )
        processes.barrier()


def load_run(run_dir: str | Path, *, weights: str = "best") -> tuple[nn.Module, TrainConfig, Splits, nn.Module | None]:
    """Rebuild a trained run from its folder for analysis.

    Args:
        run_dir: a run folder written by :func:`train`.
        weights: ``"best"`` (the tested weights) or ``"last"`` (the last checkpoint).

    Returns:
        ``(model in eval mode, config, splits, normalize)`` where ``normalize`` maps float images
        in [0, 1] to the model's input (None when the run did not normalize).
    """
    run = Path(run_dir)
    cfg_path = run / "config.json"
    if not cfg_path.is_file():
        raise CheckpointError(f"{run}: no config.json; is this a run folder written by `archlab train`?")
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
    path = run / BEST_WEIGHTS if weights == "best" else run / CKPT_DIR / MODEL_FILE
    if not path.is_file():
        raise CheckpointError(f"{path}: missing; the run has not finished an epoch yet")
    splits = prepare_data(config)
    model = load_weights(config, splits, path, owner=cfg_path)
    return model, config, splits, input_normalize(config, splits)


def load_weights(config: TrainConfig, splits: Splits, path: Path, *, owner: Path) -> nn.Module:
    """The model of ``config`` for ``splits`` with the trained weights in ``path``, in eval mode.

    Args:
        path: a safetensors state dict (``best.safetensors`` or a checkpoint's weights).
        owner: the run the weights belong to (named when they do not fit).

    Raises:
        CheckpointError: the file is damaged or its tensors do not fit the model.
    """
    try:
        state = load_state_dict_file(path)  # safetensors: no code runs; a corrupt file is one CheckpointError
    except CheckpointError as exc:
        raise CheckpointError(
            f"{exc}; the run's weights are damaged: restore the file from a backup, or train the run again "
            "into a fresh --out folder"
        ) from None
    model = build_run_model(config, splits, pretrained=False)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{path} does not fit the model of {owner}: {str(exc).splitlines()[0]}") from None
    return model.eval()


def _result(
    run: Run, state: TrainState, sizes: Profile, test: dict[str, float], preds: torch.Tensor, targets: torch.Tensor
) -> RunResult:
    """The :class:`RunResult` of a trained and tested run."""
    config, splits = run.config, run.splits
    best_row = state.history[state.best_epoch - 1] if state.best_epoch else state.history[-1]
    return RunResult(
        config=config.model_dump(mode="json"),
        status="done",
        best_epoch=state.best_epoch or len(state.history),
        val={k[4:]: v for k, v in best_row.items() if k.startswith("val_")},
        test=test,
        history=state.history,
        test_predictions=preds.tolist(),
        test_targets=targets.tolist(),
        params=sizes.params_total,
        flops=sizes.flops,
        train_seconds=state.train_seconds,
        epochs_run=len(state.history),
        provenance={
            **provenance(run.device),
            "speed": speed_provenance(config, run.device),
            **transfer_provenance(config),
            "split_sizes": {"train": len(splits.train), "val": len(splits.val),
                            **({"test": len(splits.test)} if run.test_loader is not None else {})},
        },
        extras={"gates": state.gates} if state.gates else {},
    )


def _atomic_save_safetensors(tensors: dict[str, torch.Tensor], path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp))
    chmod_like_open(tmp)  # safetensors writes 0600; the run folder's other files follow the umask
    os.replace(tmp, path)
