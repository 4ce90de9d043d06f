"""Data-audit benchmark: archlab's near-duplicate search vs the seed's straightforward method.

SPEC §6 / seed 002: the audit must handle 70,000 28x28 images (MNIST-sized) in under a minute on
2 CPU cores. The data are 70,000 synthetic 28x28 shapes (``archlab.data.datasets.synthetic``)
split 60,000 train / 10,000 test, with planted exact and noisy copies inside train and across
the splits (every planted pair must be found).

References, timed side by side with archlab on a subsample of ``--subsample`` images (the
reference cannot hold the full problem: scipy's square distance matrix of 70,000 images alone is
39 GB) and extrapolated to 70,000 images (hashing linearly, the pairwise search quadratically):
- ``seed_numpy``: the seed's recipe — a per-image numpy loop computing the same soft block
  histograms, then ``scipy.spatial.distance.pdist(..., "cosine")`` and a threshold;
- ``sklearn_radius``: the same hashes searched with ``sklearn.neighbors.NearestNeighbors``
  (brute force, cosine metric, ``radius_neighbors``).
Before timing, the references are checked to give the same hashes (to 1e-5) and the same pairs as
archlab on the subsample. Writes ``bench/results/audit.json``.

    python bench/audit.py            # full run (70,000 images)
    python bench/audit.py --tiny     # CI smoke run (3,000 images, one repeat)
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import parse_args, time_interleaved, write_result  # noqa: E402

from archlab.analysis.audit import DEFAULT_THRESHOLD, audit_splits, block_histogram_hash, near_duplicate_pairs  # noqa: E402
from archlab.data.datasets.synthetic import load_synthetic  # noqa: E402

GRID, BINS = 7, 8
TARGET_SECONDS = 60.0


def seed_hash(images: np.ndarray, grid: int = GRID, bins: int = BINS) -> np.ndarray:
    """The seed's per-image loop (one numpy histogram per image), with archlab's soft bins."""
    n, c, h, w = images.shape
    block = (((np.arange(h) * grid) // h)[:, None] * grid + ((np.arange(w) * grid) // w)[None, :])
    base = ((block[None] * c + np.arange(c)[:, None, None]) * bins).reshape(-1)
    feat = grid * grid * c * bins
    out = np.empty((n, feat), dtype=np.float32)
    for k in range(n):  # the seed: hashes = np.array(map(compute_img_hist, imgs))
        pos = images[k].reshape(-1).astype(np.float32) * ((bins - 1) / 255.0)
        lo = np.minimum(np.floor(pos), bins - 2)
        w_hi = pos - lo
        idx = base + lo.astype(np.int64)
        hist = np.bincount(idx, weights=1.0 - w_hi, minlength=feat) + np.bincount(idx + 1, weights=w_hi, minlength=feat)
        out[k] = hist / np.linalg.norm(hist)
    return out


def seed_search(hashes: np.ndarray, threshold: float) -> set[tuple[int, int]]:
    """The seed: ``squareform(pdist(hashes, 'cosine')) + eye < threshold``."""
    from scipy.spatial.distance import pdist, squareform

    dist = squareform(pdist(hashes, metric="cosine")) + np.eye(len(hashes))
    i, j = np.nonzero(np.triu(dist < threshold, k=1))
    return set(zip(i.tolist(), j.tolist()))


def sklearn_search(hashes: np.ndarray, threshold: float) -> set[tuple[int, int]]:
    from sklearn.neighbors import NearestNeighbors

    nn = NearestNeighbors(radius=threshold, metric="cosine", algorithm="brute").fit(hashes)
    _, neigh = nn.radius_neighbors(hashes)
    return {(i, int(j)) for i, row in enumerate(neigh) for j in row if j > i}


def make_data(n: int, seed: int = 0) -> tuple[dict, set[tuple[str, int, str, int]]]:
    """``n`` synthetic 28x28 images, 6/7 train and 1/7 test, with planted copies."""
    ds = load_synthetic(num_samples=n, image_size=28, num_classes=10, seed=seed, noise=0.05)["train"]
    x, y = ds.images.clone(), ds.labels.clone()
    g = torch.Generator().manual_seed(seed + 1)
    n_train = n * 6 // 7
    k = max(4, n // 700)  # planted copies: 100 of each kind at 70,000 images
    src = torch.randperm(n_train // 2, generator=g)[: 3 * k]
    dst_train = n_train // 2 + torch.randperm(n_train - n_train // 2, generator=g)[:2 * k]
    dst_test = n_train + torch.randperm(n - n_train, generator=g)[:k]
    noise = lambda img: (img.float() + 3.0 * torch.randn(img.shape, generator=g)).clamp(0, 255).round().to(torch.uint8)
    planted = set()
    for a, b in zip(src[:k].tolist(), dst_train[:k].tolist()):  # exact copies inside train
        x[b], y[b] = x[a], y[a]
        planted.add(("train", a, "train", b))
    for a, b in zip(src[k : 2 * k].tolist(), dst_train[k:].tolist()):  # noisy copies inside train
        x[b], y[b] = noise(x[a]), y[a]
        planted.add(("train", a, "train", b))
    for a, b in zip(src[2 * k :].tolist(), dst_test.tolist()):  # noisy leaks into test
        x[b], y[b] = noise(x[a]), y[a]
        planted.add(("train", a, "test", b - n_train))
    full = type(ds)(x, y, ds.classes, "bench/train")
    parts = {"train": full.subset(torch.arange(n_train)), "test": full.subset(torch.arange(n_train, n))}
    return parts, planted


def main() -> None:
    p = parse_args(__doc__.splitlines()[0])
    torch.set_num_threads(p.threads)
    n = 3000 if p.tiny else 70_000
    sub = 600 if p.tiny else 4000
    repeats = 1 if p.tiny else min(p.repeats, 3)
    thr = DEFAULT_THRESHOLD
    parts, planted = make_data(n)
    load_before = os.getloadavg()  # other processes on the machine slow every timing below

    # 1. archlab on everything: hash + search + classification of the pairs
    full_times, result = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = audit_splits(parts, threshold=thr, grid=GRID, bins=BINS)
        full_times.append(time.perf_counter() - t0)
    found = {(r["split_a"], r["index_a"], r["split_b"], r["index_b"]) for r in result.rows()}
    missed = planted - found

    # 2. side by side on the subsample, checked equal first
    images = torch.cat([parts["train"].images, parts["test"].images])[:sub]
    np_images = images.numpy()
    h_ref = seed_hash(np_images)
    h_new = block_histogram_hash(images, grid=GRID, bins=BINS)
    hash_diff = float(np.abs(h_ref - h_new.numpy()).max())
    assert hash_diff < 1e-5, f"archlab and the reference hashes differ by {hash_diff}"
    i, j, _ = near_duplicate_pairs(h_new, thr)
    pairs_new = set(zip(i.tolist(), j.tolist()))
    pairs_seed, pairs_sk = seed_search(h_ref, thr), sklearn_search(h_ref, thr)
    h64 = h_ref.astype(np.float64)
    for other in (pairs_seed, pairs_sk):  # only pairs within rounding of the threshold may differ
        odd = [(a, b) for a, b in pairs_new ^ other if abs(1 - float(h64[a] @ h64[b]) - thr) > 1e-5]
        assert not odd, f"archlab and the reference disagree on {len(odd)} pairs, e.g. {odd[:3]}"
    timing = time_interleaved(
        {
            "archlab_hash": lambda: block_histogram_hash(images, grid=GRID, bins=BINS),
            "archlab_search": lambda: near_duplicate_pairs(h_new, thr),
            "seed_hash": lambda: seed_hash(np_images),
            "seed_search": lambda: seed_search(h_ref, thr),
            "sklearn_search": lambda: sklearn_search(h_ref, thr),
        },
        repeats=repeats,
        warmup=0 if p.tiny else 1,
    )
    lin, quad = n / sub, (n / sub) ** 2
    med = {k: v["median_ms"] / 1e3 for k, v in timing.items()}
    extrapolated = {
        "seed_numpy": med["seed_hash"] * lin + med["seed_search"] * quad,
        "sklearn_radius": med["seed_hash"] * lin + med["sklearn_search"] * quad,
    }
    archlab_s = statistics.median(full_times)
    data = {
        "device": "cpu",
        "threads": p.threads,
        "images": n,
        "image_shape": [1, 28, 28],
        "splits": {k: len(v) for k, v in parts.items()},
        "threshold": thr,
        "grid": GRID,
        "bins": BINS,
        "subsample": sub,
        "repeats": repeats,
        "archlab_seconds": {"median": archlab_s, "runs": full_times},
        "pairs_found": len(result),
        "planted_pairs": len(planted),
        "planted_missed": len(missed),
        "subsample_check": {"max_hash_diff": hash_diff, "pairs": len(pairs_new), "equal_pairs": True},
        "subsample_timing": timing,
        "reference_seconds_extrapolated": extrapolated,
        "speedup": {k: v / archlab_s for k, v in extrapolated.items()},
        "target_seconds": TARGET_SECONDS,
        "meets_target": archlab_s < TARGET_SECONDS,
        "load_average_1min": {"before": load_before[0], "after": os.getloadavg()[0]},
        # one case per reference, in the layout bench/readme_table.py renders
        "cases": {
            ref: {
                "timing": {"archlab": {"median_s": archlab_s}, f"{ref} (extrapolated)": {"median_s": secs}},
                "speedup": secs / archlab_s,
                "target": f"archlab < {TARGET_SECONDS:.0f} s for {n:,} images",
                "meets_target": archlab_s < TARGET_SECONDS,
            }
            for ref, secs in extrapolated.items()
        },
    }
    path = write_result("audit", data, p.out, tiny=p.tiny)
    print(f"archlab audit of {n:,} images: {archlab_s:.1f} s (median of {repeats}); {len(result)} pairs, "
          f"{len(planted) - len(missed)}/{len(planted)} planted found")
    for k, v in extrapolated.items():
        print(f"{k:15s} extrapolated to {n:,} images: {v:8.1f} s   -> archlab {v / archlab_s:6.1f}x faster")
    print(f"wrote {path}")
    if missed:
        raise SystemExit(f"{len(missed)} planted pairs were not found, e.g. {sorted(missed)[:3]}")


if __name__ == "__main__":
    main()
