"""Several seeds of one small model trained together: ``torch.func`` over stacked parameters.

SPEC §9 (GPU path). A study trains the same small model under K seeds; on a GPU one such model
leaves the device mostly idle, so the K copies are trained as one: their parameters are stacked
along a new leading dimension, one forward/backward is ``vmap(grad(functional_call))`` over
(parameters, batch) pairs, and the optimizer steps the stacked tensors (Adam, AdamW and SGD are
element-wise, so one optimizer over stacked parameters is K independent optimizers).

Each seed keeps its own streams, exactly as :func:`archlab.train.engine.train` builds them: the
initial weights (``build_run_model`` under the seed's init stream), the batch order and the
augmentation draws (one :class:`archlab.data.DeviceLoader` per seed). Without dropout the K runs
therefore equal K sequential engine runs up to float rounding (batched convolutions sum in another
order) — ``tests/train/test_vmap_seeds.py`` checks it on the CPU. With dropout every seed draws its
own masks (``randomness="different"``) from a stream that is not the engine's, so such runs are
statistically, not numerically, equal to sequential ones.

Limits (a :class:`ConfigError` says so): no batch norm (running statistics are in-place buffer
updates), no ``plateau`` schedule, early stopping or gradient clipping (each would make one seed's
schedule depend on its own metrics or norms), no resume.

Speed: on a CPU it is no faster than running the seeds one after another (the cores are already
busy with one model; 4 seeds of ``mnist_cnn`` on the digits, 2 epochs, 1 thread, 3 interleaved
rounds on a shared machine: 11.4 s together vs 10.5 s one after another, medians), so the study
runner does not use it. The speed-up on a GPU, where one small model leaves the device idle, is
**not measured** in this repository (no GPU was available when it was written); only correctness
is tested.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import torch
import torch.nn as nn
from torch.func import functional_call, grad, vmap

from archlab._seed import derive_seed
from archlab.analysis.profile import profile
from archlab.data import Splits
from archlab.errors import ConfigError, TrainingFailed
from archlab.train.config import TrainConfig
from archlab.train.metrics import classification_metrics, metric_spec
from archlab.train.precision import autocast
from archlab.train.results import RunResult, provenance
from archlab.train.run import (
    build_loaders,
    build_optimization,
    build_run_model,
    model_input_size,
    prepare_data,
    resolve_device,
)
from archlab.train.speed import resolve_speed_options
from archlab.train.task import ClassificationTask

__all__ = ["SeedStack", "train_seeds"]


def _check_supported(config: TrainConfig, model: nn.Module) -> None:
    if any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        raise ConfigError(
            f"{config.model.name}: vmap seed training needs a model without batch norm (its running "
            "statistics are in-place updates); train the seeds one after another instead"
        )
    if config.scheduler.name == "plateau":
        raise ConfigError("vmap seed training cannot use scheduler 'plateau' (each seed would need its own LR)")
    if config.early_stopping_patience is not None:
        raise ConfigError("vmap seed training cannot stop seeds early; set early_stopping_patience: null")
    if config.grad_clip is not None:
        raise ConfigError("vmap seed training does not clip gradients (the norm is per seed); set grad_clip: null")


def train_seeds(
    config: TrainConfig, seeds: Sequence[int], *, splits: Splits | None = None
) -> tuple[list[RunResult], dict[str, torch.Tensor]]:
    """Train ``config`` once per seed in ``seeds``, all seeds in one vectorised model.

    Args:
        config: the run config (its ``seed`` is replaced by each of ``seeds``).
        seeds: the K seeds.
        splits: pre-loaded data (default: loaded from ``config``).

    Returns:
        ``(results, best_weights)``: one :class:`RunResult` per seed (``train_seconds`` is the
        joint wall time divided by K; ``extras["vmap_seeds"]`` = K) and the tested weights of
        every seed, stacked: ``best_weights[name][k]`` belongs to ``seeds[k]``.

    Shape:
        - best_weights[name]: :math:`(K, *param.shape)`

    Raises:
        ConfigError: an unsupported option (see the module docstring) or no seeds.
        TrainingFailed: a seed's training loss became NaN/Inf.
    """
    seeds = list(seeds)
    if not seeds:
        raise ConfigError("train_seeds needs at least one seed")
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"seeds must be distinct, got {seeds}")
    if config.threads:
        torch.set_num_threads(config.threads)
    device = resolve_device(config.device)
    splits = splits if splits is not None else prepare_data(config)
    # Stacked parameters are trained in the contiguous format; amp/compile resolve as in the engine.
    config = resolve_speed_options(config.model_copy(update={"channels_last": False}), splits)
    configs = [config.model_copy(update={"seed": s}) for s in seeds]
    stack = SeedStack(configs, splits, device)
    t0 = time.perf_counter()
    history, best_epoch, best = _fit(stack, config, seeds, t0)
    seconds = time.perf_counter() - t0
    with torch.no_grad():
        for n, p in stack.params.items():
            p.copy_(best[n])
    tests = stack.evaluate(2)
    prov = provenance(device)
    results = []
    for k, c in enumerate(configs):
        row = history[k][best_epoch[k] - 1]
        test, preds, targets = tests[k]
        results.append(RunResult(
            config=c.model_dump(mode="json"),
            status="done",
            best_epoch=best_epoch[k],
            val={m[4:]: v for m, v in row.items() if m.startswith("val_")},
            test=test,
            history=history[k],
            test_predictions=preds.tolist(),
            test_targets=targets.tolist(),
            params=stack.profile.params_total,
            flops=stack.profile.flops,
            train_seconds=seconds / len(seeds),
            epochs_run=config.epochs,
            provenance=prov,
            extras={"vmap_seeds": len(seeds), "joint_train_seconds": seconds},
        ))  # fmt: skip
    return results, {n: t.detach() for n, t in best.items()}


class SeedStack:
    """K copies of one model as stacked parameters, with each seed's own initial weights and data streams.

    Args:
        configs: one config per seed (equal but for ``seed``).
        splits: the data.
        device: where the stack trains.

    Attributes:
        params: name -> stacked parameter :math:`(K, *shape)`, trained in place.
        loaders: per seed ``(train, val, test)``.
        optimizer / scheduler: one over all stacked parameters (element-wise updates: K optimizers).
    """

    def __init__(self, configs: Sequence[TrainConfig], splits: Splits, device: torch.device):
        config = configs[0]
        models = [build_run_model(c, splits) for c in configs]
        self.base = base = models[0]
        _check_supported(config, base)
        self.profile = profile(base, (1, splits.train.in_chans, *model_input_size(config, splits)))
        base.to(device).train()
        self.params = {
            n: torch.stack([dict(m.named_parameters())[n].detach() for m in models]).to(device).requires_grad_()
            for n, _ in base.named_parameters()
        }  # name -> (K, *shape)
        self.buffers = {n: b.to(device) for n, b in base.named_buffers()}
        self.loaders = [build_loaders(c, splits, device) for c in configs]  # per seed: (train, val, test)
        self.num_classes = splits.train.num_classes
        self.loss_fn = ClassificationTask(self.num_classes).build_loss(config)
        self.optimizer, self.scheduler = build_optimization(config, list(self.params.values()), len(self.loaders[0][0]))
        self.device, self.amp = device, config.amp and device.type == "cuda"
        self.grad_step = vmap(grad(self._loss_and_logits, has_aux=True), randomness="different")
        self.forward = vmap(lambda p, x: functional_call(base, (p, self.buffers), (x,)), in_dims=(0, None))

    def _loss_and_logits(self, p: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor):
        with autocast(self.device, self.amp):
            logits = functional_call(self.base, (p, self.buffers), (x,))
        loss = self.loss_fn(logits.float(), y)
        return loss, (loss.detach(), logits.detach())  # grad's aux: what the history needs

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimizer step of every seed on its own batch.

        Shape:
            - x: :math:`(K, B, C, H, W)`; y: :math:`(K, B)`
            - output: losses :math:`(K,)`, logits :math:`(K, B, classes)`
        """
        grads, (loss, logits) = self.grad_step(self.params, x, y)
        for n, p in self.params.items():
            p.grad = grads[n]
        self.optimizer.step()
        self.scheduler.step_batch()
        return loss, logits

    @torch.no_grad()
    def evaluate(self, split: int) -> list[tuple[dict[str, float], torch.Tensor, torch.Tensor]]:
        """Per seed ``(metrics, predictions (N,), targets (N,))`` on split 1 (val) or 2 (test)."""
        self.base.eval()
        logits, ys = [], []
        for x, y in self.loaders[0][split].epoch(0):  # unshuffled, no random transform: the same for every seed
            with autocast(self.device, self.amp):
                logits.append(self.forward(self.params, x).float())  # (K, B, classes)
            ys.append(y)
        self.base.train()
        out = []
        all_logits, targets = torch.cat(logits, 1), torch.cat(ys)  # (K, N, classes), (N,)
        for k in range(all_logits.shape[0]):
            metrics = classification_metrics(all_logits[k].argmax(1).cpu(), targets.cpu(), self.num_classes)
            metrics.pop("dice", None)  # = f1_macro on classes; not stored (as ClassificationTask.evaluate)
            metrics["loss"] = float(self.loss_fn(all_logits[k], targets))
            out.append((metrics, all_logits[k].argmax(1).cpu(), targets.cpu()))
        return out


