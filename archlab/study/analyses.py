"""The analysis phase of a study: the seeds' own claims as per-run numbers with paired statistics.

A study file turns analyses on with ``analyses:`` (a list of names, or a mapping name -> options)::

    analyses:
      rotation: {images: 200, step: 5}     # % of angles classified correctly, P(correct class)
      transplant: {}                       # the baseline's weights inside each rotation twin
      convergence: {target: 0.9}           # epochs / seconds to a validation target, area under it
      generalization_gap: {}               # train minus test metric of the tested weights
      efficiency: {}                       # metric per parameter / FLOP, Pareto front (a figure)
      gates: {}                            # learned connectivity: trajectories, cross-seed agreement
      excitation: {images: 300}            # SE excitations per class (a figure)
      feature_reuse: {}                    # DenseNet feature reuse (a figure)
      cam: {images: 500}                   # Grad-CAM mass inside the object masks (and a figure)

After all training, :func:`run_analysis_phase` computes every analysis on every finished run that
lacks it, from the run folder (the tested weights, ``best.safetensors``) and the stored history.
Each (run, analysis) result is written in one transaction
(:meth:`archlab.study.store.StudyStore.record_analysis`): its scalar numbers as ``final_metrics``
rows with ``split = 'analysis'`` and key ``<analysis>.<metric>``, and its curves as JSON in
``analysis_data(run_id, analysis, data)``. The ``analysis_data`` row marks the result as done, so a
phase killed at any point (kill -9 included) resumes with the missing results only and stores
each result exactly once. Each result records the options it was computed with; changing an
analysis's options in the study file recomputes (and replaces) its results on the next run, so
all runs' numbers of one analysis always come from the same options. A run an analysis does not apply to (rotation of a segmentation model,
gates of a model without gated connections) gets a ``{"skipped": reason}`` row and no numbers.

Every per-run number is compared across variants like accuracy: :func:`archlab.study.stats.compare_variants`
accepts ``metric="rotation.pct_angles_correct"`` (read from ``RunRecord.analysis``) with the
direction and unit of :data:`ANALYSIS_METRICS`, so the same paired t-test, Wilcoxon, Holm
correction and verdict rules apply. :func:`analysis_sections` renders those tables and the figures
for the study report.

Fairness: every run of a dataset is analysed on the same test images (the first ``images`` of the
test split, which is identical across variants of a seed) and the same angles.
"""

from __future__ import annotations

import base64
import json
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from archlab._registry import register_in
from archlab.errors import ArchlabError, ConfigError, UnknownNameError
from archlab.study.metrics import ANALYSIS_METRICS, metric_direction, register_metric  # noqa: F401  (re-exported)
from archlab.study.record import RunRecord

__all__ = [
    "ANALYSES",
    "AnalysisRun",
    "AnalysisSpec",
    "Skip",
    "register_analysis",
    "list_analyses",
    "ANALYSIS_METRICS",
    "metric_direction",
    "check_analyses",
    "run_analysis_phase",
    "analysis_sections",
]

log = logging.getLogger(__name__)

#: the built-in analyses' options {option: (type(s), default)}; validated by check_analyses (a
#: typo is an exit-2 error before any training)
_BUILTIN_OPTIONS: dict[str, dict[str, tuple[tuple[type, ...], Any]]] = {
    "rotation": {"images": ((int,), 200), "step": ((int, float), 5), "batch_size": ((int,), 512)},
    "transplant": {"images": ((int,), 200), "step": ((int, float), 5), "batch_size": ((int,), 512)},
    "convergence": {"target": ((int, float, type(None)), None), "fraction_of_best": ((int, float), 0.95),
                    "metric": ((str, type(None)), None)},
    "generalization_gap": {"metric": ((str, type(None)), None)},
    "efficiency": {"metric": ((str, type(None)), None)},
    "gates": {},
    "excitation": {"images": ((int,), 500), "classes": ((list, type(None)), None)},
    "feature_reuse": {},
    "cam": {"images": ((int,), 500), "examples": ((int,), 6), "batch_size": ((int,), 64)},
}


@dataclass(frozen=True)
class AnalysisSpec:
    """A registered per-run analysis.

    Attributes:
        name: its key in a study's ``analyses:`` and the prefix of its numbers.
        fn: ``fn(run: AnalysisRun, options: dict, ctx) -> (metrics, data)``: scalar numbers
            ``{metric: float}`` (compared across variants as ``<name>.<metric>``) and JSON ``data``;
            raise :class:`Skip` when it does not apply to the run. ``run.load()`` gives the tested
            model, config, splits and input normalization; ``run.row`` the stored record (history,
            test metrics, predictions).
        options: ``{option: (allowed types, default)}``.
    """

    name: str
    fn: Callable[..., tuple[dict, dict]]
    options: Mapping[str, tuple[tuple[type, ...], Any]]


_ANALYSES: dict[str, AnalysisSpec] = {}


