"""bench/engine.py keeps working: the --tiny smoke run trains both sides and writes a result."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))


def test_engine_bench_tiny(tmp_path):
    out = tmp_path / "engine.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "engine.py"), "--tiny", "--threads", "1", "--out", str(out)],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads(out.read_text())
    assert data["name"] == "engine" and data["tiny"] is True
    assert set(data["cases"]) == {"mnist_cnn_digits28_spinal_mnist", "mini_vgg_synthetic32_cifar"}
    for case in data["cases"].values():
        assert set(case["timing"]) == {"archlab", "archlab_contiguous", "reference_workers0", "reference_workers2"}
        for side in case["test_accuracy"].values():
            assert 0.0 <= side["mean"] <= 1.0 and len(side["per_round"]) == 1
        assert case["speedup"] > 0 and case["target"] == 2.0 and case["met"] == (case["speedup"] >= 2.0)
        assert case["timing"]["archlab"]["images_per_s"] > 0
        assert case["archlab_choice"] == {"channels_last": True, "compile": False, "amp": False}
    assert "torch" in data["hardware"]


def test_reference_augmentation_matches_the_preset_distribution():
    """The reference's PIL augmentation draws from the same distributions as the batched preset."""
    import numpy as np
    import torch
    from engine import AugmentedImages, SampleAugment

    from archlab.data import build_augment

    g = torch.Generator().manual_seed(0)
    x = torch.zeros(256, 1, 24, 24)
    x[:, :, 6:18, 8:14] = torch.rand(256, 1, 1, 1, generator=g) * 0.5 + 0.5
    x = (x * 255).round() / 255  # representable as uint8
    u8 = (x * 255).round().to(torch.uint8)
    for preset in ("cifar", "spinal_mnist"):
        torch.manual_seed(0)
        with torch.no_grad():
            batched = build_augment(preset, image_size=(24, 24), in_chans=1)(x)
        ds = AugmentedImages(u8, torch.zeros(256, dtype=torch.long), [0.0], [1.0],
                             SampleAugment(preset, 24, 24, np.random.default_rng(0)))
        single = torch.stack([ds[i][0] for i in range(len(ds))])
        assert single.shape == x.shape and single.dtype == torch.float32
        # same mass kept, same amount of change, same share of empty pixels (within sampling noise)
        for stat in (lambda t: t.mean(), lambda t: (t - x).abs().mean(), lambda t: (t < 1e-3).float().mean()):
            a, b = float(stat(batched)), float(stat(single))
            assert abs(a - b) <= 0.1 * max(abs(a), 1e-3), (preset, a, b)
    rgb = AugmentedImages(torch.randint(0, 256, (2, 3, 8, 8), dtype=torch.uint8), torch.tensor([0, 1]),
                          [0.5] * 3, [0.25] * 3, None)
    img, label = rgb[1]
    assert img.shape == (3, 8, 8) and label == 1  # channels first, normalized, no augmentation
    want = (torch.as_tensor(rgb.images[1]).permute(2, 0, 1).float() / 255 - 0.5) / 0.25
    assert torch.allclose(img, want, atol=1e-5)