def _fit(
    stack: SeedStack, config: TrainConfig, seeds: list[int], t0: float
) -> tuple[list[list[dict[str, float]]], list[int], dict[str, torch.Tensor]]:
    """Train every seed for ``config.epochs``; per seed the history, best epoch and (stacked) best weights."""
    K, device, spec = len(seeds), stack.device, metric_spec(config.monitor)
    history: list[list[dict[str, float]]] = [[] for _ in seeds]
    best_value = [spec.worst] * K
    best_epoch = [0] * K
    best = {n: p.detach().clone() for n, p in stack.params.items()}
    torch.manual_seed(derive_seed("vmap-seeds", *seeds))  # the dropout masks of all seeds (not the engine's streams)
    for epoch in range(config.epochs):
        loss_sum = torch.zeros(K, dtype=torch.float64, device=device)
        correct = torch.zeros(K, dtype=torch.int64, device=device)
        seen = 0
        for batches in zip(*(ld[0].epoch(epoch) for ld in stack.loaders)):
            x = torch.stack([b[0] for b in batches])  # (K, B, C, H, W)
            y = torch.stack([b[1] for b in batches])  # (K, B)
            loss, logits = stack.train_step(x, y)
            loss_sum += loss.detach().double() * y.shape[1]
            correct += (logits.detach().argmax(-1) == y).sum(1)
            seen += y.shape[1]
        if not bool(torch.isfinite(loss_sum).all()):
            bad = [seeds[k] for k in range(K) if not torch.isfinite(loss_sum[k])]
            raise TrainingFailed(f"training loss became NaN/Inf in epoch {epoch + 1} for seed(s) {bad}; lower the lr")
        val = stack.evaluate(1)
        lr = stack.scheduler.lr
        stack.scheduler.step_epoch(None)
        for k in range(K):
            metrics = val[k][0]
            history[k].append({
                "epoch": epoch + 1,
                "train_loss": float(loss_sum[k]) / max(seen, 1),
                "train_accuracy": int(correct[k]) / max(seen, 1),
                **{f"val_{m}": v for m, v in metrics.items()},
                "lr": lr,
                "seconds": time.perf_counter() - t0,
            })  # fmt: skip
            if spec.is_better(metrics[config.monitor], best_value[k], config.min_delta):
                best_value[k], best_epoch[k] = metrics[config.monitor], epoch + 1
                for n, p in stack.params.items():
                    best[n][k] = p.detach()[k]
    return history, best_epoch, best
