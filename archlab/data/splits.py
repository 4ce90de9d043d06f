"""Train / validation / test splits: seeded, stratified, disjoint, identical across variants.

The split is part of a study (SPEC §3): every variant and every run with the same split seed sees
the same three index sets. Validation is always carved from the training part, so model selection
never touches the test split (SPEC §1.1).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from archlab._seed import make_generator
from archlab.data._dataset import ImageDataset
from archlab.errors import ConfigError, DataError

__all__ = [
    "Splits",
    "make_splits",
    "split_indices",
    "balance_indices",
    "apply_clean_split",
    "split_fingerprint",
    "CLEAN_SPLIT_FORMAT",
]

#: format tag of the cleaned-split JSON written by ``archlab data audit``.
CLEAN_SPLIT_FORMAT = "archlab-clean-split/1"


@dataclass(frozen=True, eq=False)
class Splits:
    """The three disjoint parts a run uses."""

    train: ImageDataset
    val: ImageDataset
    test: ImageDataset

    def sizes(self) -> dict[str, int]:
        """Number of samples per split."""
        return {"train": len(self.train), "val": len(self.val), "test": len(self.test)}


def _allocate(n: int, fractions: Sequence[float]) -> list[int]:
    """Split ``n`` items into ``len(fractions)`` counts summing to ``n`` (largest remainder)."""
    raw = [n * f for f in fractions]
    counts = [math.floor(r) for r in raw]
    order = sorted(range(len(raw)), key=lambda i: (-(raw[i] - counts[i]), i))
    for i in order[: n - sum(counts)]:
        counts[i] += 1
    return counts


def split_indices(
    labels: torch.Tensor,
    fractions: Sequence[float],
    *,
    seed: int,
    stratify: bool = True,
    stream: str = "split",
) -> list[torch.Tensor]:
    """Partition ``range(len(labels))`` into disjoint index sets of the given fractions.

    Each class (or, without ``stratify``, the whole set) is permuted with
    ``make_generator(seed, stream)`` and cut into ``len(fractions)`` pieces whose sizes are the
    fractions rounded by largest remainder, so every part keeps the class proportions.

    Args:
        labels: class labels.
        fractions: one non-negative fraction per part, summing to 1.
        seed: split seed.
        stratify: keep class proportions in every part.
        stream: name of the random stream (``"split"``).

    Returns:
        One sorted int64 index tensor per fraction.

    Shape:
        - labels: :math:`(N,)` int64
    """
    fr = [float(f) for f in fractions]
    if not fr or any(not math.isfinite(f) or f < 0 or f > 1 for f in fr) or abs(sum(fr) - 1) > 1e-6:
        raise ConfigError(f"split fractions must lie in [0, 1] and sum to 1, got {list(fractions)}")
    labels = torch.as_tensor(labels).cpu().to(torch.int64)
    gen = make_generator(seed, stream)
    groups = [torch.arange(len(labels))]
    if stratify:
        groups = [(labels == c).nonzero().flatten() for c in torch.unique(labels)]  # sorted classes
    parts: list[list[torch.Tensor]] = [[] for _ in fr]
    for idx in groups:
        idx = idx[torch.randperm(len(idx), generator=gen)]
        start = 0
        for p, count in enumerate(_allocate(len(idx), fr)):
            parts[p].append(idx[start : start + count])
            start += count
    return [
        torch.sort(torch.cat(p)).values if p else torch.empty(0, dtype=torch.int64) for p in parts
    ]


def balance_indices(
    labels: torch.Tensor, *, seed: int, max_per_class: int | None = None, balance: bool = True
) -> torch.Tensor:
    """Indices sub-sampling every class to the smallest class count (and at most ``max_per_class``).

    Seed 000 balances its COVID / non-COVID set by sub-sampling the larger (negative) class.

    Shape:
        - labels: :math:`(N,)` int64
        - output: :math:`(M,)` int64, sorted
    """
    labels = torch.as_tensor(labels).cpu().to(torch.int64)
    gen = make_generator(seed, "balance")
    classes = torch.unique(labels)
    counts = torch.stack([(labels == c).sum() for c in classes])
    cap = int(counts.min()) if balance else int(counts.max())
    if max_per_class is not None:
        cap = min(cap, max_per_class)
    keep = []
    for c in classes:
        idx = (labels == c).nonzero().flatten()
        keep.append(idx[torch.randperm(len(idx), generator=gen)[:cap]])
    return torch.sort(torch.cat(keep)).values


def make_splits(
    parts: dict[str, ImageDataset],
    *,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    seed: int = 0,
    stratify: bool = True,
    balance: bool = False,
    max_per_class: int | None = None,
    resample_seed: int | None = None,
) -> Splits:
    """Build train / val / test from a loader's parts.

    If ``parts`` has an official ``"test"`` part it is the test split and ``test_fraction`` is
    unused; otherwise ``test_fraction`` of ``"train"`` is carved off first. ``val_fraction`` (of
    the original training part) is then carved from what remains. ``balance`` and
    ``max_per_class`` sub-sample only the final training split, so validation and test keep the
    natural class distribution and do not change when balancing is switched on.

    Args:
        parts: ``{"train": ..., "test": ...}`` as returned by ``load_dataset``.
        val_fraction: fraction of the training part used for validation, in (0, 1).
        test_fraction: fraction carved for test when there is no official test part, in (0, 1).
        seed: split seed; the random streams are ``make_generator(seed, "split")`` and
            ``make_generator(seed, "balance")``.
        stratify: keep class proportions in every split.
        balance: sub-sample every class of train to the smallest class count.
        max_per_class: cap on training samples per class.
        resample_seed: redraw train/val from their union with this seed, keeping the test split
            and the split sizes (a study's ``split: per_seed``: data-split variance enters the
            comparison while every seed is tested on the same images).

    Raises:
        ConfigError: fractions out of range, unexpected part names, a bad ``max_per_class``.
        DataError: a split that would be empty, train and test with different classes.
    """
    unknown = sorted(set(parts) - {"train", "test"})
    if "train" not in parts or unknown:
        raise ConfigError(
            f"make_splits needs parts 'train' and optionally 'test', got {sorted(parts)}"
        )
    train = parts["train"]
    has_test = "test" in parts
    if not 0 < val_fraction < 1:
        raise ConfigError(f"val_fraction must lie in (0, 1), got {val_fraction}")
    if not has_test and not 0 < test_fraction < 1:
        raise ConfigError(
            f"test_fraction must lie in (0, 1) when there is no test part, got {test_fraction}"
        )
    tf = 0.0 if has_test else float(test_fraction)
    if val_fraction + tf >= 1:
        raise ConfigError(
            f"val_fraction + test_fraction must be < 1, got {val_fraction} + {tf} "
            f"= {val_fraction + tf}"
        )
    if max_per_class is not None and (
        isinstance(max_per_class, bool) or not isinstance(max_per_class, int) or max_per_class < 1
    ):
        raise ConfigError(f"max_per_class must be a positive int or None, got {max_per_class!r}")
    if has_test and parts["test"].classes != train.classes:
        raise DataError(
            f"train and test parts have different classes: {list(train.classes)} vs "
            f"{list(parts['test'].classes)}"
        )

    fractions = [1.0 - val_fraction - tf, float(val_fraction), tf]
    tr_idx, val_idx, te_idx = split_indices(train.labels, fractions, seed=seed, stratify=stratify)
    base = train.name.rsplit("/", 1)[0] if train.name else ""
    for split, idx in (("train", tr_idx), ("val", val_idx)) + (
        (("test", te_idx),) if not has_test else ()
    ):
        if len(idx) == 0:
            raise DataError(
                f"the {split} split of {base or 'the dataset'} would be empty "
                f"({len(train)} samples, "
                f"val_fraction={val_fraction}, test_fraction={tf}); use larger fractions or "
                "more data"
            )
    if resample_seed is not None:
        pool = torch.sort(torch.cat([tr_idx, val_idx])).values
        share = len(val_idx) / len(pool)
        new_tr, new_val = split_indices(
            train.labels[pool], [1.0 - share, share], seed=resample_seed, stratify=stratify, stream="resample"
        )
        tr_idx, val_idx = pool[new_tr], pool[new_val]
    if balance or max_per_class is not None:
        keep = balance_indices(
            train.labels[tr_idx], seed=seed, max_per_class=max_per_class, balance=balance
        )
        tr_idx = tr_idx[keep]
    test = parts["test"] if has_test else train.subset(te_idx, name=f"{base}/test")
    return Splits(
        train=train.subset(tr_idx, name=f"{base}/train"),
        val=train.subset(val_idx, name=f"{base}/val"),
        test=test,
    )


def split_fingerprint(ds: ImageDataset) -> str:
    """SHA-256 (hex, first 16 digits) of a split's images, labels and masks, in order.

    A cleaned split stores positions; the fingerprint makes sure they are applied to the very same
    images in the very same order.
    """
    h = hashlib.sha256()
    for t in (ds.images, ds.labels, ds.masks):
        if t is not None:
            h.update(str(tuple(t.shape)).encode())
            h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def apply_clean_split(splits: Splits, path: str | Path) -> Splits:
    """Keep only the positions a cleaned-split file lists (written by ``archlab data audit``).

    Args:
        splits: the splits the audit was run on (same dataset, options and split settings).
        path: the ``clean_split.json`` file.

    Returns:
        The splits restricted to the kept positions (order preserved).

    Raises:
        DataError: the file is missing or malformed, or it was written for other splits (the
            sizes or the fingerprints of images and labels differ).
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise DataError(f"clean split file not found: {p}; write it with `archlab data audit DATASET --out DIR`")
    try:
        doc = json.loads(p.read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"{p}: not a readable JSON file ({exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != CLEAN_SPLIT_FORMAT or not isinstance(doc.get("keep"), dict):
        raise DataError(f"{p}: not a cleaned-split file (expected format {CLEAN_SPLIT_FORMAT!r} with a 'keep' mapping)")
    parts = {"train": splits.train, "val": splits.val, "test": splits.test}
    kept = {}
    for name, ds in parts.items():
        keep = doc["keep"].get(name)
        if keep is None:
            kept[name] = ds
            continue
        size = doc.get("sizes", {}).get(name)
        if size != len(ds):
            raise DataError(
                f"{p} was written for a {name} split of {size} images but this one has {len(ds)}; "
                "the dataset, its options or the split settings changed — run `archlab data audit` again"
            )
        want = doc.get("fingerprints", {}).get(name)
        if want is not None and want != split_fingerprint(ds):
            raise DataError(
                f"{p}: the {name} split holds other images than the audited one (fingerprint "
                f"{split_fingerprint(ds)} != {want}); run `archlab data audit` again on this data"
            )
        idx = torch.as_tensor(keep, dtype=torch.int64)
        if idx.numel() == 0:
            raise DataError(f"{p}: the cleaned {name} split is empty; loosen the audit threshold")
        if int(idx.min()) < 0 or int(idx.max()) >= len(ds):
            raise DataError(f"{p}: kept position out of range for the {len(ds)} images of the {name} split")
        kept[name] = ds.subset(idx)
    return Splits(**kept)
