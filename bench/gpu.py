"""The GPU benchmark: one command, one GPU, at most ~8 minutes (SPEC §9, issue 16).

    python bench/gpu.py                 # on a machine with a CUDA GPU -> bench/results/gpu.json
    python bench/gpu.py --tiny          # the same code path end to end on the CPU, tiny sizes (CI)

Four parts, each timed with warm-up excluded and the device synchronised:

1. ``efficiency``: the engine (data resident on the GPU, defaults resolved by
   :func:`archlab.train.speed.resolve_speed_options` — on CUDA: bf16 AMP where supported,
   channels_last for conv nets, cudnn.benchmark) vs the pure-compute limit (fwd + bwd + optimizer
   on one resident batch, same model and format, :func:`_timing.time_train_steps`),
   for ``mnist_cnn`` and CIFAR-size ``mini_vgg`` (as in ``bench/efficiency.py``).
2. ``formats``: per-step time of ``mini_vgg`` and ResNet-18 (CIFAR stem) in fp32 / bf16 AMP x
   contiguous / channels_last: the AMP and channels_last gains on this GPU.
3. ``vmap_seeds``: 5 and 10 seeds of ``mnist_cnn`` and ``mini_vgg`` trained together
   (:func:`archlab.train.vmap_seeds.train_seeds`) vs the same seeds one after another with the
   engine, same config (contiguous, as vmap trains), with the mean and largest difference of the
   per-seed test accuracy (dropout draws differ between the two paths, so the results are equal in
   distribution, not bit for bit).
4. ``study``: wall time of a CIFAR-size mini-VGG study (synthetic 32x32 RGB, the seed-002 variants
   plain / norm_conv / 4_rot_1, 2 seeds) with :func:`archlab.study.runner.run_study`.

Writes ``bench/results/gpu.json`` (``gpu.tiny.json`` for ``--tiny``); ``bench/readme_table.py``
adds its rows to the README when the file exists.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import parse_args, sync, write_result  # noqa: E402
from _timing import time_train_steps  # noqa: E402
from efficiency import engine_rates, limit_rate  # noqa: E402

from archlab import create_model  # noqa: E402
from archlab.train.config import TrainConfig  # noqa: E402
from archlab.train.engine import train  # noqa: E402
from archlab.train.run import prepare_data, resolve_device  # noqa: E402
from archlab.train.speed import resolve_speed_options  # noqa: E402
from archlab.train.vmap_seeds import train_seeds  # noqa: E402

FULL = {
    "mnist_samples": 20000, "vgg_samples": 20000, "epochs": 2, "rounds": 3, "format_batch": 256, "format_steps": 30,
    "vmap_samples": 6000, "vmap_epochs": 2, "seeds": (5, 10), "study_samples": 12000, "study_epochs": 3,
}  # fmt: skip
TINY = {
    "mnist_samples": 64, "vgg_samples": 64, "epochs": 1, "rounds": 1, "format_batch": 8, "format_steps": 1,
    "vmap_samples": 90, "vmap_epochs": 1, "seeds": (2,), "study_samples": 90, "study_epochs": 1, "batch": 8,
}  # fmt: skip


def _synthetic(n: int, size: int, channels: int, classes: int = 10) -> dict[str, Any]:
    return {"name": "synthetic", "options": {"num_samples": n, "image_size": size, "channels": channels,
                                             "num_classes": classes}}


def efficiency(device: str, p: dict[str, Any]) -> dict[str, Any]:
    cases = {
        "mnist_cnn": {"data": _synthetic(p["mnist_samples"], 28, 1), "model": {"name": "mnist_cnn"}, "batch_size": 64},
        "mini_vgg": {"data": _synthetic(p["vgg_samples"], 32, 3), "model": {"name": "mini_vgg"}, "batch_size": 128},
    }
    out = {}
    for name, spec in cases.items():
        spec = {**spec, "batch_size": p.get("batch", spec["batch_size"])}
        config = TrainConfig.model_validate({**spec, "epochs": p["epochs"], "device": device,
                                             "optim": {"name": "adam", "lr": 0.001}})
        splits = prepare_data(config)
        config = resolve_speed_options(config, splits)
        rows = []
        for r in range(p["rounds"] + 1):  # round 0 warms up (cuDNN autotuning, allocator)
            eng = engine_rates(config.model_copy(update={"seed": r}), splits)
            lim = limit_rate(config, splits, 20 if p["rounds"] > 1 else 3, device=device)
            engine, e2e, limit = eng["median"], eng["end_to_end"], lim["median"]
            if r > 0:
                rows.append({"engine_images_per_s": engine, "limit_images_per_s": limit, "efficiency": engine / limit,
                             "end_to_end_images_per_s": e2e})
        eff = [row["efficiency"] for row in rows]
        out[name] = {
            "config": config.model_dump(mode="json"), "rounds": rows, "efficiency": statistics.median(eff),
            "efficiency_min": min(eff), "efficiency_max": max(eff),
            "engine_images_per_s": statistics.median(r["engine_images_per_s"] for r in rows),
            "limit_images_per_s": statistics.median(r["limit_images_per_s"] for r in rows),
        }  # fmt: skip
        print(f"efficiency {name}: {out[name]['efficiency']:.3f} (engine {out[name]['engine_images_per_s']:.0f} img/s, "
              f"limit {out[name]['limit_images_per_s']:.0f} img/s)", flush=True)
    return out


def formats(device: str, p: dict[str, Any]) -> dict[str, Any]:
    dev = torch.device(device)
    amp_ok = dev.type == "cuda"
    models = {"mini_vgg": ("mini_vgg", {}), "resnet18_cifar": ("resnet18", {"cifar_stem": True})}
    out = {}
    B = p["format_batch"]
    x = torch.randn(B, 3, 32, 32, device=dev)
    y = torch.randint(0, 10, (B,), device=dev)
    for name, (arch, kw) in models.items():
        ms = {}
        for amp in (False, True) if amp_ok else (False,):
            for cl in (False, True):
                torch.manual_seed(0)
                model = create_model(arch, num_classes=10, in_chans=3, input_size=(32, 32), **kw)
                s = time_train_steps(model, x, y, steps=p["format_steps"], warmup=3, channels_last=cl, amp=amp)
                ms[f"{'bf16' if amp else 'fp32'}_{'channels_last' if cl else 'contiguous'}"] = s * 1e3
        base = ms["fp32_contiguous"]
        out[name] = {
            "batch": B, "ms_per_step": ms,
            "gain_channels_last_fp32": base / ms["fp32_channels_last"],
            **({"gain_amp_contiguous": base / ms["bf16_contiguous"],
                "gain_amp_channels_last": base / ms["bf16_channels_last"]} if amp_ok else {}),
        }  # fmt: skip
        print(f"formats {name}: " + ", ".join(f"{k} {v:.2f} ms" for k, v in ms.items()), flush=True)
    return out


def vmap_seeds(device: str, p: dict[str, Any]) -> dict[str, Any]:
    models = {"mnist_cnn": (_synthetic(p["vmap_samples"], 28, 1), 64), "mini_vgg": (_synthetic(p["vmap_samples"], 32, 3), 128)}
    out = {}
    for name, (data, bs) in models.items():
        bs = p.get("batch", bs)
        config = TrainConfig.model_validate({"data": data, "model": {"name": name}, "epochs": p["vmap_epochs"],
                                             "batch_size": bs, "device": device, "channels_last": False,
                                             "optim": {"name": "adam", "lr": 0.001}})
        splits = prepare_data(config)
        train_seeds(config, [0], splits=splits)  # warm-up (kernels, allocator)
        for k in p["seeds"]:
            seeds = list(range(100, 100 + k))
            sync(device)
            t0 = time.perf_counter()
            together, _ = train_seeds(config, seeds, splits=splits)
            sync(device)
            t_together = time.perf_counter() - t0
            t0 = time.perf_counter()
            one_by_one = [train(config.model_copy(update={"seed": s}), splits=splits) for s in seeds]
            sync(device)
            t_seq = time.perf_counter() - t0
            acc_t = [r.test["accuracy"] for r in together]
            acc_s = [r.test["accuracy"] for r in one_by_one]
            out[f"{name}_{k}_seeds"] = {
                "seeds": k, "together_s": t_together, "one_after_another_s": t_seq, "speedup": t_seq / t_together,
                "mean_test_accuracy": {"together": statistics.fmean(acc_t), "one_after_another": statistics.fmean(acc_s)},
                "max_abs_test_accuracy_diff": max(abs(a - b) for a, b in zip(acc_t, acc_s)),
            }  # fmt: skip
            print(f"vmap {name} x{k}: together {t_together:.1f} s, one after another {t_seq:.1f} s "
                  f"-> {t_seq / t_together:.2f}x", flush=True)
    return out


def study(device: str, p: dict[str, Any]) -> dict[str, Any]:
    from archlab.study.config import Study
    from archlab.study.runner import run_study

    spec = {
        "name": "gpu_bench", "data": {**_synthetic(p["study_samples"], 32, 3), "augment": "cifar"},
        "model": {"name": "mini_vgg"}, "seeds": [0, 1], "baseline": "plain",
        "train": {"epochs": p["study_epochs"], "batch_size": 32, "device": device, "optim": {"name": "adam", "lr": 0.001}},
        "variants": {"plain": {}, "norm_conv": {"model": {"kwargs": {"norm_conv": True}}},
                     "4_rot_1": {"model": {"kwargs": {"rot_convs": 1, "rotations": 4}}}},
    }  # fmt: skip
    s = Study.model_validate(spec)
    with tempfile.TemporaryDirectory(prefix="archlab-bench-gpu-") as tmp:
        t0 = time.perf_counter()
        store = run_study(s, Path(tmp) / "study", workers=1, report=False)
        seconds = time.perf_counter() - t0
        rows = store.rows()
        store.close()
    acc = statistics.fmean(r.test["accuracy"] for r in rows) if rows else float("nan")
    print(f"study: {len(rows)} runs in {seconds:.1f} s", flush=True)
    return {"study": spec, "runs": len(rows), "wall_s": seconds, "mean_test_accuracy": acc,
            "train_images_per_run": int(p["study_samples"] * 0.7) * p["study_epochs"]}


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    device = args.device if args.tiny or args.device != "cpu" else "cuda"
    if resolve_device(device).type != "cuda" and not args.tiny:
        raise SystemExit("bench/gpu.py needs a CUDA GPU (or --tiny for the CPU smoke run)")
    torch.set_num_threads(args.threads)
    if resolve_device(device).type == "cuda":
        torch.backends.cudnn.benchmark = True  # as the engine sets it on CUDA (also for the limit's steps)
    p = TINY if args.tiny else FULL
    t0 = time.perf_counter()
    parts: dict[str, Any] = {}
    for name, fn in (("efficiency", efficiency), ("formats", formats), ("vmap_seeds", vmap_seeds), ("study", study)):
        t = time.perf_counter()
        parts[name] = fn(device, p)
        parts[name + "_seconds"] = time.perf_counter() - t
    data = {"device": device, "threads": args.threads, "sizes": p, "total_seconds": time.perf_counter() - t0, **parts}
    print(f"wrote {write_result('gpu', data, args.out, tiny=args.tiny)} ({data['total_seconds']:.0f} s)")


if __name__ == "__main__":
    main()
