"""Training throughput: the archlab engine vs a straightforward PyTorch loop (SPEC §9).

Both sides train the same model (same registry builder, same init stream), on the same split of the
same data, with the same optimizer, loss, batch size and number of epochs, evaluate the validation
split after every epoch, keep the best-validation weights and test them once:

- ``archlab``: :func:`archlab.train.train` — uint8 data resident on the device, batches drawn by
  index, one batched (kornia) augmentation per batch.
- ``reference``: the usual loop — a ``torch.utils.data.Dataset`` whose ``__getitem__`` converts
  one image to float and augments it on its own (plain torch, the way torchvision's tensor
  transforms do it: one sampling grid and one ``grid_sample`` per warp and per image) with the
  same distributions as the archlab preset, ``DataLoader`` collation, ``for x, y in loader``.
  It runs with ``num_workers=0`` and with 2 persistent workers; the ratio is taken against the
  faster of the two, so the reference is the best a straightforward loop gets on this machine.
- ``archlab_channels_last``: the engine with ``channels_last=True`` (is the option worth a default?).

Cases: ``mnist_cnn`` on the embedded digits at 28 px with the ``spinal_mnist`` preset (the
quickstart's model with seed 001's augmentation) and ``mini_vgg`` on synthetic 32x32 RGB images with
the ``cifar`` preset (seed 002's model, CIFAR-sized). Each round trains every contestant once with
seed = round number, interleaved; the report has median wall time, images/s, spread and the test
accuracy of every round for each side. Target: archlab >= 2x the images/s of the best reference.
Writes ``bench/results/engine.json``.

    python bench/engine.py [--threads 1] [--repeats 5]   # full run (default 7 rounds after a warm-up)
    python bench/engine.py --tiny        # CI smoke run (tiny data, one round, no timing claims)
"""

from __future__ import annotations

import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import parse_args, spread, write_result  # noqa: E402

from archlab.data import dataset_stats  # noqa: E402
from archlab.train.config import TrainConfig  # noqa: E402
from archlab.train.engine import build_run_model, prepare_data, train  # noqa: E402
from archlab.train.losses import build_loss  # noqa: E402
from archlab.train.optim import build_optimizer  # noqa: E402

TARGET = 2.0

CASES: dict[str, dict[str, Any]] = {
    "mnist_cnn_digits28_spinal_mnist": {
        "data": {"name": "digits", "options": {"image_size": 28}, "val_fraction": 0.15, "test_fraction": 0.25,
                 "augment": "spinal_mnist"},
        "model": {"name": "mnist_cnn"},
        "epochs": 6,
        "batch_size": 64,
        "optim": {"name": "adam", "lr": 0.002},
    },
    "mini_vgg_synthetic32_cifar": {
        "data": {"name": "synthetic", "options": {"num_samples": 1200, "image_size": 32, "channels": 3, "num_classes": 10},
                 "augment": "cifar"},
        "model": {"name": "mini_vgg"},
        "epochs": 2,
        "batch_size": 128,
        "optim": {"name": "adam", "lr": 0.001},
    },
}
TINY = {  # CI smoke sizes: seconds, not minutes
    "mnist_cnn_digits28_spinal_mnist": {"epochs": 1, "data": {"name": "synthetic", "options": {
        "num_samples": 120, "image_size": 28, "channels": 1, "num_classes": 3}}},
    "mini_vgg_synthetic32_cifar": {"epochs": 1, "data": {"options": {"num_samples": 120, "image_size": 32, "channels": 3,
                                                                        "num_classes": 3}}},
}


# --- the reference's per-sample augmentation (plain torch, one image at a time) --------------------


def _warp(x: torch.Tensor, inv: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
    """Sample image ``x`` (C, H, W) at ``inv @ (u, v, 1)`` for every output pixel (bilinear, zeros)."""
    _, H, W = x.shape
    p = base @ inv.T  # (H*W, 3) source pixel coordinates (homogeneous)
    p = p[:, :2] / p[:, 2:]
    grid = torch.stack((2 * p[:, 0] / (W - 1) - 1, 2 * p[:, 1] / (H - 1) - 1), -1).view(1, H, W, 2)
    return F.grid_sample(x[None], grid, mode="bilinear", padding_mode="zeros", align_corners=True)[0]


def _homography(src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
    """3x3 matrix mapping the 4 points ``src`` (4, 2) onto ``dst`` (4, 2)."""
    rows, rhs = [], []
    for (x, y), (u, v) in zip(src.tolist(), dst.tolist()):
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y])
        rhs += [u, v]
    h = torch.linalg.solve(torch.tensor(rows, dtype=torch.float64), torch.tensor(rhs, dtype=torch.float64))
    return torch.cat([h, h.new_ones(1)]).view(3, 3).float()