def register_analysis(name: str, *, options: Mapping[str, tuple[tuple[type, ...] | type, Any]] | None = None,
                      metrics: Mapping[str, Mapping[str, Any]] | None = None):
    """Register ``fn`` as the per-run analysis ``name`` (a decorator).

    Args:
        name: the analysis's name in ``analyses:``.
        options: ``{option: (type or types, default)}`` a study may set.
        metrics: the numbers it returns, ``{metric: {higher_is_better, rate, unit, margin}}``;
            each is registered as ``<name>.<metric>`` (:func:`archlab.study.metrics.register_metric`)
            and gets the verdicts, report rows and exports of the built-in ones.

    Raises:
        ConfigError: ``name`` registered by another function, or a bad option/metric spec.
    """
    opts: dict[str, tuple[tuple[type, ...], Any]] = {}
    for k, v in (options or {}).items():
        if not (isinstance(v, tuple) and len(v) == 2):
            raise ConfigError(f"analysis {name!r}: option {k!r} must be (type or types, default), got {v!r}")
        types = v[0] if isinstance(v[0], tuple) else (v[0],)
        opts[k] = (types, v[1])

    def deco(fn: Callable[..., tuple[dict, dict]]) -> Callable[..., tuple[dict, dict]]:
        register_in(_ANALYSES, "analysis", name, AnalysisSpec(name, fn, opts), origin=fn)
        for metric, spec in (metrics or {}).items():
            register_metric(f"{name}.{metric}", origin=fn.__module__, **dict(spec))
        return fn

    return deco


def list_analyses() -> list[str]:
    """Registered analyses: the built-ins in their report order, then those of plugins."""
    return list(_ANALYSES)


_CLASS_METRICS = ("accuracy", "f1_macro", "dice")


def check_analyses(analyses: Mapping[str, Mapping[str, Any]], where: str = "analyses") -> dict[str, dict[str, Any]]:
    """Validate ``analyses`` (names and options) and return them with defaults filled in.

    Raises:
        ConfigError: an unknown analysis or option, or an option of the wrong type or range.
    """
    out: dict[str, dict[str, Any]] = {}
    for name, opts in analyses.items():
        if name not in _ANALYSES:
            raise UnknownNameError("analysis", name, list(_ANALYSES))
        if not isinstance(opts, Mapping):
            raise ConfigError(f"{where}.{name} must be a mapping of options, got {opts!r}")
        spec = _ANALYSES[name].options
        full = {k: d for k, (_, d) in spec.items()}
        for k, v in opts.items():
            if k not in spec:
                allowed = ", ".join(spec) or "none"
                raise ConfigError(f"unknown option {where}.{name}.{k}; allowed: {allowed}")
            types = spec[k][0]
            if isinstance(v, bool) or not isinstance(v, types):
                raise ConfigError(f"{where}.{name}.{k} = {v!r} must be {' or '.join(t.__name__ for t in types)}")
            full[k] = v
        for k in ("images", "batch_size"):
            if k in full and full[k] < 1:
                raise ConfigError(f"{where}.{name}.{k} = {full[k]} must be at least 1")
        if "step" in full and not 0 < full["step"] <= 180:
            raise ConfigError(f"{where}.{name}.step = {full['step']} must be in (0, 180] degrees")
        if name == "convergence" and not 0 < full["fraction_of_best"] <= 1:
            raise ConfigError(f"{where}.convergence.fraction_of_best = {full['fraction_of_best']} must be in (0, 1]")
        if full.get("metric") is not None and full["metric"] not in _CLASS_METRICS:
            raise ConfigError(f"{where}.{name}.metric = {full['metric']!r}; allowed: {', '.join(_CLASS_METRICS)}")
        out[name] = full
    return out


# ------------------------------------------------------------------------------------------------
# Per-run computation


class Skip(Exception):
    """The analysis does not apply to this run (recorded with the reason, no numbers)."""



class _NotYet(Exception):
    """The analysis needs another run that is not finished yet (retried by the next phase)."""


@dataclass
class AnalysisRun:
    """One finished run as the analyses see it (the model is loaded on first use)."""

    row: RunRecord
    folder: Path
    metric: str
    _loaded: tuple | None = field(default=None, repr=False)

    @property
    def config(self):
        from archlab.train.config import TrainConfig

        return TrainConfig.model_validate(self.row.config)

    def load(self) -> tuple[nn.Module, Any, Any, Callable | None]:
        """``(model in eval mode, config, splits, normalize)`` with the tested weights."""
        if self._loaded is None:
            self._loaded = _load_model(self.config, self.folder)
        return self._loaded


def _load_model(config: Any, folder: Path, weights_from: Path | None = None):
    from archlab.errors import CheckpointError
    from archlab.study.execute import load_splits
    from archlab.train.engine import BEST_WEIGHTS, load_weights
    from archlab.train.run import input_normalize, resolve_device

    splits = load_splits(config.data.model_dump_json())
    path = (weights_from or folder) / BEST_WEIGHTS
    if not path.is_file():
        raise CheckpointError(f"{path}: missing; the run's tested weights are needed for the analysis")
    model = load_weights(config, splits, path, owner=folder)
    model.to(resolve_device(config.device)).eval()  # rotations, twins and excitations run there too
    norm = input_normalize(config, splits)
    if norm is not None:
        norm = norm.to(next(model.parameters()).device)
    return model, config, splits, norm


def _is_seg(model: nn.Module) -> bool:
    from archlab.train.segmentation import is_segmentation

    return is_segmentation(model)


