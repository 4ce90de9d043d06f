"""Benchmark: the compute each ready study needs at full size (issue 25).

For every study in ``studies/`` (its real config, not ``--smoke``), every dataset and variant, the
run's own model, loss, optimizer, augmentation and normalisation are built (``build_run``) on
random uint8 images of the dataset's real shape (channels, size after ``options.image_size``, a
variant's ``image_size``; the model sees ``crop_size`` where the study crops), and a few training
steps (``train_step``: forward, loss, backward, optimizer, augmentation included) are timed in CPU
time of this process, one torch thread (a study's runs use one each). The per-image cost times
the training images per epoch (the dataset's documented part sizes after the study's split,
``subset``/``per_class`` and balancing), the epochs and the runs (seeds x datasets) gives the
study's training compute in CPU-seconds; validation, the test pass and the analyses are not
counted, so it is a lower bound. Early stopping can end runs sooner; the figure is for the
epochs written.

Writes ``bench/results/study_cost.json``; ``bench/readme_table.py --write`` renders the README's
compute table from it.

Run: ``python bench/study_cost.py [--batch 8] [--steps 2] [--only seed004_modern] [--tiny]``
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch

from _common import RESULTS, parse_args, write_result  # type: ignore[import-not-found]
from archlab.data._dataset import ImageDataset
from archlab.data.splits import Splits
from archlab.study.config import RunKey, load_study
from archlab.train.engine import build_run, train_step

STUDIES = Path(__file__).resolve().parents[1] / "studies"

#: The datasets' documented parts: class counts of the training part, the test part's size (None:
#: no official test part), channels and native (H, W) — from the datasets' own documentation.
DATASETS: dict[str, dict[str, Any]] = {
    "digits": {"train": [180] * 10, "test": None, "chans": 1, "hw": (8, 8)},  # sklearn digits: 1,797
    "mnist": {"train": [6000] * 10, "test": 10000, "chans": 1, "hw": (28, 28)},
    "fashion_mnist": {"train": [6000] * 10, "test": 10000, "chans": 1, "hw": (28, 28)},
    "kmnist": {"train": [6000] * 10, "test": 10000, "chans": 1, "hw": (28, 28)},
    "emnist": {"train": [4800] * 26, "test": 20800, "chans": 1, "hw": (28, 28)},  # letters split
    "cifar10": {"train": [5000] * 10, "test": 10000, "chans": 3, "hw": (32, 32)},
    # ~120k drawings per category; the studies keep per_class of them
    "quickdraw": {"train": [120000] * 24, "test": None, "chans": 1, "hw": (28, 28)},
    # seed 000's COVID CT set: 3,100 positive, 12,562 negative (the thesis' numbers)
    "image_folder": {"train": [12562, 3100], "test": None, "chans": 1, "hw": (512, 512)},
    # Kaggle ultrasound nerve train/: 5,635 images (420x580)
    "segmentation": {"train": [5635], "test": None, "chans": 1, "hw": (420, 580)},
}


def _hw(v: Any) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def train_images(data: Any) -> int:
    """Training images per epoch of a data config, from :data:`DATASETS` and the study's split."""
    facts = DATASETS[data.name]
    counts = list(facts["train"])
    opts = data.options
    per_class = opts.get("per_class")
    if isinstance(per_class, dict):
        per_class = per_class.get("train")
    if per_class:
        counts = [min(c, per_class) for c in counts]
    subset = opts.get("subset")
    if isinstance(subset, dict):
        subset = subset.get("train")
    if subset:
        n = sum(counts)
        counts = [c * subset / n for c in counts]
    keep = 1 - data.val_fraction - (data.test_fraction if facts["test"] is None else 0)
    counts = [c * keep for c in counts]
    if data.balance:
        counts = [min(counts)] * len(counts)
    return int(round(sum(counts)))


def input_shape(data: Any, classes: int) -> tuple[int, tuple[int, int]]:
    facts = DATASETS[data.name]
    chans = data.options.get("channels") or facts["chans"]
    if data.name == "image_folder" and data.options.get("mode") == "L":
        chans = 1
    size = data.options.get("image_size") or facts["hw"]
    if data.resize is not None:
        size = data.resize
    return chans, _hw(size)