class SampleAugment:
    """One image at a time, the distributions of archlab's batched presets.

    ``spinal_mnist``: with p = 0.5 a perspective warp whose corners move inwards by up to
    ``0.5 * size / 2`` (kornia ``RandomPerspective(0.5)``), then a rotation within +-10 degrees about
    the centre. ``cifar``: a translation of up to 10% of each side, then a horizontal flip with
    p = 0.5.
    """

    def __init__(self, preset: str, height: int, width: int):
        if preset not in ("spinal_mnist", "cifar"):
            raise ValueError(f"the reference implements spinal_mnist and cifar, got {preset!r}")
        self.preset, self.H, self.W = preset, height, width
        v, u = torch.meshgrid(torch.arange(height, dtype=torch.float32), torch.arange(width, dtype=torch.float32),
                              indexing="ij")
        self.base = torch.stack((u.flatten(), v.flatten(), torch.ones(height * width)), -1)  # (H*W, 3)
        self.corners = torch.tensor([[0, 0], [width - 1, 0], [width - 1, height - 1], [0, height - 1]], dtype=torch.float32)
        self.inward = torch.tensor([[1, 1], [-1, 1], [-1, -1], [1, -1]], dtype=torch.float32)
        cx, cy = (width - 1) / 2, (height - 1) / 2
        self.to_centre = torch.tensor([[1, 0, -cx], [0, 1, -cy], [0, 0, 1]], dtype=torch.float32)
        self.from_centre = torch.tensor([[1, 0, cx], [0, 1, cy], [0, 0, 1]], dtype=torch.float32)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.preset == "spinal_mnist":
            if torch.rand(()) < 0.5:
                factor = torch.tensor([0.5 * self.W / 2, 0.5 * self.H / 2])
                end = self.corners + factor * torch.rand(4, 2) * self.inward
                x = _warp(x, torch.linalg.inv(_homography(self.corners, end)), self.base)
            a = math.radians(float(torch.empty(()).uniform_(-10.0, 10.0)))
            rot = torch.tensor([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1]])
            x = _warp(x, self.from_centre @ rot @ self.to_centre, self.base)
        else:
            tx = float(torch.empty(()).uniform_(-0.1, 0.1)) * self.W
            ty = float(torch.empty(()).uniform_(-0.1, 0.1)) * self.H
            x = _warp(x, torch.tensor([[1, 0, -tx], [0, 1, -ty], [0, 0, 1]]), self.base)
            if torch.rand(()) < 0.5:
                x = x.flip(-1)
        return x.clamp_(0.0, 1.0)


