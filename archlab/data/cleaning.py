"""Cleaning the training split only, so that "cleaned vs not" is a paired study comparison.

Seed 002 (ultrasound nerve) removed near-duplicate images with contradicting masks from its
training data and saw the Dice rise. To test such a claim fairly, the cleaned variant and the
uncleaned one must be evaluated on the *same* validation and test images: only the training split
may change. ``data: {clean: {...}}`` (a study variant's ``data`` override, or a run's data section)
does exactly that::

    variants:
      raw: {}
      cleaned:
        data: {clean: {drop: [contradicting, duplicates]}}     # threshold: the audit's default
      cleaned_file:
        data: {clean: {file: audit/nerve/clean_split.json}}    # its `train` positions only

Policy (training positions only; validation and test are never touched):

- ``contradicting``: a near-duplicate pair whose labels differ (class, or for segmentation
  "has a mask" vs "empty", as in the seed) loses its training member(s) — both when both are in
  train; against a validation/test image the training copy goes.
- ``duplicates``: a pair with equal labels inside train loses the copy at the larger position; a
  training copy of a validation/test image (a leak) is dropped.

The pairs come from :func:`archlab.analysis.audit.audit_splits` on all three splits.
"""

from __future__ import annotations

import logging
from typing import Any

import torch

from archlab.data.splits import CLEAN_SPLIT_FORMAT, Splits
from archlab.errors import DataError

__all__ = ["clean_train_split", "train_keep_positions"]

log = logging.getLogger(__name__)


def train_keep_positions(splits: Splits, *, threshold: float, drop: tuple[str, ...] | list[str]) -> list[int]:
    """Training positions kept after dropping near-duplicates / contradictions (see module docstring).

    Returns:
        Sorted positions into ``splits.train``.
    """
    from archlab.analysis.audit import audit_splits

    result = audit_splits(splits, threshold=threshold)
    train = result.splits.index("train")
    dropped = torch.zeros(result.sizes["train"], dtype=torch.bool)
    sa, ia, sb, ib = (t.tolist() for t in (result.split_a, result.index_a, result.split_b, result.index_b))
    contra = result.contradicting.tolist()
    if "contradicting" in drop:
        for k in range(len(result)):
            if contra[k]:
                for s, i in ((sa[k], ia[k]), (sb[k], ib[k])):
                    if s == train:
                        dropped[i] = True
    if "duplicates" in drop:
        # in (split, position) order so the outcome does not depend on the order of the pairs
        order = sorted((k for k in range(len(result)) if not contra[k]), key=lambda k: (sa[k], ia[k], sb[k], ib[k]))
        for k in order:
            if sa[k] == train and sb[k] == train:
                if not (dropped[ia[k]] or dropped[ib[k]]):
                    dropped[ib[k]] = True  # keep the first copy
            elif sa[k] == train:
                dropped[ia[k]] = True  # a training copy of a validation/test image (sa <= sb)
            elif sb[k] == train:
                dropped[ib[k]] = True
    return (~dropped).nonzero().flatten().tolist()


def clean_train_split(splits: Splits, clean: Any) -> Splits:
    """``splits`` with a cleaned training split; validation and test are the same objects.

    Args:
        splits: the run's splits.
        clean: a :class:`archlab.train.config.CleanConfig` (``threshold``, ``drop``, ``file``).

    Raises:
        DataError: the cleaned-split file does not fit these splits, or nothing would be left.
    """
    if clean.file is not None:
        keep = _train_positions_from_file(clean.file, splits)
    else:
        keep = train_keep_positions(splits, threshold=clean.threshold, drop=tuple(clean.drop))
    if not keep:
        raise DataError(f"data.clean: every training image would be dropped (threshold {clean.threshold}); lower it")
    log.info("data.clean: %d of %d training images kept", len(keep), len(splits.train))
    return Splits(train=splits.train.subset(torch.as_tensor(keep, dtype=torch.int64)), val=splits.val, test=splits.test)


def _train_positions_from_file(path: str, splits: Splits) -> list[int]:
    """The ``keep.train`` positions of a cleaned-split file, checked against ``splits.train``."""
    import json
    from pathlib import Path

    from archlab.data.splits import split_fingerprint

    p = Path(path).expanduser()
    try:
        doc = json.loads(p.read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"data.clean.file {p}: not a readable cleaned-split file ({exc})") from None
    keep = (doc.get("keep") or {}).get("train") if isinstance(doc, dict) else None
    if not isinstance(doc, dict) or doc.get("format") != CLEAN_SPLIT_FORMAT or not isinstance(keep, list):
        raise DataError(f"data.clean.file {p}: expected a {CLEAN_SPLIT_FORMAT!r} file with a keep.train list")
    n = len(splits.train)
    if (doc.get("sizes") or {}).get("train") != n:
        raise DataError(f"data.clean.file {p} was written for a train split of {(doc.get('sizes') or {}).get('train')} "
                        f"images but this one has {n}; run `archlab data audit` again on this data")
    want = (doc.get("fingerprints") or {}).get("train")
    if want is not None and want != split_fingerprint(splits.train):
        raise DataError(f"data.clean.file {p}: the train split holds other images than the audited one; "
                        "run `archlab data audit` again on this data")
    if any(isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < n for i in keep):
        raise DataError(f"data.clean.file {p}: keep.train holds positions outside 0..{n - 1}")
    return sorted(set(keep))
