"""One run on several processes: PyTorch DDP launched by ``torchrun`` (SPEC §10).

``archlab train`` started by ``torchrun --nproc_per_node=N -m archlab.cli train ...`` finds the
launcher's ``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` variables, starts the process group (:func:`launch`;
gloo on CPU, NCCL on CUDA) and the engine trains with :class:`~torch.nn.parallel.DistributedDataParallel`.

How a DDP run stays the *same run* as the single-process one (SPEC §1.1):

- *Global batches.* Every rank draws the same global batch from its
  :class:`~archlab.data.DeviceLoader` (same order, same augmentation draws, both counter-based) and
  keeps its contiguous slice (:meth:`DistContext.shard_batch`). The global batch size, the batch
  order and the augmentation therefore equal the single-process run's; each rank augments the whole
  batch and discards the rest (batched and cheap next to the model), which is what keeps the draws
  identical.
- *Gradients.* Each rank's mean loss is weighted by ``n_local * world / n_global`` before backward,
  so DDP's gradient average is the gradient of the global-batch mean, uneven last batches included.
  (Exact for per-sample losses such as ``ce`` and ``mse``; a loss that is not a mean over samples,
  such as Dice, is computed per shard and so approximated.)
- *BatchNorm.* Every BatchNorm layer is converted to a global-batch BatchNorm: statistics over the
  whole global batch, as in the single-process run, and identical running statistics on every rank.
  On CUDA that is :class:`torch.nn.SyncBatchNorm`; on CPU, which SyncBatchNorm refuses,
  :class:`GlobalBatchNorm` (statistics all-reduced through autograd). The conversion keeps parameter
  and buffer names, so checkpoints stay interchangeable with single-process runs. Costs two small
  all-reduces per BatchNorm layer and step; without it each rank would normalise with the statistics
  of its own shard and the run would differ from the single-process one.
- *Dropout.* Rank 0 uses the single-process dropout stream, rank ``r`` its own stream
  ``derive_seed(seed, "train", "rank", r)``; dropout masks therefore differ from the single-process
  run. This is the one deliberate difference: a model without dropout (with or without BatchNorm)
  trains to the single-process metrics up to float summation order.
- *Evaluation.* Validation and test batches are sharded the same way and the per-sample predictions
  gathered in order, so every rank computes identical metrics and takes identical decisions (best
  epoch, plateau LR, early stopping).
- *Files.* Only rank 0 writes checkpoints, ``best.safetensors`` and ``result.json``; a barrier
  follows every write. A checkpoint stores every rank's RNG state, so a resumed DDP run continues
  each rank's dropout stream.

The engine trains with a *process strategy*: :class:`DistContext` in a DDP run, :class:`SingleProcess`
otherwise. Both answer the same calls (shard a batch, sum over ranks, wait, wrap the model), so the
training loop (:func:`archlab.train.engine.fit`) has one code path and no DDP branches.
"""

from __future__ import annotations

import contextlib
import datetime
import inspect
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from archlab._seed import derive_seed
from archlab.errors import ConfigError
from archlab.train.checkpoint import capture_rng_state, restore_rng_state