class AugmentedImages(Dataset):
    """The usual Dataset: index one uint8 image, convert, augment it alone, normalize."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, mean, std, augment: SampleAugment | None):
        self.images, self.labels, self.augment = images, labels, augment
        self.mean = torch.tensor(mean).view(-1, 1, 1)
        self.std = torch.tensor(std).view(-1, 1, 1)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        x = self.images[i].float() / 255.0  # (C, H, W)
        if self.augment is not None:
            x = self.augment(x)
        return (x - self.mean) / self.std, int(self.labels[i])


def reference_run(config: TrainConfig, splits, workers: int) -> float:
    """Train like a plain PyTorch script; returns the test accuracy of the best-validation weights."""
    torch.manual_seed(config.seed)
    model = build_run_model(config, splits)
    mean, std = dataset_stats(splits.train)
    H, W = splits.train.image_size
    aug = SampleAugment(config.data.augment, H, W)
    train_ds = AugmentedImages(splits.train.images, splits.train.labels, mean, std, aug)
    loader = DataLoader(train_ds, batch_size=config.batch_size, shuffle=True, num_workers=workers,
                        persistent_workers=workers > 0)

    def eval_loader(part):
        return DataLoader(AugmentedImages(part.images, part.labels, mean, std, None), batch_size=config.eval_batch_size)

    val_loader, test_loader = eval_loader(splits.val), eval_loader(splits.test)
    loss_fn = build_loss(config.loss, num_classes=splits.train.num_classes)
    o = config.optim
    opt = build_optimizer(o.name, model.parameters(), lr=o.lr, weight_decay=o.weight_decay, momentum=o.momentum)

    @torch.no_grad()
    def accuracy(dl) -> float:
        model.eval()
        correct = n = 0
        for x, y in dl:
            correct += int((model(x).argmax(1) == y).sum())
            n += len(y)
        model.train()
        return correct / n

    best, best_state = -1.0, None
    model.train()
    for _ in range(config.epochs):
        for x, y in loader:
            loss = loss_fn(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        val = accuracy(val_loader)
        if val > best:
            best, best_state = val, {k: v.clone() for k, v in model.state_dict().items()}
    model.load_state_dict(best_state)
    return accuracy(test_loader)


def archlab_run(config: TrainConfig, splits) -> float:
    return float(train(config, splits=splits).test["accuracy"])


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def run_case(name: str, spec: dict[str, Any], *, repeats: int, warmup: int, device: str) -> dict[str, Any]:
    base = TrainConfig.model_validate({**spec, "device": device})
    splits = prepare_data(base)
    contestants = {
        "archlab": lambda c: archlab_run(c, splits),
        "archlab_channels_last": lambda c: archlab_run(c.model_copy(update={"channels_last": True}), splits),
        "reference_workers0": lambda c: reference_run(c, splits, 0),
        "reference_workers2": lambda c: reference_run(c, splits, 2),
    }
    seconds: dict[str, list[float]] = {k: [] for k in contestants}
    accuracy: dict[str, list[float]] = {k: [] for k in contestants}
    for r in range(warmup + repeats):
        config = base.model_copy(update={"seed": r})
        for k, fn in contestants.items():
            t0 = time.perf_counter()
            acc = fn(config)
            dt = time.perf_counter() - t0
            if r >= warmup:
                seconds[k].append(dt)
                accuracy[k].append(acc)
            print(f"  {name} round {r + 1 - warmup:>2}{' (warm-up)' if r < warmup else ''} {k:22s} {dt:7.2f} s  "
                  f"test acc {acc:.3f}", file=sys.stderr, flush=True)
    images = base.epochs * len(splits.train)
    timing = {
        k: {**spread(v, "s"), "images_per_s": images / statistics.median(v)}
        for k, v in seconds.items()
    }
    acc = {
        k: {"per_round": v, "mean": statistics.fmean(v), "stdev": statistics.stdev(v) if len(v) > 1 else 0.0}
        for k, v in accuracy.items()
    }
    best_ref = min(("reference_workers0", "reference_workers2"), key=lambda k: timing[k]["median_s"])
    ratio = timing[best_ref]["median_s"] / timing["archlab"]["median_s"]
    return {
        "config": base.model_dump(mode="json"),
        "train_images_per_run": images,
        "timing": timing,
        "test_accuracy": acc,
        "reference": best_ref,
        "speedup": ratio,
        "speedup_channels_last": timing[best_ref]["median_s"] / timing["archlab_channels_last"]["median_s"],
        # best round of each side: on a shared machine other jobs only ever slow a round down
        "speedup_best_round": min(timing[k]["min_s"] for k in ("reference_workers0", "reference_workers2"))
        / timing["archlab"]["min_s"],
        "target": TARGET,
        "met": ratio >= TARGET,
    }


def main() -> None:
    def extra(p):
        p.add_argument("--cases", nargs="+", choices=sorted(CASES), default=sorted(CASES), help="cases to run")

    args = parse_args(__doc__.splitlines()[0], extra)
    torch.set_num_threads(args.threads)
    repeats = 1 if args.tiny else args.repeats
    warmup = 0 if args.tiny else 1
    cases = {}
    for name in args.cases:
        spec = CASES[name]
        if args.tiny:
            spec = _merge(spec, TINY[name])
        c = cases[name] = run_case(name, spec, repeats=repeats, warmup=warmup, device=args.device)
        t, a = c["timing"], c["test_accuracy"]
        ref = c["reference"]
        print(
            f"{name:34s} archlab {t['archlab']['images_per_s']:8.0f} img/s (acc {a['archlab']['mean']:.3f})   "
            f"{ref} {t[ref]['images_per_s']:8.0f} img/s (acc {a[ref]['mean']:.3f})   "
            f"speedup {c['speedup']:.2f}x (target {TARGET:.0f}x; best rounds {c['speedup_best_round']:.2f}x)   "
            f"channels_last {c['speedup_channels_last']:.2f}x"
        )
    path = write_result(
        "engine",
        {"device": args.device, "threads": args.threads, "repeats": repeats, "warmup_rounds": warmup, "cases": cases},
        args.out,
        tiny=args.tiny,
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
