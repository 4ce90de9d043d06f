"""Training throughput: the archlab engine vs a straightforward PyTorch loop (SPEC §9).

Both sides train the same model (same registry builder, same init stream), on the same split of the
same data, with the same optimizer, loss, batch size and number of epochs, evaluate the validation
split after every epoch, keep the best-validation weights and test them once:

- ``archlab``: :func:`archlab.train.train` with its defaults — uint8 data resident on the device,
  batches drawn by index, one batched augmentation per batch, the memory format of the
  ``channels_last: auto`` rule (:mod:`archlab.train.speed`).
- ``archlab_contiguous``: the same with ``channels_last: false`` (the data path's share of the gain).
- ``reference``: what a competent user writes — a ``torch.utils.data.Dataset`` whose
  ``__getitem__`` makes a PIL image of one uint8 array, augments it with PIL transforms (perspective,
  rotate, affine translate, mirror; NumPy draws with the preset's distributions), converts it with
  NumPy and normalizes; ``DataLoader`` collation, ``for x, y in loader``, PyTorch's default
  (contiguous) memory format. It runs with ``num_workers=0`` and with 2 persistent workers; the
  ratio is taken against the faster of the two, so the reference is the best a straightforward
  loop gets on this machine.

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

import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps
from torch.utils.data import DataLoader, Dataset

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import parse_args, spread, write_result  # noqa: E402

from archlab.data import dataset_stats  # noqa: E402
from archlab.train.config import TrainConfig  # noqa: E402
from archlab.train.engine import train  # noqa: E402
from archlab.train.run import build_run_model, prepare_data  # noqa: E402
from archlab.train.losses import build_loss  # noqa: E402
from archlab.train.optim import build_optimizer  # noqa: E402
from archlab.train.speed import resolve_speed_options  # noqa: E402

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


# --- the reference's per-sample augmentation (PIL + NumPy, one image at a time) ----------------------


def _perspective_coeffs(src: np.ndarray, dst: np.ndarray) -> tuple[float, ...]:
    """PIL's 8 PERSPECTIVE coefficients: output pixel ``dst[i]`` samples input pixel ``src[i]``."""
    a = np.zeros((8, 8))
    for i, ((x, y), (u, v)) in enumerate(zip(dst, src)):
        a[2 * i] = [x, y, 1, 0, 0, 0, -u * x, -u * y]
        a[2 * i + 1] = [0, 0, 0, x, y, 1, -v * x, -v * y]
    return tuple(np.linalg.solve(a, src.reshape(8)).tolist())


class SampleAugment:
    """What a competent user writes: PIL transforms per image, NumPy random draws.

    The distributions of archlab's batched presets. ``spinal_mnist``: with p = 0.5 a perspective warp
    whose corners move inwards by up to ``0.5 * size / 2`` (torchvision/kornia ``RandomPerspective(0.5)``,
    PIL ``Image.PERSPECTIVE``), then ``Image.rotate`` within +-10 degrees about the centre.
    ``cifar``: ``Image.AFFINE`` translation by up to 10 % of each side, then ``ImageOps.mirror`` with
    p = 0.5. Bilinear resampling, zero fill, like the presets.

    Args:
        preset: ``cifar`` or ``spinal_mnist``.
        height / width: image size.
        rng: NumPy generator (each DataLoader worker seeds its own, see :func:`_seed_worker`).
    """

    def __init__(self, preset: str, height: int, width: int, rng: np.random.Generator | None = None):
        if preset not in ("spinal_mnist", "cifar"):
            raise ValueError(f"the reference implements spinal_mnist and cifar, got {preset!r}")
        self.preset, self.H, self.W = preset, height, width
        self.rng = rng if rng is not None else np.random.default_rng()
        self.corners = np.array([[0, 0], [width - 1, 0], [width - 1, height - 1], [0, height - 1]], dtype=np.float64)
        self.inward = np.array([[1, 1], [-1, 1], [-1, -1], [1, -1]], dtype=np.float64)

    def __call__(self, img: Image.Image) -> Image.Image:
        r = self.rng
        size = (self.W, self.H)
        if self.preset == "spinal_mnist":
            if r.random() < 0.5:
                factor = np.array([0.5 * self.W / 2, 0.5 * self.H / 2])
                end = self.corners + factor * r.random((4, 2)) * self.inward
                img = img.transform(size, Image.Transform.PERSPECTIVE, _perspective_coeffs(self.corners, end),
                                    Image.Resampling.BILINEAR)
            return img.rotate(float(r.uniform(-10.0, 10.0)), Image.Resampling.BILINEAR)
        tx, ty = r.uniform(-0.1, 0.1) * self.W, r.uniform(-0.1, 0.1) * self.H
        img = img.transform(size, Image.Transform.AFFINE, (1, 0, -tx, 0, 1, -ty), Image.Resampling.BILINEAR)
        return ImageOps.mirror(img) if r.random() < 0.5 else img


class AugmentedImages(Dataset):
    """The usual Dataset: one uint8 HWC array per image -> PIL -> augment -> float tensor -> normalize."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, mean, std, augment: SampleAugment | None):
        x = images.permute(0, 2, 3, 1).numpy()  # (N, H, W, C) uint8, as images are stored on disk
        self.images = x[..., 0] if x.shape[-1] == 1 else x  # PIL: (H, W) for "L", (H, W, 3) for "RGB"
        self.labels, self.augment = labels.tolist(), augment
        self.mean = np.asarray(mean, dtype=np.float32).reshape(-1, 1, 1)
        self.inv_std = 1.0 / np.asarray(std, dtype=np.float32).reshape(-1, 1, 1)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        img = Image.fromarray(self.images[i])
        if self.augment is not None:
            img = self.augment(img)
        a = np.asarray(img, dtype=np.float32) * (1 / 255.0)
        a = a[None] if a.ndim == 2 else a.transpose(2, 0, 1)  # (C, H, W)
        return torch.from_numpy((a - self.mean) * self.inv_std), self.labels[i]


def _seed_worker(worker_id: int) -> None:
    """Each worker's NumPy stream from torch's per-worker seed (the DataLoader recipe)."""
    info = torch.utils.data.get_worker_info()
    info.dataset.augment.rng = np.random.default_rng(torch.initial_seed() % 2**32)


def reference_run(config: TrainConfig, splits, workers: int) -> float:
    """Train like a plain PyTorch script; returns the test accuracy of the best-validation weights."""
    torch.manual_seed(config.seed)
    model = build_run_model(config, splits)
    mean, std = dataset_stats(splits.train)
    H, W = splits.train.image_size
    aug = SampleAugment(config.data.augment, H, W, np.random.default_rng(config.seed))
    train_ds = AugmentedImages(splits.train.images, splits.train.labels, mean, std, aug)
    loader = DataLoader(train_ds, batch_size=config.batch_size, shuffle=True, num_workers=workers,
                        persistent_workers=workers > 0, worker_init_fn=_seed_worker if workers else None)

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
        "archlab_contiguous": lambda c: archlab_run(c.model_copy(update={"channels_last": False}), splits),
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
        "speedup_contiguous": timing[best_ref]["median_s"] / timing["archlab_contiguous"]["median_s"],
        "archlab_choice": resolve_speed_options(base, splits).model_dump(include={"channels_last", "compile", "amp"}),
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
            f"contiguous {c['speedup_contiguous']:.2f}x"
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