def _test_images(splits: Any, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    test = splits.test
    k = min(n, len(test))
    return test.images[:k], test.labels[:k]


def _angles(step: float) -> list[float]:
    return [float(a) for a in np.arange(0.0, 360.0, float(step))]


def _rotation_numbers(model: nn.Module, norm, images, labels, angles, batch_size: int) -> tuple[dict, dict]:
    from archlab.analysis.rotation import rotation_probabilities

    prob, hit = rotation_probabilities(model, images, labels, angles, batch_size=batch_size, transform=norm)
    per_image = 100.0 * hit.double().mean(1)  # (N,) % of angles correct
    metrics = {"pct_angles_correct": float(per_image.mean()), "mean_prob": float(prob.double().mean())}
    data = {
        "angles": angles,
        "curve": [round(float(v), 6) for v in prob.double().mean(0)],  # mean P(correct) per angle
        "acc_curve": [round(float(v), 6) for v in hit.double().mean(0)],
        "per_image_pct": [round(float(v), 4) for v in per_image],
        "images": int(images.shape[0]),
    }
    return metrics, data


def _check_rotatable(run: AnalysisRun) -> tuple[nn.Module, Any, Any, Callable | None]:
    model, config, splits, norm = run.load()
    if _is_seg(model):
        raise Skip("a segmentation model: rotation robustness is measured on classifiers")
    if config.data.crop_size is not None:
        raise Skip("the run crops its inputs (data.crop_size); rotate uncropped images only")
    return model, config, splits, norm


def _a_rotation(run: AnalysisRun, opts: dict, ctx: _Context) -> tuple[dict, dict]:
    model, _, splits, norm = _check_rotatable(run)
    images, labels = _test_images(splits, opts["images"])
    return _rotation_numbers(model, norm, images, labels, _angles(opts["step"]), opts["batch_size"])


def _has_rotation_convs(model: nn.Module) -> bool:
    from archlab.layers.rotation_conv import RotationInvariantConv2d

    return any(isinstance(m, RotationInvariantConv2d) for m in model.modules())


def _a_transplant(run: AnalysisRun, opts: dict, ctx: _Context) -> tuple[dict, dict]:
    from archlab.analysis.transplant import accuracy

    model, config, splits, norm = _check_rotatable(run)
    is_base = run.row.variant == ctx.baseline
    if not is_base and not _has_rotation_convs(model):
        raise Skip("no rotation-invariant convolution: a transplant needs a rotation twin of the baseline")
    if is_base:
        twin, source = model, "itself (the reference every twin is compared with)"
    else:
        base = ctx.runs.get((run.row.dataset, ctx.baseline, run.row.seed))
        if base is None:
            raise _NotYet(f"baseline {ctx.baseline!r} seed {run.row.seed} has not finished")
        from archlab.errors import CheckpointError

        try:
            twin, *_ = _load_model(config, run.folder, weights_from=base.folder)
        except CheckpointError as exc:
            raise Skip(f"the baseline's weights do not fit this variant's parameters ({exc})") from None
        source = f"{ctx.baseline} seed {run.row.seed}"
    images, labels = _test_images(splits, opts["images"])
    rot, data = _rotation_numbers(twin, norm, images, labels, _angles(opts["step"]), opts["batch_size"])
    test = splits.test
    imgs = test.images.float() / 255.0 if test.images.dtype == torch.uint8 else test.images.float()
    acc = accuracy(twin, imgs, test.labels.long(), norm, opts["batch_size"], None)
    return {"accuracy": acc, "pct_angles_correct": rot["pct_angles_correct"]}, {**data, "source": source}


def _history_metric(run: AnalysisRun, metric: str) -> tuple[list[float], list[float]]:
    hist = run.row.history or []
    key = f"val_{metric}"
    vals = [float(h[key]) for h in hist if h.get(key) is not None]
    secs = [float(h.get("seconds") or math.nan) for h in hist if h.get(key) is not None]
    return vals, secs


def _a_convergence(run: AnalysisRun, opts: dict, ctx: _Context) -> tuple[dict, dict]:
    metric = opts["metric"] or ctx.metric
    vals, secs = _history_metric(run, metric)
    if not vals:
        raise Skip(f"no validation {metric} in the run's history")
    target = opts["target"]
    if target is None:
        target = opts["fraction_of_best"] * max(vals)
        how = f"{opts['fraction_of_best']:g} x the run's best val {metric}"
    else:
        how = f"val {metric} >= {target:g}"
    reached = next((i for i, v in enumerate(vals) if v >= target), None)
    # area under the validation curve, normalised by its length: the mean over epochs (trapezoid)
    auc = float(np.trapezoid(vals) / (len(vals) - 1)) if len(vals) > 1 else vals[0]
    metrics: dict[str, float] = {"val_auc": auc}
    if reached is not None:
        metrics["epochs_to_target"] = float(reached + 1)
        if math.isfinite(secs[reached]):
            metrics["seconds_to_target"] = secs[reached]
    data = {"metric": metric, "target": float(target), "rule": how, "curve": vals, "seconds": secs,
            "reached": reached is not None}
    return metrics, data


def _a_generalization_gap(run: AnalysisRun, opts: dict, ctx: _Context) -> tuple[dict, dict]:
    from archlab.data import Splits
    from archlab.train.run import build_loaders
    from archlab.train.task import task_for

    model, config, splits, _ = run.load()
    seg = _is_seg(model)
    metric = opts["metric"] or ("dice" if seg else ctx.metric)
    test_value = (run.row.test or {}).get(metric)
    if test_value is None:
        raise Skip(f"the run has no test {metric}")
    device = next(model.parameters()).device
    # The training split evaluated like the test split: eval mode, eval transform, the same
    # normalisation (the train split stands in the validation slot of the loaders).
    as_eval = Splits(train=splits.train, val=splits.train, test=splits.test)
    task = task_for(model, splits)
    _, train_eval, _ = build_loaders(config, as_eval, device, targets=task.targets)
    train_metrics, _, _ = task.evaluate(model, train_eval, task.build_loss(config))
    tr = float(train_metrics[metric])
    return {"gap": tr - float(test_value), "train": tr}, {"metric": metric, "train": train_metrics,
                                                          "test": run.row.test}


def _a_efficiency(run: AnalysisRun, opts: dict, ctx: _Context) -> tuple[dict, dict]:
    metric = opts["metric"] or ctx.metric
    value = (run.row.test or {}).get(metric)
    params, flops = run.row.params, run.row.flops
    if value is None or not params:
        raise Skip(f"the run has no test {metric} or parameter count")
    metrics = {"metric_per_mparam": float(value) / (params / 1e6)}
    if flops:
        metrics["metric_per_gflop"] = float(value) / (flops / 1e9)
    return metrics, {"metric": metric, "value": float(value), "params": int(params), "flops": int(flops or 0)}


def _a_gates(run: AnalysisRun, opts: dict, ctx: _Context) -> tuple[dict, dict]:
    from archlab.train.engine import RESULT_FILE, read_result

    path = run.folder / RESULT_FILE
    if not path.is_file():
        raise ArchlabError(f"{path}: missing; the gate history is read from the run's result")
    gates = read_result(path, run.config).extras.get("gates") or []
    if not gates:
        raise Skip("the model has no gated connection")
    # trajectory: per connection, per epoch, the mean gate of each input (over its feature maps)
    traj = {c: [[float(np.mean(g)) for g in snap[c]["gates"]] for snap in gates] for c in gates[-1]}
    inputs = {c: list(gates[-1][c]["inputs"]) for c in gates[-1]}
    final = [float(v) for c in sorted(gates[-1]) for g in gates[-1][c]["gates"] for v in g]
    metrics = {"mean_final": float(np.mean(final)), "fraction_open": float(np.mean(np.asarray(final) >= 0.5))}
    return metrics, {"trajectory": traj, "inputs": inputs, "final": final}


def _a_excitation(run: AnalysisRun, opts: dict, ctx: _Context) -> tuple[dict, dict]:
    from archlab.analysis.excitation import collect_excitations
    from archlab.layers.squeeze_excite import SqueezeExcitation

    model, _, splits, norm = run.load()
    if not any(isinstance(m, SqueezeExcitation) for m in model.modules()):
        raise Skip("no squeeze-excitation module")
    images, labels = _test_images(splits, opts["images"])
    present = sorted(int(c) for c in torch.unique(labels))
    classes = opts["classes"] or present[:3]
    missing = [c for c in classes if c not in present]
    if missing:
        raise ConfigError(f"analyses.excitation.classes {missing} have no image among the first {len(labels)} test images")
    imgs = images.float() / 255.0 if images.dtype == torch.uint8 else images.float()
    exc = collect_excitations(model, imgs, labels.long(), classes=classes, preprocess=norm)
    blocks = {b: {str(c): [round(float(v), 5) for v in t.double().mean(0)] for c, t in per.items()}
              for b, per in exc.items()}
    return {}, {"classes": classes, "blocks": blocks}


def _a_feature_reuse(run: AnalysisRun, opts: dict, ctx: _Context) -> tuple[dict, dict]:
    from archlab.analysis.feature_reuse import feature_reuse

    model, *_ = run.load()
    try:
        blocks = feature_reuse(model)
    except ArchlabError as exc:
        raise Skip(str(exc)) from None
    return {}, {"blocks": [{"block": b.block, "sources": b.sources, "targets": b.targets,
                            "matrix": [[None if not math.isfinite(v) else round(float(v), 6) for v in r]
                                       for r in np.asarray(b.matrix)]} for b in blocks]}


def _a_cam(run: _Run, opts: dict, ctx: _Context) -> tuple[dict, dict]:
    from archlab.analysis.cam import grad_cam, mask_scores
    from archlab.data.load_options import resize_images

    model, config, splits, norm = _check_rotatable(run)  # a classifier on uncropped images, as rotation
    images, labels = _test_images(splits, opts["images"])
    try:
        cams = grad_cam(model, images, labels, preprocess=norm, batch_size=opts["batch_size"])  # (N, H, W)
    except ArchlabError as exc:
        raise _Skip(str(exc)) from None
    if not bool(torch.isfinite(cams).all()):  # a diverged model: no map to store or score
        raise ArchlabError("non-finite Grad-CAM maps (the model's features or gradients are not finite)")
    masks = splits.test.masks[: len(labels)] if splits.test.masks is not None else None
    k = min(opts["examples"], len(labels))
    side = min(48, images.shape[-1])  # the figure's examples, small enough to store as JSON
    small = lambda t: resize_images(t, (side, side))  # noqa: E731
    grey = small(images[:k].float().mean(1, keepdim=True).round().to(torch.uint8))[:, 0]
    cam_u8 = small((cams[:k] / cams[:k].flatten(1).amax(1).clamp_min(1e-30)[:, None, None] * 255)
                   .round().to(torch.uint8)[:, None])[:, 0]
    data: dict[str, Any] = {"images": int(len(labels)), "examples": {"image": grey.tolist(), "cam": cam_u8.tolist(),
                                                                    "label": labels[:k].tolist()}}
    if masks is None:  # the maps are still shown; without masks there is no number to compare
        data["note"] = "the test images have no object masks: maps shown, no localisation score"
        return {}, data
    sc = mask_scores(cams, masks)
    data["examples"]["mask"] = small(masks[:k].to(torch.uint8) * 255)[:, 0].gt(127).int().tolist()
    data["mask_area"] = float(sc["mask_area"].mean())
    return {"mass_in_mask": float(sc["mass_in_mask"].mean()), "peak_in_mask": float(sc["peak_in_mask"].mean())}, data



for _name, _fn in (("rotation", _a_rotation), ("transplant", _a_transplant), ("convergence", _a_convergence),
                  ("generalization_gap", _a_generalization_gap), ("efficiency", _a_efficiency), ("gates", _a_gates),
                  ("excitation", _a_excitation), ("feature_reuse", _a_feature_reuse), ("cam", _a_cam)):
    register_analysis(_name, options=_BUILTIN_OPTIONS[_name])(_fn)  # their metrics: archlab.study.metrics


@dataclass
class _Context:
    baseline: str
    metric: str
    runs: dict[tuple[str, str, int], AnalysisRun]


def run_analysis_phase(store: Any, study: Any, out: str | Path, emit: Callable | None = None) -> dict[str, int]:
    """Compute every analysis of ``study`` on every finished run that lacks it; store each result once.

    Args:
        store: the open :class:`archlab.study.store.StudyStore`.
        study: the :class:`archlab.study.config.Study` (its ``analyses``, ``baseline``, metric).
        out: the study folder (run folders under ``out/runs``).
        emit: progress callback ``(kind, key, info)``: kind ``analysis`` (stored) or
            ``analysis_failed`` (an error; retried by the next run of the study).

    Returns:
        Counts: ``{"stored": ..., "skipped": ..., "failed": ..., "waiting": ...}``.
    """
    from archlab.study.config import RunKey
    from archlab.study.execute import run_dir

    emit = emit or (lambda *a: None)
    analyses = check_analyses(study.analyses)
    counts = {"stored": 0, "skipped": 0, "failed": 0, "waiting": 0}
    if not analyses:
        return counts
    out = Path(out)
    done = {k: d.get("options") for k, d in store.analysis_data().items()}
    rows = [r for r in store.rows(with_predictions=False) if r.status == "done"]
    runs: dict[tuple[str, str, int], AnalysisRun] = {}
    for r in rows:
        key = RunKey(dataset=r.dataset, variant=r.variant, seed=r.seed)
        runs[(r.dataset, r.variant, r.seed)] = AnalysisRun(r, run_dir(out, key), study.decisive_metric())
    ctx = _Context(baseline=study.baseline, metric=study.decisive_metric(), runs=runs)
    threads_before = torch.get_num_threads()
    try:
        for (ds, var, seed), run in runs.items():
            # the run's own thread count: an analysis's numbers must not depend on the machine either
            torch.set_num_threads(int(run.row.config.get("threads") or 1))
            _analyse_run(store, run, ds, var, seed, analyses, done, ctx, counts, emit)
    finally:
        torch.set_num_threads(threads_before)
    return counts


def _analyse_run(store: Any, run: AnalysisRun, ds: str, var: str, seed: int, analyses: dict[str, dict[str, Any]],
                 done: dict, ctx: _Context, counts: dict[str, int], emit: Callable) -> None:
    """Every analysis of one finished run that is not stored yet with its options."""
    from archlab.study.config import RunKey

    key = RunKey(dataset=ds, variant=var, seed=seed)
    for name, opts in analyses.items():
        opts_json = json.loads(json.dumps(opts))
        if (run.row.id, name) in done and done[(run.row.id, name)] == opts_json:
            continue  # computed with these options: stored once, never again
        try:
            metrics, data = _ANALYSES[name].fn(run, opts, ctx)
        except Skip as why:
            metrics, data = {}, {"skipped": str(why)}
            counts["skipped"] += 1
        except _NotYet as why:
            counts["waiting"] += 1
            log.info("analysis %s of %s waits: %s", name, key.label, why)
            continue
        except Exception as exc:  # noqa: BLE001 - one analysis never takes the study (or others) down
            counts["failed"] += 1
            expected = isinstance(exc, ArchlabError)
            log.warning("analysis %s of %s failed: %s: %s", name, key.label, type(exc).__name__, exc,
                        exc_info=not expected)
            emit("analysis_failed", key, {"analysis": name, "error": f"{type(exc).__name__}: {exc}"})
            continue
        bad = [k for k, v in metrics.items() if not math.isfinite(v)]
        if bad:
            counts["failed"] += 1
            emit("analysis_failed", key, {"analysis": name, "error": f"non-finite {bad}"})
            continue
        store.record_analysis(run.row.id, name, metrics, {**data, "options": opts_json})
        if "skipped" not in data:
            counts["stored"] += 1
        emit("analysis", key, {"analysis": name, "metrics": metrics})
    run._loaded = None  # free the model before the next run


# ------------------------------------------------------------------------------------------------
# Report sections


@dataclass
class Section:
    """One report section: its title, Markdown, HTML and figures ``(file, png, title, caption)``."""

    title: str
    markdown: str
    html: str
    figures: list[tuple[str, bytes, str, str]]

    def __iter__(self):  # unpacks as (title, markdown, html, figures)
        return iter((self.title, self.markdown, self.html, self.figures))


def _fmt(v: float | None, percent: bool) -> str:
    if v is None or not math.isfinite(v):
        return "–"
    return f"{v * 100:.2f}" if percent else f"{v:.4g}"


def _stats_table(rows: Sequence[RunRecord], baseline: str, metric: str, alpha: float,
                 min_pairs: int) -> tuple[list[str], list[list[str]]]:
    from archlab.study.stats import compare_variants
    from archlab.study.wording import format_p, verdict_text

    _, percent = metric_direction(metric)
    unit = " (%)" if percent else ""
    head = ["Dataset", "Variant", "n", f"Mean ± std{unit}", "Δ vs baseline [CI]", "p (paired t)", "Verdict"]
    body = []
    # exploratory (not the study's primary metric): unadjusted intervals at the study's alpha
    for vs in compare_variants(rows, baseline=baseline, metric=metric, alpha=alpha, min_pairs=min_pairs,
                               aso=False, primary=False, confidence=1 - alpha):
        s, p = vs.summary, vs.paired
        mean = "–" if s is None else f"{_fmt(s.mean, percent)} ± {_fmt(s.std, percent)}"
        delta = "–"
        if p is not None and p.mean_diff is not None:
            ci = vs.ci if vs.ci is not None else getattr(p, "ci_diff", None)
            ci_txt = f" [{_fmt(ci[0], percent)}, {_fmt(ci[1], percent)}]" if ci and None not in ci else ""
            delta = f"{'+' if p.mean_diff >= 0 else ''}{_fmt(p.mean_diff, percent)}{ci_txt}"
        body.append([vs.dataset, vs.variant, str(s.n if s else 0), mean, delta,
                     format_p(p.t_p if p is not None else None), verdict_text(vs)])
    return head, body


def _md_table(head: list[str], rows: list[list[str]]) -> str:
    esc = lambda s: str(s).replace("|", "\\|").replace("\n", " ")  # noqa: E731
    lines = ["| " + " | ".join(esc(h) for h in head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(esc(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def _html_table(head: list[str], rows: list[list[str]]) -> str:
    from html import escape

    out = ['<div class="scroll"><table><thead><tr>'] + [f'<th scope="col">{escape(h)}</th>' for h in head]
    out.append("</tr></thead><tbody>")
    for r in rows:
        out.append("<tr>" + "".join(f"<td>{escape(str(c))}</td>" for c in r) + "</tr>")
    out.append("</tbody></table></div>")
    return "".join(out)


def _png(fig) -> bytes:
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, metadata={"Software": None})
    return buf.getvalue()


def _by_variant(rows, data, name: str) -> dict[tuple[str, str], list[tuple[int, dict]]]:
    """``{(dataset, variant): [(seed, data), ...]}`` of the stored (not skipped) results of ``name``."""
    out: dict[tuple[str, str], list[tuple[int, dict]]] = {}
    for r in rows:
        d = data.get((r.id, name))
        if d is not None and "skipped" not in d:
            out.setdefault((r.dataset, r.variant), []).append((int(r.seed), d))
    return out


def _rotation_figures(name: str, groups) -> list[tuple[str, bytes, str, str]]:
    from matplotlib.figure import Figure

    figs = []
    for ds in dict.fromkeys(d for d, _ in groups):
        variants = [(v, items) for (d, v), items in groups.items() if d == ds]
        fig = Figure(figsize=(8, 4.2))
        ax = fig.add_subplot()
        for v, items in variants:
            curves = np.asarray([d["curve"] for _, d in items if len(d["curve"]) == len(items[0][1]["curve"])])
            mean, std = curves.mean(0), curves.std(0)
            ang = items[0][1]["angles"]
            ax.plot(ang, mean, label=f"{v} (n={len(curves)})", linewidth=1.2)
            ax.fill_between(ang, mean - std, mean + std, alpha=0.15)
        ax.set_xlabel("rotation (degrees)")
        ax.set_ylabel("mean P(correct class)")
        ax.set_ylim(-0.02, 1.02)
        ax.legend(fontsize="small", ncol=2)
        fig.tight_layout()
        figs.append((f"{name}_{ds}_curve.png", _png(fig), f"{name}: probability vs angle ({ds})",
                     "Mean over test images of the correct class's probability at each angle; line = mean "
                     "over seeds, band = ± one std over seeds."))
        fig = Figure(figsize=(max(5, 1.1 * len(variants) + 2), 4.4))
        ax = fig.add_subplot()
        order = sorted(variants, key=lambda t: np.mean([x for _, d in t[1] for x in d["per_image_pct"]]))
        ax.boxplot([[x for _, d in items for x in d["per_image_pct"]] for _, items in order], showmeans=True)
        ax.set_xticks(range(1, len(order) + 1), [v for v, _ in order], rotation=30, ha="right")
        ax.set_ylabel("% of angles classified correctly")
        ax.set_ylim(-2, 102)
        fig.tight_layout()
        figs.append((f"{name}_{ds}_box.png", _png(fig), f"{name}: % of angles correct per image ({ds})",
                     "Per test image, the % of rotation angles classified correctly, pooled over seeds; "
                     "variants ordered by mean (triangle)."))
    return figs


def _efficiency_figures(rows) -> list[tuple[str, bytes, str, str]]:
    from matplotlib.figure import Figure

    figs = []
    done = [r for r in rows if r.status == "done"]
    for ds in dict.fromkeys(r.dataset for r in done):
        pts = {}
        for r in (r for r in done if r.dataset == ds):
            a = (r.analysis or {})
            if "efficiency.metric_per_mparam" not in a:
                continue
            value = a["efficiency.metric_per_mparam"] * r.params / 1e6
            pts.setdefault(r.variant, []).append((r.params, r.flops or 0, value))
        if not pts:
            continue
        fig = Figure(figsize=(10, 4.2))
        for k, (col, label) in enumerate(((0, "parameters"), (1, "FLOPs per sample"))):
            ax = fig.add_subplot(1, 2, k + 1)
            means = {v: (float(np.mean([p[col] for p in ps])), float(np.mean([p[2] for p in ps])),
                         float(np.std([p[2] for p in ps]))) for v, ps in pts.items()}
            for v, (x, y, s) in means.items():
                ax.errorbar([x], [y], yerr=[s], fmt="o", capsize=3)
                ax.annotate(v, (x, y), fontsize="x-small", xytext=(3, 3), textcoords="offset points")
            front = _pareto(means)
            if len(front) > 1:
                ax.plot([means[v][0] for v in front], [means[v][1] for v in front], "k--", linewidth=0.8,
                        label="Pareto front")
                ax.legend(fontsize="x-small")
            ax.set_xscale("log")
            ax.set_xlabel(label)
            ax.set_ylabel("test metric (mean ± std over seeds)")
        fig.tight_layout()
        front_txt = ", ".join(_pareto({v: (float(np.mean([p[0] for p in ps])), float(np.mean([p[2] for p in ps])))
                                       for v, ps in pts.items()}))
        figs.append((f"efficiency_{ds}.png", _png(fig), f"efficiency: metric vs size ({ds})",
                     f"Test metric against parameters and FLOPs; dashed: the Pareto front (no variant is both "
                     f"smaller and better). Front by parameters: {front_txt}."))
    return figs


def _pareto(points: Mapping[str, tuple]) -> list[str]:
    """Variants not dominated (another one with cost <= and value >=, one of them strictly), by cost."""
    front = [v for v, (x, y, *_) in points.items()
             if not any((x2 <= x and y2 >= y) and (x2 < x or y2 > y) for w, (x2, y2, *_) in points.items() if w != v)]
    return sorted(front, key=lambda v: points[v][0])


def gate_consistency(finals: Sequence[Sequence[float]]) -> float | None:
    """Mean pairwise Pearson correlation of the final gate vectors of several seeds.

    1 = every seed ends with the same relative connectivity; 0 = unrelated. ``None`` with fewer
    than two seeds or constant vectors.
    """
    vecs = [np.asarray(f, dtype=np.float64) for f in finals]
    if len(vecs) < 2 or len({v.size for v in vecs}) != 1:
        return None
    cors = []
    for i in range(len(vecs)):
        for j in range(i + 1, len(vecs)):
            if vecs[i].std() == 0 or vecs[j].std() == 0:
                continue
            cors.append(float(np.corrcoef(vecs[i], vecs[j])[0, 1]))
    return float(np.mean(cors)) if cors else None


def _gates_extra(groups) -> tuple[list[str], list[list[str]], list[tuple[str, bytes, str, str]]]:
    from matplotlib.figure import Figure

    head = ["Dataset", "Variant", "Seeds", "Cross-seed consistency (mean pairwise r of final gates)"]
    body, figs = [], []
    for (ds, v), items in groups.items():
        c = gate_consistency([d["final"] for _, d in items])
        body.append([ds, v, str(len(items)), "–" if c is None else f"{c:.3f}"])
        conns = sorted(items[0][1]["trajectory"])
        cols = min(4, len(conns))
        nrows = math.ceil(len(conns) / cols)
        fig = Figure(figsize=(4 * cols, 3 * nrows))
        for k, conn in enumerate(conns):
            ax = fig.add_subplot(nrows, cols, k + 1)
            for seed, d in items:
                t = np.asarray(d["trajectory"][conn])  # (epochs, inputs)
                for i in range(t.shape[1]):
                    ax.plot(range(1, t.shape[0] + 1), t[:, i], color=f"C{i}", alpha=0.6, linewidth=0.9,
                            label=f"in {i}" if seed == items[0][0] else None)
            ax.set_title(conn, fontsize="small")
            ax.set_ylim(-0.02, 1.02)
            ax.set_xlabel("epoch")
            ax.legend(fontsize="xx-small")
        fig.tight_layout()
        figs.append((f"gates_{ds}_{v}.png", _png(fig), f"gates: {v} ({ds})",
                     "Mean gate sigmoid(w) of each input per epoch; one line per seed and input (colour = input)."))
    return head, body, figs


def _excitation_figures(groups) -> list[tuple[str, bytes, str, str]]:
    from matplotlib.figure import Figure

    figs = []
    for (ds, v), items in groups.items():
        seed, d = items[0]
        blocks = list(d["blocks"])
        pick = [blocks[round(i * (len(blocks) - 1) / 3)] for i in range(min(4, len(blocks)))] if len(blocks) > 1 else blocks
        pick = list(dict.fromkeys(pick))
        fig = Figure(figsize=(4 * len(pick), 3))
        for k, b in enumerate(pick):
            ax = fig.add_subplot(1, len(pick), k + 1)
            for c, vec in d["blocks"][b].items():
                ax.plot(vec, label=f"class {c}", linewidth=0.9)
            ax.set_title(b, fontsize="small")
            ax.set_xlabel("channel")
            ax.set_ylim(-0.02, 1.02)
            ax.legend(fontsize="xx-small")
        fig.tight_layout()
        figs.append((f"excitation_{ds}_{v}.png", _png(fig), f"excitation: {v} seed {seed} ({ds})",
                     "Mean excitation per channel for images of each class, at blocks spread over depth."))
    return figs


def _feature_reuse_figures(groups) -> list[tuple[str, bytes, str, str]]:
    from matplotlib.figure import Figure

    figs = []
    for (ds, v), items in groups.items():
        seed, d = items[0]
        blocks = d["blocks"]
        fig = Figure(figsize=(3.6 * len(blocks), 3.4))
        for k, b in enumerate(blocks):
            ax = fig.add_subplot(1, len(blocks), k + 1)
            m = np.asarray([[np.nan if x is None else x for x in r] for r in b["matrix"]], dtype=float)
            im = ax.imshow(m / np.nanmax(m) if np.isfinite(m).any() and np.nanmax(m) > 0 else m, cmap="viridis",
                           vmin=0, vmax=1)
            ax.set_title(b["block"], fontsize="small")
            ax.set_xlabel("target layer")
            ax.set_ylabel("source")
            fig.colorbar(im, ax=ax, fraction=0.046)
        fig.tight_layout()
        figs.append((f"feature_reuse_{ds}_{v}.png", _png(fig), f"feature reuse: {v} seed {seed} ({ds})",
                     "Mean |weight| a layer gives each earlier source, normalised per block (Huang et al. fig. 5)."))
    return figs


def _cam_figures(groups) -> list[tuple[str, bytes, str, str]]:
    from matplotlib.figure import Figure

    figs = []
    for (ds, v), items in groups.items():
        seed, d = items[0]
        ex = d["examples"]
        k = len(ex["image"])
        if not k:
            continue
        fig = Figure(figsize=(1.6 * k, 1.9))
        for i in range(k):
            ax = fig.add_subplot(1, k, i + 1)
            ax.imshow(np.asarray(ex["image"][i]), cmap="gray", vmin=0, vmax=255)
            ax.imshow(np.asarray(ex["cam"][i]), cmap="jet", alpha=0.45, vmin=0, vmax=255)
            if "mask" in ex:
                ax.contour(np.asarray(ex["mask"][i]), levels=[0.5], colors="white", linewidths=0.7)
            ax.set_title(f"class {ex['label'][i]}", fontsize="x-small")
            ax.axis("off")
        fig.tight_layout()
        area = f" The masks cover {100 * d['mask_area']:.1f} % of the image on average (what a uniform map scores)." \
            if "mask_area" in d else ""
        figs.append((f"cam_{ds}_{v}.png", _png(fig), f"cam: {v} seed {seed} ({ds})",
                     "Grad-CAM of the true class on the last stage (colour) over the first test images; white: "
                     f"the object mask.{area}"))
    return figs


def analysis_sections(rows: Sequence[RunRecord], store: Any, *, baseline: str, alpha: float = 0.05,
                      min_pairs: int = 3) -> list[Section]:
    """The report sections of the stored analyses: paired-statistics tables and figures.

    Args:
        rows: ``store.rows()`` (:class:`~archlab.study.record.RunRecord`, with ``analysis``).
        store: the study store (:meth:`archlab.study.store.StudyStore.analysis_data`: the curves).
        baseline, alpha, min_pairs: as the report's accuracy tables.

    Returns:
        One :class:`Section` per analysis with results, in registration order (empty when none).
    """
    data = store.analysis_data()
    if not data:
        return []
    names = [a for a in _ANALYSES if any(k[1] == a for k in data)]
    keys = sorted({k for r in rows for k in (r.analysis or {})})
    sections = []
    for name in names:
        md, html, figs = [], [], []
        skipped = sorted({d["skipped"] for (_, a), d in data.items() if a == name and "skipped" in d})
        for metric in (k for k in keys if k.startswith(name + ".") and k in ANALYSIS_METRICS):
            head, body = _stats_table(rows, baseline, metric, alpha, min_pairs)
            md += [f"#### {metric}", "", _md_table(head, body), ""]
            html += [f"<h4>{escape(metric)}</h4>", _html_table(head, body)]
        groups = _by_variant(rows, data, name)
        if name in ("rotation", "transplant") and groups:
            figs += _rotation_figures(name, groups)
        elif name == "efficiency":
            figs += _efficiency_figures(rows)
        elif name == "gates" and groups:
            head, body, g = _gates_extra(groups)
            md += ["#### Consistency of the final connectivity across seeds", "", _md_table(head, body), ""]
            html += ["<h4>Consistency of the final connectivity across seeds</h4>", _html_table(head, body)]
            figs += g
        elif name == "excitation" and groups:
            figs += _excitation_figures(groups)
        elif name == "feature_reuse" and groups:
            figs += _feature_reuse_figures(groups)
        elif name == "cam" and groups:
            figs += _cam_figures(groups)
        if name == "convergence":
            rules = sorted({d["rule"] for (_, a), d in data.items() if a == name and "rule" in d})
            missed = sum(1 for (_, a), d in data.items() if a == name and d.get("reached") is False)
            note = f"Target: {'; '.join(rules)}." + (f" {missed} run(s) never reached it (left out of "
                                                     "epochs/seconds to target)." if missed else "")
            md += [note, ""]
            html += [f"<p>{escape(note)}</p>"]
        if skipped:
            md += ["Not applicable to some runs: " + "; ".join(skipped), ""]
            html += ["<p>Not applicable to some runs: " + escape("; ".join(skipped)) + "</p>"]
        for file, png, title, caption in figs:
            md += [f"![{title}]({file})", "", caption, ""]
            b64 = base64.b64encode(png).decode("ascii")
            html += [f'<figure><img alt="{escape(title)}" src="data:image/png;base64,{b64}">'
                     f"<figcaption>{escape(caption)}</figcaption></figure>"]
        sections.append(Section(f"Analysis: {name}", "\n".join(md), "\n".join(html), figs))
    return sections