__all__ = [
    "DistContext",
    "GlobalBatchNorm",
    "Processes",
    "SingleProcess",
    "current",
    "is_main",
    "launch",
    "launched_by_torchrun",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK")
_TIMEOUT = datetime.timedelta(minutes=30)  # a slow rank (first CUDA init, data loading) is not a hang


def launched_by_torchrun() -> bool:
    """True when the launcher's variables say this is one of several processes."""
    return all(k in os.environ for k in _ENV) and int(os.environ["WORLD_SIZE"]) > 1


def is_main() -> bool:
    """True on rank 0 and in a single-process run (the process that prints and writes files)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    return int(os.environ.get("RANK", "0")) == 0


def _local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def _wants_cuda(device: str) -> bool:
    if device == "auto":
        return torch.cuda.is_available()
    try:
        return torch.device(device).type == "cuda"
    except RuntimeError:
        return False  # resolve_device reports the bad name later


@contextlib.contextmanager
def launch(device: str = "auto") -> Iterator[DistContext | None]:
    """Start the process group when ``torchrun`` launched several processes; tear it down after.

    Args:
        device: the run's ``device`` setting: ``auto``/``cuda`` with CUDA present use NCCL and one
            GPU per process (``cuda:LOCAL_RANK``); otherwise gloo on the CPU.

    Yields:
        The :class:`DistContext`, or ``None`` in a single-process run (nothing is started). A group
        that the caller already started is used and left running.
    """
    if not launched_by_torchrun() or (dist.is_available() and dist.is_initialized()):
        yield current(device)
        return
    if not dist.is_available():
        raise ConfigError("this torch build has no torch.distributed; run without torchrun")
    cuda = _wants_cuda(device)
    if cuda:
        if torch.cuda.device_count() <= _local_rank():
            raise ConfigError(
                f"LOCAL_RANK={_local_rank()} but only {torch.cuda.device_count()} CUDA devices; start "
                "torchrun with --nproc_per_node at most the GPU count, or pass --device cpu"
            )
        torch.cuda.set_device(_local_rank())
    backend = "nccl" if cuda else "gloo"
    dist.init_process_group(backend, timeout=_TIMEOUT)
    log.info("process group: %s, rank %d of %d", backend, dist.get_rank(), dist.get_world_size())
    try:
        yield current(device)
    finally:
        dist.destroy_process_group()


def current(device: str = "auto") -> DistContext | None:
    """The running process group as a :class:`DistContext`; ``None`` for a single process.

    Raises:
        ConfigError: torchrun started several processes but nobody started the process group
            (each would train alone and overwrite the others' files).
    """
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        if dist.get_backend() == "nccl":
            dev = torch.device("cuda", torch.cuda.current_device())
            if not _wants_cuda(device):
                raise ConfigError(
                    f"device {device!r} with an NCCL process group; NCCL needs CUDA tensors: use device auto/cuda "
                    "or start the group with gloo"
                )
        else:
            if device not in ("auto", "cpu"):
                raise ConfigError(
                    f"device {device!r} with a {dist.get_backend()} process group; archlab runs gloo on the CPU: "
                    "use --device cpu, or device auto/cuda with NCCL (archlab train picks it when CUDA is present)"
                )
            dev = torch.device("cpu")
        return DistContext(rank=dist.get_rank(), world_size=dist.get_world_size(), device=dev)
    if launched_by_torchrun():
        raise ConfigError(
            f"torchrun started {os.environ['WORLD_SIZE']} processes but no process group is running; start the run "
            "with `archlab train` or call train() inside `with archlab.train.distributed.launch(device):`"
        )
    return None


@dataclass(frozen=True)
class DistContext:
    """This process's place in a DDP run and the collectives the engine needs.

    Attributes:
        rank: this process's rank (0 writes files).
        world_size: number of processes.
        device: the device this rank trains on (``cuda:LOCAL_RANK`` with NCCL, else CPU).
    """

    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    # -- batches ------------------------------------------------------------------------------

    def check_batches(self, num_samples: int, batch_size: int, drop_last: bool) -> None:
        """Raise unless every global training batch gives each rank at least one sample."""
        last = num_samples % batch_size
        smallest = batch_size if drop_last or last == 0 else last
        if smallest < self.world_size:
            fix = (
                f"raise batch_size to at least {self.world_size}"
                if batch_size < self.world_size
                else "set drop_last: true"
            )
            raise ConfigError(
                f"a training batch of {smallest} samples (batch_size {batch_size}, {num_samples} samples) cannot be "
                f"shared by {self.world_size} processes; {fix}, or start fewer processes"
            )

    def shard_batch(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, float]:
        """This rank's contiguous slice of a global batch and its loss weight.

        Returns:
            ``(x_local, y_local, weight)`` with ``weight = n_local * world / n_global``: a mean loss
            times ``weight``, averaged by DDP over ranks, is the global-batch mean.

        Shape:
            - x: :math:`(B, ...)` -> :math:`(B_r, ...)` with :math:`B_r \\in \\{\\lfloor B/W \\rfloor,
              \\lceil B/W \\rceil\\}`
        """
        n = y.shape[0]
        x_r = torch.tensor_split(x, self.world_size)[self.rank]
        y_r = torch.tensor_split(y, self.world_size)[self.rank]
        return x_r, y_r, y_r.shape[0] * self.world_size / max(n, 1)

    # -- collectives --------------------------------------------------------------------------

    def barrier(self) -> None:
        if self.device.type == "cuda":
            dist.barrier(device_ids=[self.device.index])
        else:
            dist.barrier()

    def sum(self, *values: torch.Tensor | float) -> list[torch.Tensor]:
        """All-reduced sums of ``values`` (new float64 tensors; the inputs are left unchanged)."""
        buf = torch.tensor([float(v) for v in values], dtype=torch.float64, device=self.device)
        dist.all_reduce(buf)
        return list(buf.unbind())

    def gather(self, obj: T) -> list[T]:
        """Every rank's ``obj`` (picklable, CPU tensors), in rank order, on every rank."""
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def gather_batches(self, pieces: Sequence[torch.Tensor]) -> torch.Tensor:
        """Reassemble per-batch shards (``pieces[b]`` is this rank's slice of batch ``b``) in order."""
        per_rank = self.gather([p.cpu() for p in pieces])
        return torch.cat([part for b in range(len(pieces)) for part in (r[b] for r in per_rank)])

    def main_first(self, fn: Callable[..., T], *args: Any) -> T | None:
        """Run ``fn`` on rank 0 only (a file operation), then wait for it on every rank."""
        result = fn(*args) if self.is_main else None
        self.barrier()
        return result

    # -- model --------------------------------------------------------------------------------

    def convert_batchnorm(self, model: nn.Module) -> nn.Module:
        """Replace every BatchNorm layer by a global-batch one (see the module docstring)."""
        if self.device.type == "cuda":
            return nn.SyncBatchNorm.convert_sync_batchnorm(model)
        return GlobalBatchNorm.convert(model)

    def wrap(self, model: nn.Module, *, compile: bool = False) -> nn.Module:
        """``DistributedDataParallel(model)`` (then ``torch.compile`` when asked), for the train step."""
        ids = [self.device.index] if self.device.type == "cuda" else None
        # no per-step buffer sync: BatchNorm statistics are already global and every other buffer is
        # fixed (masks, wirings), so broadcasting rank 0's buffers each step would only cost time.
        newer = "forward_sync_buffers" in inspect.signature(DistributedDataParallel.__init__).parameters  # torch >= 2.13
        no_sync = {"forward_sync_buffers": False} if newer else {"broadcast_buffers": False}
        ddp = DistributedDataParallel(model, device_ids=ids, **no_sync)
        return torch.compile(ddp) if compile else ddp

    # -- randomness ---------------------------------------------------------------------------

    def seed_dropout(self, seed: int) -> None:
        """Give ranks > 0 their own dropout stream (rank 0 keeps the single-process one)."""
        if self.rank > 0:
            torch.manual_seed(derive_seed(seed, "train", "rank", self.rank))

    def restore_rank_rng(self, saved: dict[str, Any], seed: int, global_step: int) -> None:
        """Restore this rank's RNG from a checkpoint written by :meth:`gather_rng`.

        A checkpoint from a run with another process count (or a single-process one) has no state
        for this rank: ranks > 0 then start a fresh stream derived from the step.
        """
        states = saved.get("rng_ranks")
        if isinstance(states, list) and len(states) == self.world_size:
            restore_rng_state(states[self.rank])
        elif self.rank > 0:
            log.warning("checkpoint has no RNG state for rank %d of %d; reseeding dropout", self.rank, self.world_size)
            torch.manual_seed(derive_seed(seed, "train", "rank", self.rank, global_step))

    def gather_rng(self) -> list[dict[str, Any]]:
        """Every rank's RNG state (:func:`capture_rng_state`), for rank 0's checkpoint."""
        return self.gather(capture_rng_state())

    # -- the engine's process strategy (the same calls as SingleProcess) --------------------------

    @property
    def context(self) -> DistContext:
        """The context evaluation shards its batches with."""
        return self

    def global_sums(
        self, loss_sum: torch.Tensor, correct: torch.Tensor, seen: int
    ) -> tuple[torch.Tensor, torch.Tensor, int]:
        """The training accumulators summed over all ranks."""
        g_loss, g_correct, g_seen = self.sum(loss_sum, correct, seen)
        return g_loss, g_correct.long(), int(g_seen)


class SingleProcess:
    """The engine's process strategy without ``torchrun``: one process, every collective the identity.

    It answers the calls :class:`DistContext` answers for a DDP run, so the training loop has one
    code path for both (``fit`` never asks which it has).

    Args:
        device: the device the run trains on.
    """

    rank = 0
    world_size = 1
    is_main = True
    context = None  # evaluation needs no sharding

    def __init__(self, device: torch.device):
        self.device = device

    def check_batches(self, num_samples: int, batch_size: int, drop_last: bool) -> None:
        """Every batch fits one process."""

    def convert_batchnorm(self, model: nn.Module) -> nn.Module:
        """BatchNorm statistics are already those of the whole batch."""
        return model

    def shard_batch(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, None]:
        """The whole batch, and no loss weight (the mean loss is the batch's).

        Shape:
            - x: :math:`(B, ...)` -> :math:`(B, ...)`
        """
        return x, y, None

    def global_sums(
        self, loss_sum: torch.Tensor, correct: torch.Tensor, seen: int
    ) -> tuple[torch.Tensor, torch.Tensor, int]:
        return loss_sum, correct, seen

    def barrier(self) -> None:
        """Nobody to wait for."""

    def main_first(self, fn: Callable[..., T], *args: Any) -> T:
        return fn(*args)

    def seed_dropout(self, seed: int) -> None:
        """The single-process dropout stream is the one the engine seeded."""

    def restore_rank_rng(self, saved: dict[str, Any], seed: int, global_step: int) -> None:
        """The checkpoint's one RNG state was restored already."""

    def gather_rng(self) -> None:
        """No other rank's RNG state to store."""
        return None

    def wrap(self, model: nn.Module, *, compile: bool = False) -> nn.Module:
        """The module the train step calls: ``model``, or ``torch.compile(model)`` when asked."""
        return torch.compile(model) if compile else model


#: What the engine trains with: one process, or this process's place in a DDP run.
Processes = SingleProcess | DistContext


class GlobalBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm whose training statistics cover the global batch of all processes (CPU DDP).

    :class:`torch.nn.SyncBatchNorm` does the same with fused CUDA kernels but refuses CPU tensors;
    this layer computes the mean and then the variance with autograd-aware all-reduces
    (torch's functional collectives, whose backward all-reduces the gradient), so its gradient is the gradient of the
    global-batch statistics. In eval mode, or outside a process group, it is plain BatchNorm.
    Parameter and buffer names equal ``BatchNorm*d``'s.

    Shape:
        - x: :math:`(B, C)` or :math:`(B, C, *)` -> same shape
    """

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        distributed = dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
        if not (self.training and distributed):
            return super().forward(x)
        all_reduce = _differentiable_all_reduce()
        self._check_input_dim(x)
        C = x.shape[1]
        dims = [0, *range(2, x.dim())]
        view = (1, C) + (1,) * (x.dim() - 2)
        count = torch.tensor([x.numel() // max(C, 1)], dtype=x.dtype, device=x.device)
        s = all_reduce(torch.cat([x.sum(dims), count]))  # (C + 1,): sums over the global batch
        n = s[C]
        mean = s[:C] / n  # (C,)
        xc = x - mean.view(view)
        var = all_reduce((xc * xc).sum(dims)) / n  # (C,) biased, as BatchNorm normalises with
        out = xc * torch.rsqrt(var + self.eps).view(view)
        if self.affine:
            out = out * self.weight.view(view) + self.bias.view(view)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                m = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
                unbiased = var * (n / (n - 1).clamp(min=1))
                self.running_mean.lerp_(mean.detach(), m)
                self.running_var.lerp_(unbiased.detach(), m)
        return out

    @classmethod
    def convert(cls, module: nn.Module) -> nn.Module:
        """Return ``module`` with every ``BatchNorm1d/2d/3d`` replaced (parameters and buffers shared)."""
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(module, (cls, nn.SyncBatchNorm)):
            new = cls(module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats)
            if module.affine:
                new.weight, new.bias = module.weight, module.bias
            new.running_mean = module.running_mean
            new.running_var = module.running_var
            new.num_batches_tracked = module.num_batches_tracked
            new.train(module.training)
            return new
        for name, child in module.named_children():
            new_child = cls.convert(child)
            if new_child is not child:
                module.add_module(name, new_child)
        return module


def _differentiable_all_reduce() -> Callable[[torch.Tensor], torch.Tensor]:
    """Sum over all ranks whose backward sums the gradients over all ranks.

    torch's functional collectives have that backward in recent versions (where the older
    ``torch.distributed.nn.functional.all_reduce`` warns that it is deprecated); older torch
    versions get the older function.
    """
    import torch.distributed._functional_collectives as fc  # which collectives exist depends on the torch version

    if hasattr(fc, "all_reduce_backward"):
        return lambda t: fc.all_reduce(t, "sum", dist.group.WORLD)
    from torch.distributed.nn.functional import all_reduce

    return all_reduce
