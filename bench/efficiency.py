"""Engine efficiency: how much of the machine's training speed for a model the engine delivers (SPEC §9).

For each model, interleaved round by round:

- ``engine``: :func:`archlab.train.train` with its defaults (speed options resolved by the rule of
  :mod:`archlab.train.speed`). Its training rate is taken between the first and the last optimizer
  step of every epoch (the ``on_step`` callback): the data path (index the resident uint8 images,
  convert, normalize), the step and the per-step bookkeeping; the per-epoch validation and the final
  test are not training and are reported apart (``end_to_end_images_per_s``: training images / the
  whole ``train()`` call).
- ``limit``: the pure-compute limit — :func:`_timing.time_train_steps`: fwd + bwd + the
  same optimizer on one resident batch of the same size, same model (same init) and the same memory
  format, no data path, no bookkeeping.

``efficiency`` = limit step time / engine step time, each the median over single steps of one
round (measured back to back), then the median over rounds with the spread. With one thread the
step times are this process's CPU time (``time.process_time``): on a machine shared with other jobs
the wall clock measures them too, CPU time measures the work (the wall-clock figure is reported as
``efficiency_wall``); with more threads idle OpenMP threads spin, so the wall clock is used.
``efficiency_of_means`` (all steps' total wall time on both sides) is reported as well. Target >= 0.95 on CPU. No augmentation here: the limit has none, and
augmentation is work, not overhead (``bench/engine.py`` times the engine with it against a plain
loop). Models: ``mnist_cnn`` (digits, 28 px), ``mini_vgg`` (synthetic 32x32 RGB) and ResNet-18 with
the CIFAR stem (synthetic 32x32 RGB). Writes ``bench/results/efficiency.json``.

    python bench/efficiency.py [--threads 1] [--repeats 5]
    python bench/efficiency.py --tiny     # CI smoke run (tiny data, one round, no timing claims)
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import parse_args, write_result  # noqa: E402
from _timing import time_train_steps  # noqa: E402

from archlab.data import dataset_stats  # noqa: E402
from archlab.train.config import TrainConfig  # noqa: E402
from archlab.train.engine import train  # noqa: E402
from archlab.train.optim import build_optimizer  # noqa: E402
from archlab.train.run import build_run_model, prepare_data, resolve_device  # noqa: E402
from archlab.train.speed import resolve_speed_options  # noqa: E402

TARGET = 0.95

CASES: dict[str, dict[str, Any]] = {
    "mnist_cnn": {
        "data": {"name": "digits", "options": {"image_size": 28}, "val_fraction": 0.15, "test_fraction": 0.25},
        "model": {"name": "mnist_cnn"}, "epochs": 3, "batch_size": 64, "optim": {"name": "adam", "lr": 0.002},
    },
    "mini_vgg": {
        "data": {"name": "synthetic", "options": {"num_samples": 1200, "image_size": 32, "channels": 3, "num_classes": 10}},
        "model": {"name": "mini_vgg"}, "epochs": 2, "batch_size": 128, "optim": {"name": "adam", "lr": 0.001},
    },
    "resnet18_cifar": {
        "data": {"name": "synthetic", "options": {"num_samples": 500, "image_size": 32, "channels": 3, "num_classes": 10}},
        "model": {"name": "resnet18", "kwargs": {"cifar_stem": True}}, "epochs": 2, "batch_size": 64,
        "optim": {"name": "adam", "lr": 0.001},
    },
}  # fmt: skip
TINY_DATA = {"mnist_cnn": (1, 28), "mini_vgg": (3, 32), "resnet18_cifar": (3, 16)}


def _median_rate(stamps: list[float], epochs: int, steps: int, n: int, bs: int) -> float:
    """Images/s from the median interval between consecutive steps (full batches only)."""
    gaps = []
    for e in range(epochs):
        t = stamps[e * steps : (e + 1) * steps]
        g = [b - a for a, b in zip(t, t[1:])]
        gaps += g if n % bs == 0 else g[:-1]  # the last, partial batch is smaller
    return bs / statistics.median(gaps)


def engine_rates(config: TrainConfig, splits) -> dict[str, float]:
    """Training images/s of the engine.

    A step's time is the interval between two ``on_step`` callbacks: batch (index, convert,
    normalize), forward, backward, optimizer and the engine's bookkeeping.

    Returns:
        ``median`` (median step, wall clock), ``cpu`` (median step, this process's CPU time),
        ``mean`` (first to last step of every epoch, wall clock) and ``end_to_end`` (the whole
        ``train()`` call: model build, validation and test included).
    """
    n, bs = len(splits.train), config.batch_size
    steps = -(-n // bs)
    if steps < 3:
        raise ValueError(f"{n} training images at batch {bs} make {steps} steps per epoch; the rate needs three")
    cuda = resolve_device(config.device).type == "cuda"
    wall: list[float] = []
    cpu: list[float] = []

    def on_step(g: int) -> None:
        if cuda:  # wait for the GPU, as the limit's per-step timing does
            torch.cuda.synchronize()
        wall.append(time.perf_counter())
        cpu.append(time.process_time())

    t0 = time.perf_counter()
    train(config, splits=splits, on_step=on_step)
    total = time.perf_counter() - t0
    seconds = sum(wall[(e + 1) * steps - 1] - wall[e * steps] for e in range(config.epochs))
    images = config.epochs * (n - min(bs, n))  # every step after the first of each epoch
    return {
        "median": _median_rate(wall, config.epochs, steps, n, bs),
        "cpu": _median_rate(cpu, config.epochs, steps, n, bs),
        "mean": images / seconds,
        "end_to_end": config.epochs * n / total,
    }


def limit_rate(config: TrainConfig, splits, steps: int, device: str = "cpu") -> dict[str, float]:
    """Images/s of fwd + bwd + optimizer on one resident batch (same model, init, memory format, AMP).

    Returns:
        ``median`` (median single step, wall clock), ``cpu`` (median single step, CPU time) and
        ``mean`` (all steps, wall clock).
    """
    bs = min(config.batch_size, len(splits.train))
    mean, std = dataset_stats(splits.train)
    x = splits.train.images[:bs].float().div_(255.0)
    x = (x - torch.tensor(mean).view(1, -1, 1, 1)) / torch.tensor(std).view(1, -1, 1, 1)  # (B, C, H, W)
    y = splits.train.labels[:bs]
    dev = resolve_device(device)
    o = config.optim
    out = {}
    for key, clock in (("median", time.perf_counter), ("cpu", time.process_time)):
        times: list[float] = []
        seconds = time_train_steps(
            build_run_model(config, splits), x.to(dev), y.to(dev), steps=steps, warmup=2,
            channels_last=bool(config.channels_last), amp=bool(config.amp) and dev.type == "cuda",
            optimizer=lambda p: build_optimizer(o.name, p, lr=o.lr, weight_decay=o.weight_decay, momentum=o.momentum,
                                                fused=config.fused_optimizer is True),
            step_times=times, clock=clock,
        )  # fmt: skip
        out[key] = bs / statistics.median(times)
        if key == "median":
            out["mean"] = bs / seconds
    return out


def run_case(name: str, spec: dict[str, Any], *, rounds: int, warmup: int, threads: int, tiny: bool) -> dict[str, Any]:
    cpu_time = threads == 1  # one thread: its CPU time is the work done; more threads spin-wait, so wall clock
    config = TrainConfig.model_validate({**spec, "device": "cpu", "threads": threads})
    splits = prepare_data(config)
    config = resolve_speed_options(config, splits)
    steps = max(3, -(-len(splits.train) // config.batch_size))  # as many steps as one epoch
    rows = []
    for r in range(warmup + rounds):
        eng = engine_rates(config.model_copy(update={"seed": r}), splits)
        lim = limit_rate(config, splits, 3 if tiny else steps)
        row = {
            "engine_images_per_s": eng["median"], "limit_images_per_s": lim["median"],
            "efficiency_wall": eng["median"] / lim["median"], "efficiency_cpu_time": eng["cpu"] / lim["cpu"],
            "efficiency_of_means": eng["mean"] / lim["mean"], "end_to_end_images_per_s": eng["end_to_end"],
        }  # fmt: skip
        row["efficiency"] = row["efficiency_cpu_time" if cpu_time else "efficiency_wall"]
        if r >= warmup:
            rows.append(row)
        print(f"  {name} round {r + 1 - warmup}{' (warm-up)' if r < warmup else ''}: engine {eng['median']:8.0f} img/s  "
              f"limit {lim['median']:8.0f} img/s  efficiency: wall {row['efficiency_wall']:.3f}, CPU time "
              f"{row['efficiency_cpu_time']:.3f}, of means {row['efficiency_of_means']:.3f}  "
              f"end to end {eng['end_to_end']:8.0f} img/s", file=sys.stderr, flush=True)
    eff = [row["efficiency"] for row in rows]
    med = statistics.median(eff)
    return {
        "config": config.model_dump(mode="json"),
        "train_images": len(splits.train),
        "rounds": rows,
        "engine_images_per_s": statistics.median(row["engine_images_per_s"] for row in rows),
        "limit_images_per_s": statistics.median(row["limit_images_per_s"] for row in rows),
        "end_to_end_images_per_s": statistics.median(row["end_to_end_images_per_s"] for row in rows),
        "efficiency_measure": "cpu_time" if cpu_time else "wall",
        "efficiency": med,
        "efficiency_min": min(eff),
        "efficiency_max": max(eff),
        "efficiency_wall": statistics.median(row["efficiency_wall"] for row in rows),
        "efficiency_of_means": statistics.median(row["efficiency_of_means"] for row in rows),
        "target": TARGET,
        "met": None if tiny else med >= TARGET,  # a tiny run claims nothing
    }


def main() -> None:
    def extra(p):
        p.add_argument("--cases", nargs="+", choices=sorted(CASES), default=list(CASES), help="models to run")

    args = parse_args(__doc__.splitlines()[0], extra)
    torch.set_num_threads(args.threads)
    rounds, warmup = (1, 0) if args.tiny else (args.repeats, 1)
    cases = {}
    for name in args.cases:
        spec = CASES[name]
        if args.tiny:
            c, s = TINY_DATA[name]
            spec = {**spec, "epochs": 1, "batch_size": 8, "data": {"name": "synthetic", "options": {
                "num_samples": 60, "image_size": s, "channels": c, "num_classes": 3}}}
        c = cases[name] = run_case(name, spec, rounds=rounds, warmup=warmup, threads=args.threads, tiny=args.tiny)
        print(f"{name:16s} engine {c['engine_images_per_s']:8.0f} img/s  limit {c['limit_images_per_s']:8.0f} img/s "
              f"(channels_last {c['config']['channels_last']})  efficiency {c['efficiency']:.3f} "
              f"[{c['efficiency_min']:.3f}..{c['efficiency_max']:.3f}]  (target {TARGET})")
    path = write_result("efficiency", {"device": "cpu", "threads": args.threads, "repeats": rounds,
                                       "warmup_rounds": warmup, "cases": cases}, args.out, tiny=args.tiny)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