def measure(config: Any, classes: int, batch: int, steps: int) -> float:
    """CPU-seconds per training image of ``config`` (random images of its shape, one thread)."""
    chans, (h, w) = input_shape(config.data, classes)
    n = batch * (steps + 1)
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, chans, h, w), dtype=torch.uint8, generator=gen)
    labels = torch.arange(n) % classes
    seg = config.data.name == "segmentation"
    masks = (torch.rand(n, 1, h, w, generator=gen) > 0.7).to(torch.uint8) if seg else None
    names = tuple(f"c{k}" for k in range(classes))
    ds = ImageDataset(images, labels, names, "bench", masks)
    # the weights file does not change the cost: the seeded initialisation stands in for it
    model = config.model.model_copy(update={"pretrained": None, "pretrained_sha256": None})
    cfg = config.model_copy(update={"batch_size": batch, "threads": 1, "device": "cpu", "drop_last": True,
                                    "data": config.data.model_copy(update={"resize": None}), "model": model})
    run = build_run(cfg, Splits(train=ds, val=ds, test=ds), torch.device("cpu"))
    run.model.train()
    batches = list(run.train_loader.epoch(0))
    train_step(run, run.model, *batches[0])  # warm-up: allocator, oneDNN choices
    t0 = time.process_time()
    for x, y in batches[1 : steps + 1]:
        train_step(run, run.model, x, y)
    return (time.process_time() - t0) / (steps * batch)


def main() -> None:
    args = parse_args(__doc__.splitlines()[0], lambda p: (
        p.add_argument("--batch", type=int, default=8, help="images per timed step"),
        p.add_argument("--steps", type=int, default=2, help="timed steps per variant"),
        p.add_argument("--only", nargs="*", default=None,
                       help="study names (default: all); the others are kept from the existing results file")))
    torch.set_num_threads(1)
    path = args.out or RESULTS / "study_cost.json"
    studies = json.loads(path.read_text())["studies"] if args.only and path.is_file() and not args.tiny else {}
    batch, steps = (2, 1) if args.tiny else (args.batch, args.steps)
    for path in sorted(STUDIES.glob("*.yaml")):
        if args.only and path.stem not in args.only:
            continue
        study = load_study(path)
        out: dict[str, Any] = {"datasets": {}, "seeds": len(study.seeds), "variants": {}}
        total = 0.0
        for label, data in study.dataset_configs().items():
            classes = len(DATASETS[data.name]["train"]) if data.name != "segmentation" else 2
            if data.name == "quickdraw":
                classes = len(data.options.get("categories") or []) or classes
            n = train_images(data)
            out["datasets"][label] = {"train_images": n}
            for variant in study.variants:
                cfg = study.resolve(RunKey(dataset=label, variant=variant, seed=study.seeds[0]))
                per_image = measure(cfg, classes, batch, steps)
                cpu_s = per_image * n * cfg.epochs * len(study.seeds)
                chans, hw = input_shape(cfg.data, classes)
                out["variants"][f"{label}/{variant}"] = {
                    "cpu_s_per_image": per_image, "epochs": cfg.epochs, "input": [chans, *hw],
                    "model": cfg.model.name, "cpu_s": cpu_s}
                total += cpu_s
                print(f"{path.stem} {label}/{variant}: {per_image * 1e3:.2f} CPU-ms/image, "
                      f"{cpu_s / 86400:.2f} CPU-days", flush=True)
        out["runs"] = len(study.grid())
        out["cpu_s"] = total
        out["max_epochs"] = max(v["epochs"] for v in out["variants"].values())
        studies[path.stem] = out
        if args.tiny:
            break
    write_result("study_cost", {"studies": dict(sorted(studies.items())), "batch": batch, "steps": steps, "threads": 1,
                                "clock": "process_time"}, args.out, tiny=args.tiny)


if __name__ == "__main__":
    main()
