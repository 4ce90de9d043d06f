"""Data audit: near-duplicate images inside a split, leaks across splits, contradicting labels.

Seed 002 (the ultrasound-nerve post) found that ~40 % of the training set had a near-identical
twin with a different label: "Divide image into blocks ... compute histogram over various blocks.
The concatenated set of histograms represents the image hash. Compute pairwise cosine similarity
between image hashes and find ones within some reasonable threshold." This module generalises that
search to any archlab dataset and its train/val/test split:

1. :func:`block_histogram_hash` — every image is cut into a ``grid`` of blocks; each block (and
   channel) gets an intensity histogram of ``bins`` bins; the concatenation is L2-normalised.
   Departure from the seed: the histogram is *soft* (each pixel splits its vote linearly between
   the two nearest bin centres), so a pixel that moves by a few grey levels moves the hash by a
   little instead of jumping a bin edge. Slightly noisy copies then stay far below the threshold
   while distinct images stay above it (measured in ``tests/analysis/test_audit.py``).
   The default candidate descriptor is :func:`thumbnail_descriptor` instead — a small blurred
   grey thumbnail of the image *centred on its intensity centroid*, zero-mean and L2-normalised,
   so its cosine similarity is the normalised cross-correlation of the thumbnails: unlike the
   histograms it barely moves under shifts (the centring undoes them — without it a thin "1"
   shifted sideways by 1 px lands farther from its source than other writers' "1"s), small
   crops and brightness/contrast changes (measured: ``bench/results/audit_calibration.json``).
2. :func:`near_duplicate_pairs` — cosine distance ``1 - <h_i, h_j>`` of all pairs, as chunked
   matrix products (never a Python loop over pairs); pairs with distance ``< threshold`` are
   kept. An exact pruning skips blocks that cannot hold a pair: rows are bucketed on their two
   principal directions and only neighbouring buckets are multiplied. With verification on, this
   is a loose *prefilter* (high recall), capped at the :data:`DEFAULT_NEIGHBOURS` nearest images
   of each image (exact k-nearest neighbours within the threshold), so that self-similar data
   (tens of thousands of handwritten digits) give at most ``DEFAULT_NEIGHBOURS * N`` candidates
   to verify; the decision is made by steps 3 and 4.
3. :func:`pixel_similarity` — verification of every candidate pair at the pixel level: both
   images as grey thumbnails of at most 32x32 (Gaussian blur sigma 1 px), the second aligned to the first by
   a coarse search over small shifts and zooms refined by Gauss-Newton steps on a small affine warp
   (|scale - 1| <= 0.12, shift <= 5 %), scored by the normalised cross-correlation (NCC) of the
   overlap. NCC ignores brightness and contrast; the alignment absorbs 1-px shifts and small
   crops; the blur absorbs re-encoding and noise. A pair can be a near-duplicate when the score is
   at least ``min_similarity`` (:data:`DEFAULT_MIN_SIMILARITY`, calibrated on real images, below).
4. :func:`crowd_test` (issue 24) — on real handwriting a similarity cut alone fails: different
   writers' "1"s of the same slant correlate at 0.997 after alignment, as closely as a
   re-encoded photograph (10,000 distinct MNIST digits: 1,411 pairs flagged at 0.996). A pair is
   kept only when its residual ``1 - similarity`` is at most :data:`DEFAULT_CROWD_RATIO` of both
   images' next-best match (Lowe's ratio test), or when it is at least :data:`COPY_SIMILARITY`
   (closer than any two distinct images of the calibration). Precision and recall on real MNIST
   digits (a calibration half and a held-out half), scikit-learn's digits and scikit-image's
   photographs with planted copies: ``bench/results/audit_calibration.json``.
5. :func:`audit_splits` — classifies the pairs: inside one split, across splits (leakage), and
   with contradicting labels (class labels, or for segmentation data "has a mask" vs "empty").
6. :func:`clean_split_indices` / :func:`write_audit` — a cleaned split (kept positions per split)
   written as JSON; ``DataConfig.clean_split`` points a run or study at it
   (:func:`archlab.data.splits.apply_clean_split`).

Which copy is dropped (documented policy, the same for every study using the file):
- contradicting labels: both images are dropped, in every split — their labels cannot both be
  right, as in the seed, which discarded the inconsistent samples;
- a leak across splits: the copy in the split that matters less is dropped (test is kept over val,
  val over train), so the test split changes as little as possible;
- a duplicate inside a split: the copy with the larger position is dropped, one copy stays.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from archlab.data._dataset import ImageDataset
from archlab.data.splits import CLEAN_SPLIT_FORMAT, Splits, split_fingerprint
from archlab.errors import ConfigError

__all__ = [
    "AuditResult",
    "block_histogram_hash",
    "thumbnail_descriptor",
    "pixel_similarity",
    "DEFAULT_MIN_SIMILARITY",
    "HISTOGRAM_THRESHOLD",
    "near_duplicate_pairs",
    "crowd_test",
    "DEFAULT_NEIGHBOURS",
    "DEFAULT_CROWD_RATIO",
    "COPY_SIMILARITY",
    "audit_splits",
    "clean_split_indices",
    "write_audit",
    "DEFAULT_THRESHOLD",
]

log = logging.getLogger(__name__)

#: cosine distance of the block-histogram hash below which two images count as near-duplicates
#: when the histogram hash is used *alone* (``descriptor="histogram", verify=False``, the seed's
#: method). Noisy copies (std 5/255) stay below ~0.009, the closest distinct digits are 0.011
#: apart — but 1-px shifts, crops and brightness changes move the hash by 0.03-0.4, so this method
#: misses them (measured in ``bench/results/audit_calibration.json``).
HISTOGRAM_THRESHOLD = 0.005
#: cosine distance of the thumbnail descriptor below which a pair is a *candidate* (prefilter,
#: before verification). On the calibration images the planted near-copies lie below 0.06 except
#: some 1-px shifts and crops of textured photo tiles (up to 0.083); a looser cut multiplies the
#: candidates on self-similar data (1,797 digits: 10k candidate pairs at 0.05, 30k at 0.08).
DEFAULT_THRESHOLD = 0.08
#: verified pixel similarity (aligned NCC, :func:`pixel_similarity`) at or above which a candidate
#: pair is a near-duplicate. Calibrated by ``bench/audit.py`` on scikit-learn's digits and
#: scikit-image's photographs with planted near-copies (``bench/results/audit_calibration.json``).
DEFAULT_MIN_SIMILARITY = 0.996
#: candidates per image: its nearest images (in descriptor distance) within the threshold. Issue
#: 24: on 70,000 handwritten digits every "1" has hundreds of similar "1"s inside any useful
#: threshold; the cap bounds the verified pairs by ``DEFAULT_NEIGHBOURS * N``.
DEFAULT_NEIGHBOURS = 4
#: the ratio test (:func:`crowd_test`): a copy's residual is at most this fraction of the residual
#: of its images' next-best match. Calibrated with :data:`DEFAULT_MIN_SIMILARITY` on the three
#: calibration sets (``bench/results/audit_calibration.json``).
DEFAULT_CROWD_RATIO = 0.35
#: verified similarity at or above which a pair is a copy without the ratio test (:func:`crowd_test`):
#: above every pair of distinct images of the calibration (real MNIST digits reach 0.9986).
COPY_SIMILARITY = 0.9995
#: pairs whose coarse (shift/zoom grid) score is below ``min_similarity - REFINE_MARGIN`` are not
#: refined: they cannot reach the cut.
REFINE_MARGIN = 0.05
#: thumbnail side of :func:`thumbnail_descriptor` and of :func:`pixel_similarity`.
DESCRIPTOR_SIZE = 12
VERIFY_SIZE = 32
#: the split order of importance: a leak drops the copy in the earlier one.
SPLIT_ORDER = ("train", "val", "test")


def _pair(v: int | Sequence[int], what: str) -> tuple[int, int]:
    t = (v, v) if isinstance(v, int) and not isinstance(v, bool) else tuple(v)  # type: ignore[arg-type]
    if len(t) != 2 or any(isinstance(i, bool) or not isinstance(i, int) or i < 1 for i in t):
        raise ConfigError(f"{what} must be a positive int or a pair of positive ints, got {v!r}")
    return int(t[0]), int(t[1])


def _map_threads(fn: Callable[[Any], Any], items: Sequence[Any], device: torch.device) -> list[Any]:
    """``[fn(x) for x in items]``, the items spread over ``torch.get_num_threads()`` threads.

    Issue 24: each thread runs whole items with single-threaded torch ops (they release the GIL)
    instead of every op being split across the threads. A split op waits at its end for all its
    threads; on a shared, busy machine one of them is often descheduled and the others spin —
    the 70,000-image audit spent over twice its CPU time that way. Serial on one thread, one item
    or a non-CPU device."""
    threads = torch.get_num_threads()
    if threads == 1 or len(items) <= 1 or device.type != "cpu":
        return [fn(x) for x in items]
    torch.set_num_threads(1)
    try:
        with ThreadPoolExecutor(threads, initializer=torch.set_num_threads, initargs=(1,)) as pool:
            return list(pool.map(torch.no_grad()(fn), items))
    finally:
        torch.set_num_threads(threads)


@torch.no_grad()
def block_histogram_hash(
    images: torch.Tensor, *, grid: int | Sequence[int] = 7, bins: int = 8, chunk: int = 4096
) -> torch.Tensor:
    """Soft block-histogram hash of every image, L2-normalised (seed 002's image hash).

    Block ``(r, c)`` holds the pixels with ``y * grid_h // H == r`` and ``x * grid_w // W == c``,
    so any image size works (blocks differ by at most one pixel row/column). A pixel of
    intensity ``v`` sits at position ``v * (bins - 1) / 255`` on the bin axis and gives weight
    ``max(0, 1 - |position - k|)`` to bin ``k`` (linear interpolation between the two nearest
    bins). The per-block sums are two small matrix products with the block-membership matrices.

    Args:
        images: uint8 images (float images in [0, 1] are scaled to 0..255).
        grid: blocks per side, an int or ``(grid_h, grid_w)``; at most the image size.
        bins: histogram bins per block and channel (>= 2).
        chunk: images hashed per step (memory ~``chunk * C * bins * H * W * 4`` bytes).

    Returns:
        The hashes, one unit-norm row per image (float32), ordered (block row, block column,
        channel, bin).

    Shape:
        - images: :math:`(N, C, H, W)`
        - output: :math:`(N, grid_h \\cdot grid_w \\cdot C \\cdot bins)`
    """
    if images.ndim != 4:
        raise ConfigError(f"images must have shape (N, C, H, W), got {tuple(images.shape)}")
    if isinstance(bins, bool) or not isinstance(bins, int) or bins < 2:
        raise ConfigError(f"bins must be an int >= 2, got {bins!r}")
    gh, gw = _pair(grid, "grid")
    N, C, H, W = images.shape
    if gh > H or gw > W:
        raise ConfigError(f"grid {gh}x{gw} is finer than the {H}x{W} images; use grid <= {min(H, W)}")
    device = images.device
    rows = F.one_hot((torch.arange(H, device=device) * gh) // H, gh).T.float()  # (gh, H) block rows
    cols = F.one_hot((torch.arange(W, device=device) * gw) // W, gw).float()  # (W, gw) block columns
    centres = torch.arange(bins, device=device, dtype=torch.float32).view(1, 1, bins, 1, 1)
    scale = (bins - 1) / 255.0 if not images.is_floating_point() else float(bins - 1)
    out = torch.empty(N, gh * gw * C * bins, dtype=torch.float32, device=device)
    for start in range(0, N, chunk):
        x = images[start : start + chunk]
        n = x.shape[0]
        pos = x.to(torch.float32).mul_(scale).unsqueeze(2)  # (n, C, 1, H, W) position on the bin axis
        vote = (1.0 - (pos - centres).abs_()).clamp_(min=0.0)  # (n, C, bins, H, W) soft bin votes
        hist = rows @ vote @ cols  # (n, C, bins, gh, gw) per-block sums
        hist = hist.permute(0, 3, 4, 1, 2).reshape(n, -1)  # (n, gh*gw*C*bins)
        out[start : start + n] = F.normalize(hist, dim=1)
    return out


def _grey_thumbnails(images: torch.Tensor, size: int) -> torch.Tensor:
    """Grey float thumbnails in 0..255, at most ``size`` px a side (antialiased bilinear).

    Shape:
        - images: :math:`(N, C, H, W)`
        - output: :math:`(N, s, s)` with ``s = min(size, H, W)``
    """
    x = images.to(torch.float32)
    if images.is_floating_point() and x.numel() and float(x.max()) <= 1.0:
        x = x * 255.0
    if x.shape[1] > 1:
        x = x.mean(dim=1, keepdim=True)  # (N, 1, H, W)
    H, W = x.shape[-2:]
    s = min(size, H, W)
    if (H, W) != (s, s):
        x = F.interpolate(x, size=(s, s), mode="bilinear", antialias=True, align_corners=False)
    return x[:, 0]


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur with replicated borders. Shape: (N, H, W) -> (N, H, W)."""
    if sigma <= 0:
        return x
    r = max(1, int(round(3 * sigma)))
    t = torch.arange(-r, r + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-(t * t) / (2 * sigma * sigma))
    k = k / k.sum()
    H, W = x.shape[-2:]
    y = F.pad(x[:, None], (r, r, r, r), mode="replicate")[:, 0]  # (N, H+2r, W+2r)
    # weighted sums of shifted slices: a 1-channel conv2d is ~50x slower on the CPU (issue 24)
    y = sum(k[t] * y[:, :, t : t + W] for t in range(2 * r + 1))  # (N, H+2r, W)
    return sum(k[t] * y[:, t : t + H] for t in range(2 * r + 1))  # (N, H, W)


def _centred(x: torch.Tensor) -> torch.Tensor:
    """Grey images shifted (sub-pixel, bilinear) so that their intensity centroid is the centre.

    The mass of a pixel is its distance from the image's median grey level, less 10 % of the
    largest such distance (so that flat background and faint noise weigh nothing): the centroid
    moves with the content under shifts, and neither brightness nor contrast changes move it. A
    1-px-shifted copy of a thin stroke (a handwritten "1") is thus moved back onto its source
    before the descriptor is taken — without this its blurred thumbnail is 0.19 away in cosine
    distance, farther than hundreds of *distinct* "1"s (measured on real MNIST digits,
    ``bench/results/audit_calibration.json``).

    Shape: (N, s, s) -> (N, s, s)."""
    N, s, _ = x.shape
    med = x.flatten(1).median(dim=1).values.view(N, 1, 1)
    dev = (x - med).abs()
    mass = torch.relu(dev - 0.1 * dev.flatten(1).amax(dim=1).view(N, 1, 1))  # (N, s, s)
    total = mass.sum(dim=(1, 2)).clamp_(min=1e-6)
    pos = torch.arange(s, dtype=x.dtype, device=x.device)
    cy = (mass.sum(dim=2) * pos).sum(dim=1) / total  # (N,)
    cx = (mass.sum(dim=1) * pos).sum(dim=1) / total
    theta = torch.zeros(N, 2, 3, dtype=x.dtype, device=x.device)
    theta[:, 0, 0] = theta[:, 1, 1] = 1.0
    theta[:, 0, 2] = (cx - (s - 1) / 2) * 2 / s
    theta[:, 1, 2] = (cy - (s - 1) / 2) * 2 / s
    return _warp(x, theta)


@torch.no_grad()
def thumbnail_descriptor(
    images: torch.Tensor, *, size: int = DESCRIPTOR_SIZE, centre: bool = True, chunk: int = 1024
) -> torch.Tensor:
    """Candidate descriptor: a blurred ``size`` x ``size`` grey thumbnail, zero-mean, unit-norm.

    The image is reduced to ``4 * size`` px (antialiased), optionally moved so that its intensity
    centroid is the centre (:func:`_centred`), blurred (sigma = 2 px there, half a thumbnail
    cell), and averaged into ``size`` x ``size`` cells; the cosine similarity of two descriptors
    is the normalised cross-correlation of the thumbnails, so a brightness or contrast change
    does not move it, the centring undoes shifts and the blur keeps small crops close. A constant
    image has the zero vector (it is never a candidate).

    Args:
        images: uint8 images (float images in [0, 1] are scaled to 0..255); colour is averaged.
        size: cells per side (<= the image size).
        centre: centre every image on its intensity centroid first (default; ``False``: the
            plain thumbnail of issue 15).
        chunk: images per step.

    Returns:
        One row per image (float32).

    Shape:
        - images: :math:`(N, C, H, W)`
        - output: :math:`(N, size^2)`
    """
    if images.ndim != 4:
        raise ConfigError(f"images must have shape (N, C, H, W), got {tuple(images.shape)}")
    if isinstance(size, bool) or not isinstance(size, int) or size < 2:
        raise ConfigError(f"descriptor size must be an int >= 2, got {size!r}")
    size = min(size, *images.shape[-2:])
    out = torch.empty(images.shape[0], size * size, dtype=torch.float32, device=images.device)

    def describe(start: int) -> None:
        x = _grey_thumbnails(images[start : start + chunk], 4 * size)  # (n, s', s')
        if centre:
            x = _centred(x)
        x = _blur(x, 0.5 * x.shape[-1] / size)
        d = F.adaptive_avg_pool2d(x[:, None], size).flatten(1)  # (n, size^2)
        out[start : start + x.shape[0]] = F.normalize(d - d.mean(dim=1, keepdim=True), dim=1)

    _map_threads(describe, range(0, images.shape[0], chunk), images.device)
    return out


def _ncc(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Normalised cross-correlation per pair. Shape: (P, h, w) x2 -> (P,)."""
    a = a - a.mean(dim=(1, 2), keepdim=True)
    b = b - b.mean(dim=(1, 2), keepdim=True)
    return (a * b).sum(dim=(1, 2)) / torch.sqrt((a * a).sum(dim=(1, 2)) * (b * b).sum(dim=(1, 2)) + 1e-6)


def _match_histograms(b: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """``b``'s pixels replaced by ``a``'s values of the same rank (histogram matching per pair).

    Undoes any monotone intensity change of ``b`` — including brightness/contrast changes that
    clip at 0 or 255, which an affine NCC cannot — while keeping ``b``'s spatial structure.
    Shape: (P, s, s) x2 -> (P, s, s)."""
    va = a.flatten(1).sort(dim=1).values
    order = b.flatten(1).argsort(dim=1)  # (P, s*s): b's pixels, darkest first
    out = torch.empty_like(va).scatter_(1, order, va)  # the k-th darkest pixel of b gets a's k-th value
    return out.view_as(b)


def _warp(b: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """``b`` resampled through the affine maps ``theta`` (normalised coordinates, border padding).

    The sampling grid is ``F.affine_grid``'s (align_corners=False), built by broadcasting the
    six parameters over the pixel centres — several times faster than ``F.affine_grid`` (or a
    batched matrix product) on the CPU for many small images.

    Shape: b (P, s, s), theta (P, 2, 3) -> (P, s, s)."""
    P, H, W = b.shape
    ys = (torch.arange(H, dtype=b.dtype, device=b.device) * 2 + 1) / H - 1
    xs = (torch.arange(W, dtype=b.dtype, device=b.device) * 2 + 1) / W - 1
    X, Y = xs.view(1, 1, W), ys.view(1, H, 1)
    t = theta.to(b.dtype).view(P, 6, 1, 1)
    grid = torch.stack([t[:, 0] * X + t[:, 1] * Y + t[:, 2], t[:, 3] * X + t[:, 4] * Y + t[:, 5]], dim=3)  # (P, H, W, 2)
    return F.grid_sample(b[:, None], grid, mode="bilinear", padding_mode="border", align_corners=False)[:, 0]


#: the warp search of :func:`pixel_similarity`: coarse zooms and shifts (thumbnail px), then
#: Gauss-Newton steps within these bounds around the best coarse warp (:func:`_refine`).
_SHIFTS = (-1.0, -0.5, 0.0, 0.5, 1.0)
_COARSE = [(1.0, dy, dx) for dy in _SHIFTS for dx in _SHIFTS] + [(1 / 1.06, 0.0, 0.0), (1.06, 0.0, 0.0)]
_MAX_SCALE, _MAX_SHEAR, _MAX_SHIFT = 0.12, 0.04, 0.10  # refinement bounds (normalised coordinates)


def _aligned_ncc(a: torch.Tensor, b: torch.Tensor, steps: int, border: int,
                 refine_above: float | None = None) -> torch.Tensor:
    """Best NCC of ``a``'s interior with ``b`` warped by a small affine map. Shape: (P, s, s) x2 -> (P,).

    The coarse warps (:data:`_COARSE`) are scored together: the 25 shifts are slices of the
    border-replicated image (half-pixel ones the mean of two or four slices, what bilinear
    resampling gives), stacked with the two zooms into one ``(P, K, n)`` tensor whose NCCs with
    ``a`` are one batched matrix product. Only pairs whose coarse score is at least
    ``refine_above`` are refined (:func:`_refine`; the others keep the coarse score, a lower bound)."""
    P, s = a.shape[0], a.shape[-1]
    e = s - border
    a0 = a[:, border:e, border:e].reshape(P, -1)
    a0 = a0 - a0.mean(dim=1, keepdim=True)  # (P, n)
    b = b - b.mean(dim=(1, 2), keepdim=True)  # NCC ignores offsets; keeps the sums below well-conditioned
    pad = F.pad(b[:, None], (1, 1, 1, 1), mode="replicate")[:, 0]  # (P, s+2, s+2)
    whole = {(dy, dx): pad[:, 1 + dy + border : 1 + dy + e, 1 + dx + border : 1 + dx + e]
             for dy in (-1, 0, 1) for dx in (-1, 0, 1)}  # integer shifts, interior only
    views = []
    for z, dy, dx in _COARSE:
        if z == 1.0:
            ys, xs = {math.floor(dy), math.ceil(dy)}, {math.floor(dx), math.ceil(dx)}
            views.append(sum(whole[(y, x)] for y in ys for x in xs) / (len(ys) * len(xs)))
        else:
            th = torch.tensor([[z, 0.0, 2 * dx / s], [0.0, z, 2 * dy / s]], device=a.device).expand(P, 2, 3)
            views.append(_warp(b, th)[:, border:e, border:e])
    v = torch.stack(views, dim=1).reshape(P, len(views), -1)  # (P, K, n)
    # a0 is zero-mean, so <a0, v - mean(v)> = <a0, v>; |v - mean(v)|^2 = |v|^2 - n mean(v)^2
    var = torch.linalg.vector_norm(v, dim=2).square_() - v.sum(dim=2).square_() / v.shape[2]
    score = (v @ a0.unsqueeze(2))[:, :, 0] / torch.sqrt(
        (a0 * a0).sum(dim=1, keepdim=True) * var.clamp_(min=0.0) + 1e-6)  # (P, K)
    best, which = score.max(dim=1)
    if steps <= 0:
        return best
    thetas = torch.tensor([[[z, 0.0, 2 * dx / s], [0.0, z, 2 * dy / s]] for z, dy, dx in _COARSE], device=a.device)
    sel = (best >= refine_above).nonzero().flatten() if refine_above is not None else torch.arange(P, device=a.device)
    out = best.clone()
    if sel.numel():
        out[sel] = _refine(a[sel], b[sel], thetas[which[sel]], best[sel], border, steps)
    return out


def _refine(a: torch.Tensor, b: torch.Tensor, theta0: torch.Tensor, best: torch.Tensor, border: int,
            steps: int) -> torch.Tensor:
    """Gauss-Newton refinement of the affine warp of ``b`` onto ``a``'s interior; the best NCC seen.

    NCC is invariant to ``b``'s gain and offset, so the linearised problem
    ``a0 ~ alpha * (w0 + J delta)`` (zero-mean interior ``a0``, warped ``w0``, its Jacobian ``J``
    with respect to the six affine parameters from central differences of the warped image) is
    linear in ``(alpha, alpha * delta)``: one batched 7x7 least-squares solve per step, no autograd.
    The total correction stays within the bounds around the coarse warp ``theta0``; every step's
    warp is scored and the best score (at least the coarse one, ``best``) is returned. Issue 24:
    3 steps reach the score of 15 Adam steps (median difference 6e-5 on Fashion-MNIST pairs) at
    a fifth of the cost — the refinement set the 70,000-image audit's time.

    Shape: a, b (P, s, s), theta0 (P, 2, 3), best (P,) -> (P,)."""
    P, s = a.shape[0], a.shape[-1]
    e = s - border
    a0 = a[:, border:e, border:e].reshape(P, -1)
    a0 = a0 - a0.mean(dim=1, keepdim=True)  # (P, n)
    a_norm = (a0 * a0).sum(dim=1)
    pos = (torch.arange(border, e, dtype=a.dtype, device=a.device) * 2 + 1) / s - 1  # normalised centres
    X = pos.repeat(e - border).view(1, -1, 1)
    Y = pos.repeat_interleave(e - border).view(1, -1, 1)
    lim = torch.tensor([[_MAX_SCALE, _MAX_SHEAR, _MAX_SHIFT], [_MAX_SHEAR, _MAX_SCALE, _MAX_SHIFT]], device=a.device)
    eye = torch.eye(7, dtype=a.dtype, device=a.device)
    theta = theta0
    per_unit = s / 4.0  # central difference / 2 px, and 1 px = 2 / s normalised units
    for step in range(steps + 1):
        w = _warp(b, theta)  # (P, s, s)
        w0 = w[:, border:e, border:e].reshape(P, -1)
        w0 = w0 - w0.mean(dim=1, keepdim=True)
        best = torch.maximum(best, (a0 * w0).sum(dim=1) / torch.sqrt(a_norm * (w0 * w0).sum(dim=1) + 1e-6))
        if step == steps:
            break
        gx = ((w[:, border:e, border + 1 : e + 1] - w[:, border:e, border - 1 : e - 1]) * per_unit).reshape(P, -1, 1)
        gy = ((w[:, border + 1 : e + 1, border:e] - w[:, border - 1 : e - 1, border:e]) * per_unit).reshape(P, -1, 1)
        m = torch.cat([w0.unsqueeze(2), gx * X, gx * Y, gx, gy * X, gy * Y, gy], dim=2)  # (P, n, 7)
        m = m - m.mean(dim=1, keepdim=True)
        mt = m.transpose(1, 2)
        h = mt @ m  # (P, 7, 7)
        damp = 1e-4 * h.diagonal(dim1=1, dim2=2).mean(dim=1).view(P, 1, 1) + 1e-9
        z = torch.linalg.solve(h + damp * eye, mt @ a0.unsqueeze(2))[:, :, 0]  # (P, 7): alpha, alpha * delta
        alpha = z[:, :1]
        delta = torch.where(alpha > 1e-6, z[:, 1:] / alpha.clamp(min=1e-6), torch.zeros_like(z[:, 1:])).view(P, 2, 3)
        theta = theta0 + torch.maximum(torch.minimum(theta + delta - theta0, lim), -lim)
    return best


def pixel_similarity(
    images: torch.Tensor,
    i: torch.Tensor,
    j: torch.Tensor,
    *,
    size: int = VERIFY_SIZE,
    blur: float = 1.0,
    steps: int = 3,
    match_histograms: bool = True,
    refine_above: float | None = None,
    chunk: int = 256,
) -> torch.Tensor:
    """Verified similarity of image pairs ``(i[k], j[k])``: NCC after aligning ``j[k]`` to ``i[k]``.

    Both images become grey ``size`` x ``size`` thumbnails (antialiased), blurred with a Gaussian
    of ``blur`` px. Image ``j`` is warped onto image ``i``: a coarse search over shifts of -1..1 px
    in half-pixel steps and zooms ``1/1.06, 1.06``, then ``steps`` Gauss-Newton steps on a small affine
    correction (|scale - 1| <= 0.12, |shear| <= 0.04, |shift| <= 5 % of the side).
    The score is the normalised cross-correlation of the interior (a 1/16 border is left out),
    the best of the coarse and refined warps: 1 for copies up to an affine intensity change;
    lower the more the content differs. Two constant images score 1 when their levels are within
    2 grey levels, else 0 (NCC is undefined for them).

    Args:
        images: the images the indices point into (uint8, or float in [0, 1]).
        i, j: pair indices (int64).
        size: thumbnail side (at most the image size).
        blur: Gaussian sigma in thumbnail pixels (0 = none).
        steps: refinement steps (0 = coarse search only).
        match_histograms: first map ``j``'s grey levels onto ``i``'s by rank (undoes monotone
            intensity changes, also clipped ones).
        refine_above: refine only pairs whose coarse score reaches this (the rest keep their
            coarse score, a lower bound); ``None`` refines every pair. :func:`audit_splits` uses
            ``min_similarity - 0.05``: no planted copy of the calibration gained more than 0.044
            from the refinement (a cropped photo tile; measured again with the Gauss-Newton steps).
        chunk: pairs per batch (256: the batch of coarse warps stays in the CPU cache; 2,048 was
            3x slower per pair).

    Returns:
        Similarity per pair in [-1, 1] (float32, CPU).

    Shape:
        - images: :math:`(N, C, H, W)`
        - i, j, output: :math:`(P,)`
    """
    if images.ndim != 4:
        raise ConfigError(f"images must have shape (N, C, H, W), got {tuple(images.shape)}")
    if i.shape != j.shape:
        raise ConfigError(f"pair index tensors differ in shape: {tuple(i.shape)} vs {tuple(j.shape)}")
    out = torch.empty(i.numel(), dtype=torch.float32)
    if i.numel() == 0:
        return out
    used, inv = torch.unique(torch.cat([i, j]).cpu(), return_inverse=True)
    thumbs = _blur(_grey_thumbnails(images[used.to(images.device)], size), blur)  # (U, s, s)
    ii, jj = inv[: i.numel()], inv[i.numel():]
    s = thumbs.shape[-1]
    border = max(1, s // 16)
    flat = thumbs.flatten(1).std(dim=1) < 1.0  # (U,) constant thumbnails
    level = thumbs.flatten(1).mean(dim=1)

    def verify(start: int) -> None:
        a_idx, b_idx = ii[start : start + chunk].to(thumbs.device), jj[start : start + chunk].to(thumbs.device)
        a, b = thumbs[a_idx], thumbs[b_idx]
        if match_histograms:
            b = _match_histograms(b, a)
        score = _aligned_ncc(a, b, steps, border, refine_above)
        both_flat = flat[a_idx] & flat[b_idx]
        if bool(both_flat.any()):
            same = (level[a_idx] - level[b_idx]).abs() <= 2.0
            score = torch.where(both_flat, same.to(score.dtype), score)
        out[start : start + a_idx.numel()] = score.detach().cpu()

    _map_threads(verify, range(0, i.numel(), chunk), thumbs.device)
    return out
    # issue 24: one chunk per thread (each op single-threaded, the GIL released inside it) instead of
    # every small op split across threads — no barrier per op, which on a busy machine left threads
    # waiting (spinning) for a descheduled peer
    torch.set_num_threads(1)
    try:
        with ThreadPoolExecutor(threads, initializer=torch.set_num_threads, initargs=(1,)) as pool:
            list(pool.map(verify, starts))
    finally:
        torch.set_num_threads(threads)
    return out


def _cells(hashes: torch.Tensor, radius: float, max_cells: int = 48) -> tuple[list[torch.Tensor], list[tuple[int, int]]]:
    """Bucket rows into a grid on their two principal directions; list the cell pairs to compare.

    Two rows closer than ``radius`` (Euclidean) are closer than ``radius`` along any unit
    direction, so they fall into the same cell or two adjacent cells (cells are at least
    ``radius`` wide). Comparing each cell with itself and its forward neighbours therefore finds
    every pair exactly once and skips the rest.
    """
    sample = hashes[:: max(1, hashes.shape[0] // 4096)]
    _, _, vh = torch.linalg.svd(sample - sample.mean(0), full_matrices=False)
    proj = hashes @ vh[:2].T  # (N, 2)
    lo, hi = proj.amin(0), proj.amax(0)
    width = torch.clamp((hi - lo) / max_cells, min=radius)  # (2,) cells >= radius wide
    cell = ((proj - lo) / width).floor().to(torch.int64)  # (N, 2)
    ny = int(cell[:, 1].max()) + 1
    key = cell[:, 0] * ny + cell[:, 1]
    order = torch.argsort(key, stable=True)
    uniq, counts = torch.unique_consecutive(key[order], return_counts=True)
    members = list(torch.split(order, counts.tolist()))
    where = {int(k): g for g, k in enumerate(uniq.tolist())}
    pairs = []
    for g, k in enumerate(uniq.tolist()):
        cx, cy = divmod(k, ny)
        pairs.append((g, g))
        for dx, dy in ((0, 1), (1, -1), (1, 0), (1, 1)):
            if 0 <= cy + dy < ny and (h := where.get((cx + dx) * ny + cy + dy)) is not None:
                pairs.append((g, h))
    return [torch.sort(m).values for m in members], pairs


def _block_hits(s: torch.Tensor, cut: float, neighbours: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Positions ``(row, col)`` of the similarities above ``cut`` in one block; with ``neighbours``
    only those among the ``neighbours`` largest of their row or of their column (the global
    nearest neighbours of an image are among its nearest in every block). Shape: (r, c) -> (H,) x2."""
    if neighbours is None:
        hit_rows = (s.amax(dim=1) > cut).nonzero().flatten()
        if hit_rows.numel() == 0:
            return hit_rows, hit_rows
        ii, jj = (s[hit_rows] > cut).nonzero(as_tuple=True)
        return hit_rows[ii], jj
    r, c = s.shape
    # top-k along both axes of the whole block (no gathered copies of the rows/columns with a hit:
    # on self-similar data nearly all have one; 18 % less search time on 35,000 Fashion-MNIST images)
    v1, i1 = s.topk(min(neighbours, c), dim=1)  # (r, k): each row's nearest columns
    v0, i0 = s.topk(min(neighbours, r), dim=0)  # (k, c): each column's nearest rows
    ok1, ok0 = v1 > cut, v0 > cut
    rows = torch.cat([torch.arange(r, device=s.device).view(-1, 1).expand_as(i1)[ok1], i0[ok0]])
    cols = torch.cat([i1[ok1], torch.arange(c, device=s.device).view(1, -1).expand_as(i0)[ok0]])
    if rows.numel() == 0:
        return rows, cols
    key = torch.unique(rows * c + cols)
    return key // c, key % c


def _rank_per_image(ends: torch.Tensor, value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Order of ``ends`` grouped by image, smallest ``value`` first, and each entry's rank in its group.

    Shape: (M,) x2 -> (M,) x2."""
    by_value = torch.argsort(value, stable=True)
    order = by_value[torch.argsort(ends[by_value], stable=True)]
    grouped = ends[order]
    first = torch.ones_like(grouped, dtype=torch.bool)
    first[1:] = grouped[1:] != grouped[:-1]
    M = grouped.numel()
    rank = torch.arange(M) - torch.cummax(torch.where(first, torch.arange(M), 0), dim=0).values
    return order, rank


def _cap_neighbours(i: torch.Tensor, j: torch.Tensor, d: torch.Tensor, neighbours: int) -> torch.Tensor:
    """Bool mask of the pairs that are among the ``neighbours`` closest pairs of either image.

    Shape: (P,) x3 -> (P,)."""
    P = i.numel()
    order, rank = _rank_per_image(torch.cat([i, j]), torch.cat([d, d]))  # every pair from both ends
    keep = torch.zeros(2 * P, dtype=torch.bool)
    keep[order[rank < neighbours]] = True
    return keep[:P] | keep[P:]


@torch.no_grad()
def near_duplicate_pairs(
    hashes: torch.Tensor,
    threshold: float = DEFAULT_THRESHOLD,
    *,
    chunk: int = 4096,
    max_pairs: int = 5_000_000,
    prune: bool = True,
    neighbours: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """All pairs ``i < j`` whose cosine distance ``1 - <h_i, h_j>`` is below ``threshold``.

    Cosine similarities are computed as matrix products of ``chunk``-row blocks (never a Python
    loop over pairs). With ``prune`` the rows are first bucketed on their two principal
    directions (:func:`_cells`); only a cell with itself and with its neighbours is multiplied,
    which is exact (unit vectors at cosine distance ``t`` are ``sqrt(2 t)`` apart, and so are
    their projections at most) and skips most of the matrix.

    With ``neighbours`` (exact k-nearest-neighbour search within the threshold) a pair is kept
    only when one image is among the ``neighbours`` closest images of the other: on self-similar
    data (70,000 handwritten digits hold millions of pairs of similar "1"s within any useful
    threshold) the candidates are then at most ``neighbours * N`` — the bound that makes the
    per-pair verification affordable. Each block keeps the ``neighbours`` largest similarities
    of each row and column (an image's nearest neighbours overall are among its nearest in every
    block), and a last pass keeps the nearest ``neighbours`` of each image.

    Args:
        hashes: unit-norm rows (see :func:`block_histogram_hash`).
        threshold: cosine-distance cut in (0, 2).
        chunk: rows and columns per matrix product.
        max_pairs: stop with a ConfigError beyond this many pairs (a threshold that is too loose
            would otherwise fill the memory with pairs).
        prune: use the principal-direction cells (False: the whole upper triangle).
        neighbours: keep only the nearest ``neighbours`` per image (``None``: every pair).

    Returns:
        ``(i, j, distance)``: int64, int64 and float32 tensors sorted by ``(i, j)``.

    Shape:
        - hashes: :math:`(N, D)`
        - outputs: :math:`(P,)` each
    """
    if not (isinstance(threshold, (int, float)) and math.isfinite(threshold) and 0 < threshold < 2):
        raise ConfigError(f"threshold must be a cosine distance in (0, 2), got {threshold!r}")
    if neighbours is not None and (isinstance(neighbours, bool) or not isinstance(neighbours, int) or neighbours < 1):
        raise ConfigError(f"neighbours must be a positive int or None (every pair), got {neighbours!r}")
    N = hashes.shape[0]
    cut = 1.0 - float(threshold)  # similarity above which a pair is kept
    if prune and N > chunk:
        radius = math.sqrt(2.0 * threshold) * (1 + 1e-3) + 1e-6  # margin for float rounding
        groups, group_pairs = _cells(hashes, radius)
    else:
        groups, group_pairs = [torch.arange(N, device=hashes.device)], [(0, 0)]
    blocks = [(ga, gb, r0, c0) for ga, gb in group_pairs for r0 in range(0, len(groups[ga]), chunk)
              for c0 in range(r0 if ga == gb else 0, len(groups[gb]), chunk)]

    seen = [0]  # pairs found so far by all threads: past max_pairs the remaining blocks are skipped

    def search(block: tuple[int, int, int, int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
        if seen[0] > max_pairs:
            return None
        ga, gb, r0, c0 = block
        rows_a, rows_b = groups[ga][r0 : r0 + chunk], groups[gb][c0 : c0 + chunk]
        s = hashes[rows_a] @ hashes[rows_b].T  # (r, c) cosine similarities
        if ga == gb and c0 == r0:  # diagonal block: strict upper triangle only
            r = s.shape[0]
            s.masked_fill_(torch.ones(r, r, dtype=torch.bool, device=s.device).tril_(), -2.0)
        ii, jj = _block_hits(s, cut, neighbours)
        if ii.numel() == 0:
            return None
        seen[0] += ii.numel()
        gi, gj = rows_a[ii], rows_b[jj]
        return torch.minimum(gi, gj), torch.maximum(gi, gj), (1.0 - s[ii, jj]).clamp_(min=0.0)

    found_i, found_j, found_d = [], [], []
    total = 0
    for hit in _map_threads(search, blocks, hashes.device):
        if hit is None:
            continue
        found_i.append(hit[0])
        found_j.append(hit[1])
        found_d.append(hit[2])
        total += hit[0].numel()
        if total > max_pairs:
            raise ConfigError(
                f"more than {max_pairs:,} near-duplicate pairs at threshold {threshold}; the "
                "threshold is too loose for these images — lower it (e.g. --threshold "
                f"{threshold / 4:.4g}) or raise max_pairs"
            )
    if not found_i:
        empty = torch.empty(0, dtype=torch.int64)
        return empty, empty.clone(), torch.empty(0, dtype=torch.float32)
    i, j, d = torch.cat(found_i).cpu(), torch.cat(found_j).cpu(), torch.cat(found_d).cpu()
    if neighbours is not None:
        keep = _cap_neighbours(i, j, d, neighbours)
        i, j, d = i[keep], j[keep], d[keep]
    order = torch.argsort(i * N + j)
    return i[order], j[order], d[order]


@dataclass
class AuditResult:
    """The near-duplicate pairs of a dataset's splits and what they mean.

    Pair ``k`` links image ``index_a[k]`` of split ``splits[split_a[k]]`` to image
    ``index_b[k]`` of ``splits[split_b[k]]`` (positions inside each split), with
    ``split_a <= split_b`` in :data:`SPLIT_ORDER`.

    Attributes:
        splits: the split names, in :data:`SPLIT_ORDER` order.
        sizes: images per split.
        split_a, index_a, split_b, index_b: the pairs (split numbers index ``splits``).
        distance: cosine distance of each pair's descriptors.
        label_a, label_b: the compared labels (class, or 1 = has a mask / 0 = empty).
        label_kind: ``"class"`` or ``"has_mask"``.
        threshold, grid, bins: the settings used (grid and bins: histogram descriptor only).
        seconds: wall time of description, search and verification.
        fingerprints: per split, the fingerprint of its images and labels (see
            :func:`archlab.data.splits.split_fingerprint`).
        similarity: verified pixel similarity of each pair (:func:`pixel_similarity`); ``None``
            without verification.
        min_similarity: the verification cut (``None`` without verification).
        descriptor: ``"thumbnail"`` or ``"histogram"``.
        candidates: pairs found by the descriptor search, before verification.
        neighbours: candidates per image of the search (``None``: every pair in the threshold).
        crowd_ratio: the ratio test's cut (:func:`crowd_test`; ``None``: not applied).
        stage_seconds: wall time of each stage (``prepare``, ``describe``, ``search``,
            ``verify``: verification and the ratio test); they add up to ``seconds``.
        stage_cpu_seconds: CPU time of the process (all threads) in each stage — on a shared
            machine the wall time depends on the other jobs, this much less.

    Shape:
        - split_a, index_a, split_b, index_b, label_a, label_b: :math:`(P,)` int64
        - distance, similarity: :math:`(P,)` float32
    """

    splits: tuple[str, ...]
    sizes: dict[str, int]
    split_a: torch.Tensor
    index_a: torch.Tensor
    split_b: torch.Tensor
    index_b: torch.Tensor
    distance: torch.Tensor
    label_a: torch.Tensor
    label_b: torch.Tensor
    label_kind: str
    threshold: float
    grid: tuple[int, int]
    bins: int
    seconds: float
    fingerprints: dict[str, str] = field(default_factory=dict)
    similarity: torch.Tensor | None = None
    min_similarity: float | None = None
    descriptor: str = "histogram"
    candidates: int | None = None
    neighbours: int | None = None
    crowd_ratio: float | None = None
    stage_seconds: dict[str, float] = field(default_factory=dict)
    stage_cpu_seconds: dict[str, float] = field(default_factory=dict)

    @property
    def contradicting(self) -> torch.Tensor:
        """Bool mask of pairs whose labels differ. Shape: :math:`(P,)`."""
        return self.label_a != self.label_b

    @property
    def leak(self) -> torch.Tensor:
        """Bool mask of pairs across two splits. Shape: :math:`(P,)`."""
        return self.split_a != self.split_b

    def __len__(self) -> int:
        return int(self.distance.numel())

    def rows(self) -> list[dict[str, Any]]:
        """One dict per pair (the CSV rows), sorted by distance."""
        order = torch.argsort(self.distance, stable=True).tolist()
        sa, ia, sb, ib = (t.tolist() for t in (self.split_a, self.index_a, self.split_b, self.index_b))
        la, lb, d = self.label_a.tolist(), self.label_b.tolist(), self.distance.tolist()
        sim = self.similarity.tolist() if self.similarity is not None else None
        out = []
        for k in order:
            a, b = self.splits[sa[k]], self.splits[sb[k]]
            row = {
                "kind": "within" if a == b else "leak",
                "split_a": a,
                "index_a": ia[k],
                "split_b": b,
                "index_b": ib[k],
                "distance": round(d[k], 7),
                f"{self.label_kind}_a": la[k],
                f"{self.label_kind}_b": lb[k],
                "contradicting": la[k] != lb[k],
            }
            if sim is not None:
                row["similarity"] = round(sim[k], 6)
            out.append(row)
        return out

    def summary(self) -> dict[str, Any]:
        """Counts per kind of pair, images involved and the cleaned split sizes."""
        counts: dict[str, int] = {}
        for a in range(len(self.splits)):
            for b in range(a, len(self.splits)):
                sel = (self.split_a == a) & (self.split_b == b)
                key = f"within_{self.splits[a]}" if a == b else f"leak_{self.splits[a]}_{self.splits[b]}"
                counts[key] = int(sel.sum())
        keep = clean_split_indices(self)
        return {
            "descriptor": self.descriptor,
            "threshold": self.threshold,
            "min_similarity": self.min_similarity,
            "candidates": self.candidates,
            "neighbours": self.neighbours,
            "crowd_ratio": self.crowd_ratio,
            "grid": list(self.grid),
            "bins": self.bins,
            "label_kind": self.label_kind,
            "sizes": dict(self.sizes),
            "pairs": len(self),
            "pair_counts": counts,
            "contradicting_pairs": int(self.contradicting.sum()),
            "leak_pairs": int(self.leak.sum()),
            "images_in_pairs": {s: int(self._involved(k).numel()) for k, s in enumerate(self.splits)},
            "kept": {s: len(v) for s, v in keep.items()},
            "dropped": {s: self.sizes[s] - len(v) for s, v in keep.items()},
            "seconds": round(self.seconds, 3),
            "stage_seconds": {k: round(v, 3) for k, v in self.stage_seconds.items()},
            "stage_cpu_seconds": {k: round(v, 3) for k, v in self.stage_cpu_seconds.items()},
        }

    def _involved(self, split: int) -> torch.Tensor:
        return torch.unique(torch.cat([self.index_a[self.split_a == split], self.index_b[self.split_b == split]]))


def _labels_of(ds: ImageDataset) -> torch.Tensor:
    if ds.masks is not None:  # segmentation: the seed's contradiction is "mask" vs "no mask"
        return ds.masks.flatten(1).any(dim=1).to(torch.int64).cpu()
    return ds.labels.cpu()


def audit_splits(
    splits: Splits | Mapping[str, ImageDataset],
    *,
    threshold: float | None = None,
    grid: int | Sequence[int] = 7,
    bins: int = 8,
    chunk: int = 4096,
    max_pairs: int = 5_000_000,
    device: str | torch.device = "cpu",
    descriptor: str = "thumbnail",
    verify: bool = True,
    min_similarity: float = DEFAULT_MIN_SIMILARITY,
    neighbours: int | None = DEFAULT_NEIGHBOURS,
    crowd_ratio: float | None = DEFAULT_CROWD_RATIO,
) -> AuditResult:
    """Find near-duplicate pairs inside and across the splits of a dataset.

    All splits are described together and searched once (the same pair is never counted twice);
    with ``verify`` every candidate pair is then checked at the pixel level
    (:func:`pixel_similarity`) and kept when its similarity is at least ``min_similarity``.

    Args:
        splits: a :class:`Splits` or a mapping of split names (``train``/``val``/``test``) to
            datasets of equal channels and image size.
        threshold: cosine-distance cut of the descriptor search; ``None`` = :data:`DEFAULT_THRESHOLD`
            for the thumbnail descriptor, :data:`HISTOGRAM_THRESHOLD` for the histogram hash.
        grid: blocks per side of the histogram hash.
        bins: histogram bins per block.
        chunk: rows per matrix product of the search.
        max_pairs: see :func:`near_duplicate_pairs`.
        device: where the hashes and similarity blocks are computed (``"cuda"`` when present
            speeds up the matrix products; the pairs come back on the CPU).
        descriptor: ``"thumbnail"`` (:func:`thumbnail_descriptor`, default) or ``"histogram"``
            (:func:`block_histogram_hash`, the seed's hash).
        verify: verify candidate pairs at the pixel level (``False``: the descriptor decides).
        min_similarity: verification cut (:data:`DEFAULT_MIN_SIMILARITY`).
        neighbours: candidates per image: its nearest ``neighbours`` images within the threshold
            (:data:`DEFAULT_NEIGHBOURS`; ``None``: every pair within the threshold, as before
            issue 24 — slow on self-similar data). A group of more than ``neighbours`` copies of
            one image is still found, as a chain of pairs rather than every pair of it.
        crowd_ratio: the ratio test of :func:`crowd_test` (:data:`DEFAULT_CROWD_RATIO`; ``None``:
            the similarity cut alone, as before issue 24). Only with ``verify``.

    Returns:
        The :class:`AuditResult`.

    Raises:
        ConfigError: unknown split names, splits of different image shapes, bad settings.
    """
    parts = (
        {"train": splits.train, "val": splits.val, "test": splits.test} if isinstance(splits, Splits) else dict(splits)
    )
    unknown = sorted(set(parts) - set(SPLIT_ORDER))
    if unknown or not parts:
        raise ConfigError(f"audit_splits takes splits named {SPLIT_ORDER}, got {sorted(parts)}")
    names = tuple(s for s in SPLIT_ORDER if s in parts)
    shapes = {s: tuple(parts[s].images.shape[1:]) for s in names}
    if len(set(shapes.values())) > 1:
        raise ConfigError(f"the splits hold images of different shapes {shapes}; resize them to one size first")
    seg = [parts[s].masks is not None for s in names]
    if any(seg) and not all(seg):
        raise ConfigError("some splits have masks and others not; audit one kind of dataset")
    if descriptor not in ("thumbnail", "histogram"):
        raise ConfigError(f"descriptor must be 'thumbnail' or 'histogram', got {descriptor!r}")
    if threshold is None:
        threshold = DEFAULT_THRESHOLD if descriptor == "thumbnail" else HISTOGRAM_THRESHOLD
    if verify and not (isinstance(min_similarity, (int, float)) and -1.0 <= min_similarity <= 1.0):
        raise ConfigError(f"min_similarity must be a correlation in [-1, 1], got {min_similarity!r}")
    t0, c0 = time.perf_counter(), time.process_time()
    images = torch.cat([parts[s].images for s in names])  # (N, C, H, W) uint8
    labels = torch.cat([_labels_of(parts[s]) for s in names])  # (N,)
    owner = torch.cat([torch.full((len(parts[s]),), k, dtype=torch.int64) for k, s in enumerate(names)])
    offset = torch.cat([torch.arange(len(parts[s])) for s in names])  # position inside its split
    on_device = images.to(device)
    t_describe, c_describe = time.perf_counter(), time.process_time()
    if descriptor == "thumbnail":
        hashes = thumbnail_descriptor(on_device)
    else:
        hashes = block_histogram_hash(on_device, grid=grid, bins=bins)
    if crowd_ratio is not None and not (isinstance(crowd_ratio, (int, float)) and 0 < crowd_ratio <= 1):
        raise ConfigError(f"crowd_ratio must be in (0, 1] or None (no ratio test), got {crowd_ratio!r}")
    t_search, c_search = time.perf_counter(), time.process_time()
    i, j, d = near_duplicate_pairs(hashes, threshold, chunk=chunk, max_pairs=max_pairs, neighbours=neighbours)
    candidates = int(i.numel())
    similarity = None
    t_verify, c_verify = time.perf_counter(), time.process_time()
    if verify:
        similarity = pixel_similarity(on_device, i, j, refine_above=min_similarity - REFINE_MARGIN)
        keep = similarity >= min_similarity
        if crowd_ratio is not None:
            keep &= crowd_test(i, j, similarity, crowd_ratio)
        i, j, d, similarity = i[keep], j[keep], d[keep], similarity[keep]
    seconds, c_end = time.perf_counter() - t0, time.process_time()
    stages = {"prepare": t_describe - t0, "describe": t_search - t_describe, "search": t_verify - t_search,
              "verify": t0 + seconds - t_verify}
    stages_cpu = {"prepare": c_describe - c0, "describe": c_search - c_describe, "search": c_verify - c_search,
                  "verify": c_end - c_verify}
    gh, gw = _pair(grid, "grid")
    return AuditResult(
        splits=names,
        sizes={s: len(parts[s]) for s in names},
        split_a=owner[i],
        index_a=offset[i],
        split_b=owner[j],
        index_b=offset[j],
        distance=d,
        label_a=labels[i],
        label_b=labels[j],
        label_kind="has_mask" if all(seg) else "class",
        threshold=float(threshold),
        grid=(gh, gw),
        bins=bins,
        seconds=seconds,
        fingerprints={s: split_fingerprint(parts[s]) for s in names},
        similarity=similarity,
        min_similarity=float(min_similarity) if verify else None,
        descriptor=descriptor,
        candidates=candidates,
        neighbours=neighbours,
        crowd_ratio=float(crowd_ratio) if verify and crowd_ratio is not None else None,
        stage_seconds=stages,
        stage_cpu_seconds=stages_cpu,
    )


def crowd_test(
    i: torch.Tensor, j: torch.Tensor, similarity: torch.Tensor, ratio: float, *, copy_similarity: float = COPY_SIMILARITY
) -> torch.Tensor:
    """Bool mask of the verified pairs that stand out from their images' other neighbours.

    Handwriting is self-similar: two different writers' "1"s of the same slant correlate at
    0.997 after alignment, as closely as a JPEG re-encoding of a photograph — no similarity cut
    separates both (issue 24: 1,411 pairs of distinct MNIST digits flagged at 0.996). What sets
    a copy apart is how much closer it is than the image's *other* neighbours: Lowe's ratio test
    (SIFT, IJCV 2004), on the verification residual ``r = 1 - similarity``. For each end of a
    pair, its *reference* is the smallest residual among its other candidate pairs (infinite if it
    has none). A pair passes when ``r <= ratio * min(reference_i, reference_j)`` — both images'
    next-best matches are clearly worse — or when ``similarity >= copy_similarity`` (a copy so
    close that no distinct neighbour competes; it keeps groups of three or more copies of one
    image, whose members are each other's next-best match).

    Args:
        i, j: candidate pairs (all of them, before the similarity cut).
        similarity: :func:`pixel_similarity` of each pair.
        ratio: the largest residual, as a fraction of the next-best residual, of a copy.
        copy_similarity: similarity at or above which the ratio is not asked.

    Returns:
        ``(P,)`` bool.

    Shape:
        - i, j, similarity, output: :math:`(P,)`
    """
    P = i.numel()
    if P == 0:
        return torch.zeros(0, dtype=torch.bool)
    n = int(torch.maximum(i.max(), j.max())) + 1
    r = (1.0 - similarity.to(torch.float32)).clamp_(min=0.0)
    ends, res = torch.cat([i, j]), torch.cat([r, r])  # (2P,) every pair seen from both ends
    order, rank = _rank_per_image(ends, res)  # grouped by image, best first
    grouped = ends[order]
    best1 = torch.full((n,), math.inf)
    best2 = torch.full((n,), math.inf)
    best1[grouped[rank == 0]] = res[order[rank == 0]]
    best2[grouped[rank == 1]] = res[order[rank == 1]]
    ref_i = torch.where(r <= best1[i], best2[i], best1[i])  # the best *other* pair of i
    ref_j = torch.where(r <= best1[j], best2[j], best1[j])
    return (r <= ratio * torch.minimum(ref_i, ref_j)) | (similarity >= copy_similarity)


def clean_split_indices(result: AuditResult) -> dict[str, list[int]]:
    """Positions kept per split after dropping contradictions, leaks and duplicate copies.

    The policy is in the module docstring: contradicting pairs lose both images; a leak loses the
    copy in the less important split (test > val > train); a duplicate inside a split loses the
    copy at the larger position unless the other copy is already dropped.

    Returns:
        ``{split: sorted kept positions}``.
    """
    drop = {k: torch.zeros(result.sizes[s], dtype=torch.bool) for k, s in enumerate(result.splits)}
    contra = result.contradicting
    for side in ((result.split_a, result.index_a), (result.split_b, result.index_b)):
        for k in drop:
            sel = contra & (side[0] == k)
            drop[k][side[1][sel]] = True
    # the rest, in (split, position) order so the outcome does not depend on pair order
    rest = (~contra).nonzero().flatten().tolist()
    sa, ia, sb, ib = (t.tolist() for t in (result.split_a, result.index_a, result.split_b, result.index_b))
    for k in rest:
        if drop[sa[k]][ia[k]] or drop[sb[k]][ib[k]]:
            continue  # one copy is gone already: the other has no twin left
        if sa[k] != sb[k]:
            drop[sa[k]][ia[k]] = True  # leak: split_b is the more important split, keep its copy
        else:
            drop[sb[k]][ib[k]] = True  # inside one split: index_b > index_a, keep the first copy
    return {s: (~drop[k]).nonzero().flatten().tolist() for k, s in enumerate(result.splits)}


def write_audit(
    result: AuditResult, out_dir: str | Path, *, data: Mapping[str, Any] | None = None
) -> dict[str, Path]:
    """Write ``pairs.csv``, ``summary.json`` and ``clean_split.json`` into ``out_dir``.

    Args:
        result: the audit.
        out_dir: output folder (created).
        data: the data config the splits came from (stored in the clean split for provenance;
            :func:`archlab.data.splits.apply_clean_split` checks the split fingerprints).

    Returns:
        ``{"pairs": ..., "summary": ..., "clean_split": ...}`` paths.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = result.rows()
    pairs_path = out / "pairs.csv"
    fields = [
        "kind", "split_a", "index_a", "split_b", "index_b", "distance",
        f"{result.label_kind}_a", f"{result.label_kind}_b", "contradicting",
    ] + (["similarity"] if result.similarity is not None else [])
    with open(pairs_path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)
    summary = {"data": dict(data) if data is not None else None, **result.summary()}
    summary_path = out / "summary.json"
    summary_path.write_text(json.dumps(summary, indent=2, sort_keys=True))
    keep = clean_split_indices(result)
    clean = {
        "format": CLEAN_SPLIT_FORMAT,
        "data": dict(data) if data is not None else None,
        "threshold": result.threshold,
        "descriptor": result.descriptor,
        "min_similarity": result.min_similarity,
        "neighbours": result.neighbours,
        "crowd_ratio": result.crowd_ratio,
        "grid": list(result.grid),
        "bins": result.bins,
        "sizes": dict(result.sizes),
        "fingerprints": dict(result.fingerprints),
        "keep": keep,
    }
    clean_path = out / "clean_split.json"
    clean_path.write_text(json.dumps(clean))
    return {"pairs": pairs_path, "summary": summary_path, "clean_split": clean_path}
