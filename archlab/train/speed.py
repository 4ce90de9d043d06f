"""Speed options resolved to concrete choices: memory format, fused optimizer, ``torch.compile`` and AMP.

SPEC §9: the fastest correct settings are chosen by default and recorded. A run's result must
depend only on its recorded config, so ``"auto"`` is never decided by a timed probe at run start
(a probe can flip from run to run on a busy machine). :func:`resolve_speed_options` replaces each
``"auto"`` by a fixed, measured rule of the model's structure and the device type, and the
resolved config (``true``/``false``) is what ``config.json`` and the study database store.

The rules, and the measurements behind them (``bench/speed_rule.py`` re-derives them with
:func:`probe_memory_format` on the machine it runs on and writes ``bench/results/speed_rule.json``):

- ``channels_last: auto`` -> ``true`` when 2-d convolutions carry at least
  :data:`CONV_SHARE_CHANNELS_LAST` (10 %) of the model's forward FLOPs (:func:`conv_flop_share`,
  counted with ``torch.utils.flop_counter``'s formulas on one sample of the run's input size), else ``false``.
  Measured on 2 CPU cores, torch 2.13, one training step per format, interleaved rounds
  (``bench/results/speed_rule.json``): channels_last was faster for every conv net timed on an idle
  machine — ``mnist_cnn`` 1.37x, ``mini_vgg`` 1.30x (batch 32) to 1.56x (batch 128), the seed-002
  weight-normalized and rotation variants 1.06-1.24x, ``connected_net`` 1.11x, EfficientNet-B0 1.40x,
  DenseNet-BC 1.18x, CRNet 1.23x; ResNet-18 (CIFAR stem) was a tie — and even ``mnist_cnn`` with the
  NCP head, whose counted FLOPs are only 19 % convolutions (the head's element-wise ops are not
  counted), gained 1.12x: the conv part gets faster and the rest does not care. The threshold only
  keeps channels_last off where convolutions are negligible. One measured exception: when the first
  convolution (the one reading the image) is rotation-invariant with 8 rotations — ``mini_vgg``
  ``8_rot_4``, 0.93x in channels_last in two separate measurements — the rule picks contiguous
  (:func:`channels_last_for`).
  Convolutions on CUDA prefer the same format (NHWC is cuDNN's native layout for tensor cores), so
  the rule does not depend on the device; ``bench/gpu.py`` measures the gain there.
- ``fused_optimizer: auto`` -> ``true`` on CPU and CUDA: torch's fused Adam/AdamW/SGD update every
  parameter in one vectorised kernel instead of ~5 tensor ops per parameter tensor. Measured on
  this 2-core CPU, 1 thread, mini-VGG (1.25 M parameters): 5.5 ms -> 1.7 ms per Adam step (about 8 %
  of a batch-32 training step); the update is the same formula, equal up to float rounding
  (``tests/train/test_speed_options.py``). Elsewhere (MPS, XLA) ``false``.
- ``compile: auto`` -> ``false``. On CPU ``torch.compile`` took ~27 s to compile ``mini_vgg`` and gave
  no per-step gain, so it never pays back within a run; on CUDA its gain is not measured yet
  (``bench/gpu.py`` records it when a GPU is lent), so auto stays off rather than hoped for.
- ``amp: auto`` -> ``true`` on CUDA (bfloat16 where the GPU supports it, else float16 with a
  gradient scaler), ``false`` on CPU (CPU autocast is slower than float32 for these models).
- On CUDA the engine also sets ``torch.backends.cudnn.benchmark`` (recorded in the result's
  provenance as ``speed.cudnn_benchmark``); CUDA results are not promised bit-exact, CPU ones are.

The memory format changes the convolution algorithm, so a ``channels_last`` run equals a contiguous
one only up to float rounding (``tests/train/test_speed_options.py`` states the tolerance); given the
resolved config, results stay exactly reproducible on CPU.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Any

import torch
import torch.nn as nn

from archlab.errors import ConfigError

__all__ = [
    "CONV_SHARE_CHANNELS_LAST",
    "ProbeResult",
    "channels_last_for",
    "conv_flop_share",
    "enable_compile_cache",
    "layout_stable_dropout",
    "probe_memory_format",
    "needs_resolving",
    "resolve_speed_options",
    "speed_provenance",
    "time_train_steps",
]

CONV_SHARE_CHANNELS_LAST = 0.1  # conv FLOP share from which channels_last is chosen (bench/speed_rule.py)

_CONV_OPS = ("convolution", "_convolution", "conv2d", "cudnn_convolution", "mkldnn_convolution")


def conv_flop_share(model: nn.Module, input_size: tuple[int, ...]) -> float:
    """Share of the forward FLOPs of ``model`` spent in 2-d convolutions.

    Args:
        model: any module taking one image batch.
        input_size: ``(C, H, W)`` of one sample.

    Returns:
        conv FLOPs / all FLOPs in [0, 1] (0 for a model without counted FLOPs).
    """
    ref = next(model.parameters(), None)
    device = ref.device if ref is not None else torch.device("cpu")
    x = torch.zeros((1, *input_size), device=device)
    was_training = model.training
    model.eval()
    from archlab.analysis.flops import count_flops

    try:
        with torch.no_grad():
            counts = count_flops(model, x)
    except RuntimeError as exc:
        raise ConfigError(f"cannot count the FLOPs of the model on input {tuple(input_size)}: {str(exc).splitlines()[0]}") from None
    finally:
        model.train(was_training)
    total = sum(counts.values())
    conv = sum(v for op, v in counts.items() if str(op).split(".")[-1] in _CONV_OPS)  # e.g. "aten.convolution"
    return conv / total if total else 0.0


def _device_type(device: str) -> str:
    from archlab.train.engine import resolve_device

    return resolve_device(device).type


def channels_last_for(model: nn.Module, input_size: tuple[int, ...]) -> bool:
    """The measured channels_last rule for ``model`` on samples of ``input_size`` ``(C, H, W)``.

    ``True`` when 2-d convolutions carry at least :data:`CONV_SHARE_CHANNELS_LAST` of the forward
    FLOPs, except when the first convolution — the one reading the image — is rotation-invariant
    with 8 rotations (measured 0.93x: ``mini_vgg`` ``8_rot_4``; the same layer deeper in the network,
    ``8_rot_1``..``8_rot_3``, still gains 1.06x).
    """
    from archlab.layers.rotation_conv import RotationInvariantConv2d

    first = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    if isinstance(first, RotationInvariantConv2d) and first.rotations == 8:
        return False
    return conv_flop_share(model, input_size) >= CONV_SHARE_CHANNELS_LAST


@lru_cache(maxsize=256)
def _rule_for_model(model_json: str, num_classes: int, in_chans: int, size: tuple[int, int]) -> bool:
    from archlab._registry import create_model
    from archlab.train.config import ModelConfig

    m = ModelConfig.model_validate_json(model_json)
    with torch.random.fork_rng(devices=[]):  # the structure does not depend on the seed; leave the RNG as it was
        torch.manual_seed(0)
        model = create_model(m.name, num_classes=num_classes, in_chans=in_chans, head=m.head,
                             head_kwargs=m.head_kwargs, input_size=size, **m.kwargs)
    return channels_last_for(model, (in_chans, *size))


def needs_resolving(config) -> bool:
    """Whether any speed option of ``config`` is still ``"auto"``."""
    return "auto" in (config.channels_last, config.compile, config.amp, config.fused_optimizer)


def resolve_speed_options(config, splits=None):
    """``config`` with every ``"auto"`` speed option replaced by its concrete, rule-based choice.

    Deterministic: the same config and data shape give the same choice on every machine of the
    same device type (no timing is involved). Options already ``true``/``false`` are kept.

    Args:
        config: a :class:`archlab.train.config.TrainConfig`.
        splits: the run's data (its channels, image size and classes); loaded from ``config``
            when ``None`` and the model must be inspected.

    Returns:
        A :class:`TrainConfig` whose ``channels_last``, ``fused_optimizer``, ``compile`` and ``amp``
        are booleans.
    """
    update: dict[str, Any] = {}
    if config.compile == "auto":
        update["compile"] = False
    if config.amp == "auto":
        update["amp"] = _device_type(config.device) == "cuda"
    if config.fused_optimizer == "auto":
        update["fused_optimizer"] = _device_type(config.device) in ("cpu", "cuda")
    if config.channels_last == "auto":
        update["channels_last"] = channels_last_rule(config, splits)
    return config.model_copy(update=update) if update else config


def channels_last_rule(config, splits=None) -> bool:
    """The measured rule (:func:`channels_last_for`) for the model and input size of ``config``."""
    from archlab.train.engine import model_input_size, prepare_data

    if splits is None:
        splits = prepare_data(config)
    size = tuple(int(s) for s in model_input_size(config, splits))
    return _rule_for_model(config.model.model_dump_json(), splits.train.num_classes, splits.train.in_chans, size)


def layout_stable_dropout(model: nn.Module) -> int:
    """Make every dropout of ``model`` draw its mask as in the contiguous format.

    ``bernoulli_`` fills a mask in memory order, so a channels_last activation would get other
    dropout masks from the same RNG stream than a contiguous one — another random draw, not a
    rounding difference (measured: a seed-002 mini-VGG's test accuracy moved by 12 points). A
    forward pre-hook hands each dropout (in training) a contiguous copy of a 4-d channels_last
    input: the masks are then the contiguous run's, and the next convolution returns to
    channels_last by itself (its weights are channels_last). Costs one copy of the activation.

    Returns:
        The number of dropout modules hooked.
    """

    def to_contiguous(module: nn.Module, args: tuple) -> tuple | None:
        x = args[0] if args else None
        if module.training and isinstance(x, torch.Tensor) and x.dim() == 4 and not x.is_contiguous():
            return (x.contiguous(), *args[1:])
        return None

    hooked = 0
    for m in model.modules():
        if isinstance(m, nn.modules.dropout._DropoutNd):
            m.register_forward_pre_hook(to_contiguous)
            hooked += 1
    return hooked


def enable_compile_cache() -> str:
    """Point torch.compile's on-disk caches at ``~/.cache/archlab/inductor`` (unless already set).

    Inductor's FX-graph and kernel caches then survive the process and the machine's /tmp cleaning,
    so the second run of the same model skips most of the compile time. Returns the folder.
    """
    default = os.path.join(os.path.expanduser("~"), ".cache", "archlab", "inductor")
    folder = os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", default)
    os.makedirs(folder, exist_ok=True)
    return folder


def speed_provenance(config, device: torch.device) -> dict[str, Any]:
    """What the run actually used for speed (for the result's provenance)."""
    amp = bool(config.amp) and device.type == "cuda"
    info: dict[str, Any] = {
        "channels_last": bool(config.channels_last),
        "fused_optimizer": config.fused_optimizer is True,
        "compile": bool(config.compile),
        **({"compile_cache": os.environ.get("TORCHINDUCTOR_CACHE_DIR")} if config.compile else {}),
        "amp": amp,
        "cudnn_benchmark": bool(device.type == "cuda" and torch.backends.cudnn.benchmark),
    }
    if amp:
        info["amp_dtype"] = "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
    return info


# --- timing (benchmarks and the rule's derivation only; never called by a run) ---------------------


def time_train_steps(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    steps: int,
    warmup: int = 3,
    channels_last: bool = False,
    amp: bool = False,
    optimizer: Callable[[Any], torch.optim.Optimizer] | None = None,
    step_times: list[float] | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> float:
    """Seconds per training step (fwd + bwd + Adam) of ``model`` on one resident batch.

    This is the pure-compute limit of a training loop: no data path, no metrics, no host syncs
    inside the timed steps. The model is trained in place (pass a copy).

    Args:
        model: the model (moved to ``x.device`` and to the memory format here).
        x / y: the batch and its labels, on the device.
        steps: timed steps (median of single-step times is not used: the mean over ``steps``
            consecutive steps, synchronised once at each end, is what a loop sustains).
        warmup: untimed steps first (allocator, oneDNN/cuDNN algorithm choice).
        channels_last: model and batch in ``torch.channels_last``.
        amp: autocast to bfloat16 (CUDA).
        optimizer: builds the optimizer from the parameters (default Adam, lr 1e-3).
        step_times: when given, each timed step is also timed on its own (synchronised) and its
            seconds appended here (a median of these resists other processes' load spikes).
        clock: the clock (``time.process_time`` measures this process's CPU time: on a CPU shared with
            other jobs it counts the work, not the waiting).

    Shape:
        - x: :math:`(B, C, H, W)`; y: :math:`(B,)`
    """
    device = x.device
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
        layout_stable_dropout(model)  # as the engine does
        x = x.contiguous(memory_format=torch.channels_last)
    opt = optimizer(model.parameters()) if optimizer is not None else torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    model.train()

    def step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            logits = model(x)
        loss = loss_fn(logits.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(warmup):
        step()
    _sync(device)
    t0 = clock()
    last = t0
    for _ in range(steps):
        step()
        if step_times is not None:
            _sync(device)
            now = clock()
            step_times.append(now - last)
            last = now
    _sync(device)
    return (clock() - t0) / steps


@dataclass
class ProbeResult:
    """What :func:`probe_memory_format` measured (seconds per training step, median of rounds)."""

    contiguous_s: float
    channels_last_s: float
    rounds: int
    steps: int
    conv_flop_share: float
    rule_choice: bool  # what resolve_speed_options picks for this model

    @property
    def faster(self) -> str:
        return "channels_last" if self.channels_last_s < self.contiguous_s else "contiguous"

    @property
    def speedup(self) -> float:
        """contiguous time / channels_last time (> 1: channels_last is faster)."""
        return self.contiguous_s / self.channels_last_s

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "faster": self.faster, "speedup": self.speedup}


def probe_memory_format(
    build: Callable[[], nn.Module],
    input_size: tuple[int, int, int],
    *,
    batch_size: int = 64,
    num_classes: int = 10,
    device: str | torch.device = "cpu",
    rounds: int = 3,
    steps: int = 5,
    warmup: int = 2,
    seed: int = 0,
) -> ProbeResult:
    """Time a training step of ``build()`` in both memory formats, interleaved round by round.

    Used by ``bench/speed_rule.py`` to derive and check the channels_last rule, never by a run (a
    timed choice could differ between two runs of one config). With one CPU thread it times this
    process's CPU time (robust to other jobs on the machine), else the wall clock.

    Args:
        build: returns a fresh model (the same initial weights each call).
        input_size: ``(C, H, W)`` of one sample.
        batch_size / num_classes: the batch timed.
        device: where to time.
        rounds: interleaved rounds; each times ``steps`` steps of each format.
        steps / warmup: timed and untimed steps per round.
        seed: the random batch.

    Returns:
        A :class:`ProbeResult` (median seconds per step of each format).
    """
    device = torch.device(device)
    # one CPU thread: this process's CPU time is the work, whatever else runs on the machine
    clock = time.process_time if device.type == "cpu" and torch.get_num_threads() == 1 else time.perf_counter
    g = torch.Generator().manual_seed(seed)
    x = torch.randn((batch_size, *input_size), generator=g).to(device)
    y = torch.randint(0, num_classes, (batch_size,), generator=g).to(device)
    times: dict[bool, list[float]] = {False: [], True: []}
    for r in range(rounds):
        for cl in ((False, True) if r % 2 == 0 else (True, False)):  # alternate the order: no format always goes first
            times[cl].append(time_train_steps(build(), x, y, steps=steps, warmup=warmup, channels_last=cl, clock=clock))
    model = build()
    share = conv_flop_share(model, input_size)
    med = {k: sorted(v)[len(v) // 2] for k, v in times.items()}
    return ProbeResult(
        contiguous_s=med[False],
        channels_last_s=med[True],
        rounds=rounds,
        steps=steps,
        conv_flop_share=share,
        rule_choice=channels_last_for(model, input_size),
    )


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
