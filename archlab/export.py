"""Export a trained run's model: ONNX for inference runtimes, safetensors for PyTorch (SPEC §7).

``archlab export RUN_DIR --format onnx|safetensors [--out PATH]`` rebuilds the run's model with
:func:`archlab.train.engine.load_run` (the tested, best-validation weights by default) and writes:

- ``safetensors``: the ``state_dict`` plus metadata (the resolved run config, class and channel
  counts, input size, normalisation) from which :func:`load_safetensors_export` rebuilds the model
  without the run folder or the dataset. No code runs when the file is read.
- ``onnx``: a graph from float images in ``[0, 1]`` (``images``, ``(N, C, H, W)``, any ``N``) to
  ``logits`` (``(N, num_classes)``), the run's normalisation included, so a runtime needs no
  archlab code. A segmentation model (U-Net) has the outputs ``masks`` (``(N, 1, H, W)`` mask
  logits) and ``has_mask`` (``(N, 1)``), the fields of its ``SegmentationOutput``. The ``torch.export``-based exporter is tried first and the TorchScript-based one
  second; with onnxruntime installed the written file is run once and compared with PyTorch.

LTC heads are exported with their plain-autograd path (``fused=False``: the same math without the
custom autograd kernels, which no exporter can trace) and their synapse layout computed beforehand,
so the graph holds it as constants.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import logging
import math
from pathlib import Path
from typing import Any

import torch
from torch import nn

from archlab import __version__
from archlab._files import chmod_like_open
from archlab.errors import CheckpointError, ConfigError, ExportError

__all__ = [
    "FORMATS",
    "export_onnx",
    "export_run",
    "export_safetensors",
    "load_safetensors_export",
    "onnx_check_result",
]

log = logging.getLogger(__name__)

FORMATS = ("onnx", "safetensors")
_META = "archlab."  # prefix of archlab's safetensors metadata keys
#: largest |ONNX - PyTorch| accepted by the check, relative to max(1, max |logit|)
CHECK_TOLERANCE = 1e-4


def export_run(
    run_dir: str | Path, format: str, out: str | Path | None = None, *, weights: str = "best"
) -> Path:
    """Export the model of a finished (or checkpointed) run.

    Args:
        run_dir: a run folder written by ``archlab train``.
        format: ``"onnx"`` or ``"safetensors"``.
        out: file to write; ``None`` = ``RUN_DIR/model.onnx`` or ``RUN_DIR/model.safetensors``.
        weights: ``"best"`` (the tested weights) or ``"last"`` (the last checkpoint).

    Returns:
        The path written.

    Raises:
        ConfigError: an unknown format or weights choice.
        CheckpointError: ``run_dir`` is not a run folder or its weights are missing.
        ExportError: the model cannot be exported to ONNX (both exporters' reasons are given).
    """
    from archlab.train.engine import load_run, model_input_size

    if format not in FORMATS:
        raise ConfigError(f"unknown export format {format!r}; use one of {', '.join(FORMATS)}")
    if weights not in ("best", "last"):
        raise ConfigError(f"weights must be 'best' or 'last', got {weights!r}")
    run = Path(run_dir)
    if not run.is_dir():
        raise CheckpointError(f"{run}: no such run folder; pass the --out folder of an `archlab train` run")
    model, config, splits, norm = load_run(run, weights=weights)
    size = tuple(int(s) for s in model_input_size(config, splits))
    target = Path(out) if out is not None else run / f"model.{'onnx' if format == 'onnx' else 'safetensors'}"
    metadata = {
        "config": config.model_dump(mode="json"),
        "num_classes": getattr(splits.train, "num_classes", None),
        "in_chans": splits.train.in_chans,
        "input_size": list(size),
        "normalize": _norm_stats(norm),
        "classes": list(getattr(splits.train, "classes", None) or []),
        "weights": weights,
    }
    if format == "safetensors":
        return export_safetensors(model, target, metadata)
    return export_onnx(model, target, (splits.train.in_chans, *size), normalize=norm, metadata=metadata)


# ----------------------------------------------------------------------------------------------
# safetensors


def export_safetensors(model: nn.Module, path: str | Path, metadata: dict[str, Any]) -> Path:
    """Write ``model``'s weights with archlab metadata (every value JSON-encoded) to ``path``.

    ``metadata`` must hold ``config`` (a ``TrainConfig`` dump), ``num_classes``, ``in_chans`` and
    ``input_size`` for :func:`load_safetensors_export` to rebuild the model.
    """
    from safetensors.torch import save_file

    missing = [k for k in ("config", "num_classes", "in_chans", "input_size") if k not in metadata]
    if missing:
        raise ConfigError(f"export metadata lacks {', '.join(missing)}; export_run fills them from the run")
    tensors = {k: v.detach().to("cpu").clone(memory_format=torch.contiguous_format) for k, v in model.state_dict().items()}
    meta = {"format": "pt", f"{_META}version": __version__}
    meta.update({_META + k: json.dumps(v, sort_keys=True) for k, v in metadata.items()})
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata=meta)
    chmod_like_open(path)  # safetensors writes through a 0600 temp file
    return path


def load_safetensors_export(path: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model of a safetensors export (no run folder and no dataset needed).

    Returns:
        ``(model in eval mode, metadata)`` with the metadata decoded (``config``, ``num_classes``,
        ``in_chans``, ``input_size``, ``normalize``, ...).

    Raises:
        CheckpointError: not a safetensors file, not an archlab export, or weights that do not fit
            the model the metadata describes.
    """
    from safetensors import safe_open

    from archlab._registry import create_model
    from archlab._seed import derive_seed
    from archlab.train.config import TrainConfig

    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            raw = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (not a dict)
    except Exception as exc:  # noqa: BLE001 - header errors, OSError: all mean "not a readable file"
        raise CheckpointError(f"{path}: not a readable safetensors file ({exc})") from None
    if f"{_META}config" not in raw:
        raise CheckpointError(f"{path}: no archlab metadata; write it with `archlab export RUN_DIR --format safetensors`")
    meta = {k[len(_META) :]: json.loads(v) for k, v in raw.items() if k.startswith(_META) and k != f"{_META}version"}
    meta["version"] = raw.get(f"{_META}version")
    config = TrainConfig.model_validate(meta["config"])
    m = config.model
    # same init stream as the run: structure drawn at build time (wirings) comes out identical
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(config.seed, "model-init"))
        model = create_model(
            m.name,
            num_classes=int(meta["num_classes"]),
            in_chans=int(meta["in_chans"]),
            head=m.head,
            head_kwargs=m.head_kwargs,
            input_size=tuple(meta["input_size"]),
            **m.kwargs,
        )
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{path} does not fit the model its metadata describes: {str(exc).splitlines()[0]}") from None
    return model.eval(), meta


# ----------------------------------------------------------------------------------------------
# ONNX


class _Inference(nn.Module):
    """Float images in [0, 1] -> normalisation -> model -> logits (what the ONNX graph computes)."""

    def __init__(self, model: nn.Module, normalize: nn.Module | None):
        super().__init__()
        self.normalize = normalize if normalize is not None else nn.Identity()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        out = self.model(self.normalize(images))  # (N, C, H, W) -> (N, num_classes)
        return tuple(out) if isinstance(out, tuple) else out  # NamedTuple -> plain tuple for the exporters


def _output_names(out: Any) -> list[str]:
    if isinstance(out, torch.Tensor):
        return ["logits"]
    if isinstance(out, tuple) and all(isinstance(t, torch.Tensor) for t in out):
        fields = getattr(out, "_fields", None)  # SegmentationOutput: masks, has_mask
        return list(fields) if fields else [f"output{i}" for i in range(len(out))]
    raise ExportError(
        f"the model returns a {type(out).__name__}; ONNX export needs a tensor or a tuple of tensors"
    )


def export_onnx(
    model: nn.Module,
    path: str | Path,
    input_shape: tuple[int, int, int],
    *,
    normalize: nn.Module | None = None,
    metadata: dict[str, Any] | None = None,
    opset: int | None = None,
    check: bool = True,
) -> Path:
    """Export ``model`` (with ``normalize`` in front) to an ONNX file with a dynamic batch axis.

    Args:
        model: the classifier (left unchanged: a copy is exported).
        path: file to write.
        input_shape: ``(C, H, W)`` of one image.
        normalize: module applied to the [0, 1] images first (the run's normalisation).
        metadata: stored as JSON strings in the model's ``metadata_props``.
        opset: ONNX opset (``None``: the exporter's default).
        check: run the file in onnxruntime (when installed) on a batch of 3 and compare it with
            PyTorch; a mismatch larger than ``CHECK_TOLERANCE`` raises.

    Returns:
        ``path``.

    Raises:
        ExportError: the onnx/onnxscript packages are missing, neither exporter can trace the
            model, or the exported graph computes something else.
    """
    try:
        import onnx
    except ImportError:
        raise ExportError(
            "ONNX export needs the onnx and onnxscript packages: pip install onnx onnxscript onnxruntime"
        ) from None
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    net = _Inference(_exportable_copy(model), copy.deepcopy(normalize)).eval()
    gen = torch.Generator().manual_seed(0)
    example = torch.rand(2, *input_shape, generator=gen)  # batch 2: a batch of 1 can fold the axis away
    with torch.no_grad():
        names = _output_names(net.model(net.normalize(example)))  # also builds LTC layout caches
    failures: list[str] = []
    exporter = None
    for name, fn in (("torch.export", _export_dynamo), ("TorchScript", _export_torchscript)):
        try:
            with _quiet():
                fn(net, example, path, opset, names)
            exporter = name
            break
        except Exception as exc:  # every exporter failure is reported together below
            failures.append(f"{name} exporter: {_first_line(exc)}")
            log.debug("%s exporter failed", name, exc_info=True)
    if exporter is None:
        raise ExportError(
            f"{_model_name(model)} cannot be exported to ONNX:\n" + "\n".join(failures)
            + "\nexport --format safetensors instead (weights + config, loadable with archlab)"
        )
    sidecars = _external_data_files(path)  # the exporter may have put the weights in PATH.data
    proto = onnx.load(str(path))  # (external data loaded in)
    props = {"archlab.version": __version__, "archlab.exporter": exporter, "archlab.input": "images: float32 (N, C, H, W) in [0, 1]"}
    props.update({f"archlab.{k}": json.dumps(v, sort_keys=True) for k, v in (metadata or {}).items()})
    for k, v in props.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = k, v
    _save_onnx(proto, path, sidecars)
    if check:
        checked = _check_onnx(net, path, input_shape, model)
        if checked is not None:  # the file records that (and how closely) it was verified
            entry = proto.metadata_props.add()
            entry.key, entry.value = CHECK_KEY, json.dumps(checked, sort_keys=True)
            _save_onnx(proto, path, [])
    log.info("exported %s to %s with the %s exporter", _model_name(model), path, exporter)
    return path


#: metadata key of the onnxruntime check's result in an exported graph (see :func:`onnx_check_result`)
CHECK_KEY = "archlab.onnxruntime_check"
_PROTO_LIMIT = 2**31 - 2**24  # protobuf's 2 GiB message limit, with room for the graph itself


def _external_data_files(path: Path) -> list[Path]:
    """Files next to ``path`` that hold the external tensor data of the ONNX file ``path``."""
    import onnx
    from onnx.external_data_helper import _get_all_tensors

    proto = onnx.load(str(path), load_external_data=False)
    found = []
    for t in _get_all_tensors(proto):
        if t.data_location == onnx.TensorProto.EXTERNAL:
            loc = next((e.value for e in t.external_data if e.key == "location"), None)
            if loc:
                f = (path.parent / loc).resolve()
                if f.parent == path.parent.resolve() and f not in found:  # never outside the folder
                    found.append(f)
    return found


def _save_onnx(proto: Any, path: Path, sidecars: list[Path]) -> None:
    """Save ``proto`` as one self-contained file when it fits protobuf's 2 GiB limit, else with
    its tensors in ``PATH.data``; sidecar files the saved model no longer uses are removed."""
    import onnx

    keep: set[Path] = set()
    if proto.ByteSize() < _PROTO_LIMIT:
        onnx.save(proto, str(path))
        sidecars = [*sidecars, path.with_name(path.name + ".data")]  # a leftover of an earlier export
    else:
        data = path.with_name(path.name + ".data")
        onnx.save_model(proto, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=data.name, size_threshold=1024)
        keep.add(data.resolve())
    for f in sidecars:
        if f.resolve() not in keep:
            f.unlink(missing_ok=True)


def onnx_check_result(path: str | Path) -> dict[str, Any] | None:
    """The onnxruntime check recorded in an exported graph (``max_abs_diff``, ``batch``, ...), or None."""
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    for p in proto.metadata_props:
        if p.key == CHECK_KEY:
            return json.loads(p.value)
    return None


def _exportable_copy(model: nn.Module) -> nn.Module:
    """A copy in eval mode whose LTC cells use their plain-autograd path (traceable)."""
    from archlab.layers.ltc import LTCCell

    twin = copy.deepcopy(model).eval()
    for m in twin.modules():
        if isinstance(m, LTCCell):
            m.fused = False
    return twin


def _export_dynamo(net: nn.Module, example: torch.Tensor, path: Path, opset: int | None, names: list[str]) -> None:
    batch = torch.export.Dim("batch", min=1)
    kwargs = {"opset_version": opset} if opset is not None else {}
    program = torch.onnx.export(
        net,
        (example,),
        str(path),
        dynamo=True,
        input_names=["images"],
        output_names=names,
        dynamic_shapes={"images": {0: batch}},
        verbose=False,
        **kwargs,
    )
    if program is None and not path.is_file():  # pragma: no cover - defensive
        raise RuntimeError("the exporter wrote no file")


def _export_torchscript(
    net: nn.Module, example: torch.Tensor, path: Path, opset: int | None, names: list[str]
) -> None:
    kwargs = {"opset_version": opset} if opset is not None else {}
    torch.onnx.export(
        net,
        (example,),
        str(path),
        dynamo=False,
        input_names=["images"],
        output_names=names,
        dynamic_axes={"images": {0: "batch"}, **{n: {0: "batch"} for n in names}},
        **kwargs,
    )


def _check_onnx(
    net: nn.Module, path: Path, input_shape: tuple[int, int, int], model: nn.Module
) -> dict[str, Any] | None:
    """Run ``path`` in onnxruntime on a batch of 3 and compare with PyTorch.

    Returns:
        ``{"onnxruntime": version, "batch": 3, "max_abs_diff": d, "tolerance": ...}`` (the
        largest difference over all outputs), or None when onnxruntime is not installed.

    Raises:
        ExportError: a difference above the tolerance, or another number of outputs.
    """
    try:
        import onnxruntime as ort
    except ImportError:
        log.info("onnxruntime not installed: %s written without a numerical check", path)
        return None
    x = torch.rand(3, *input_shape, generator=torch.Generator().manual_seed(1))  # another batch size than traced
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    gots = [torch.from_numpy(a) for a in sess.run(None, {sess.get_inputs()[0].name: x.numpy()})]
    with torch.no_grad():
        wants = net(x)
    wants = list(wants) if isinstance(wants, tuple) else [wants]
    worst = 0.0
    for i, (got, want) in enumerate(zip(gots, wants)):
        scale = max(1.0, float(want.abs().max()))
        diff = float((got - want).abs().max()) if got.shape == want.shape else math.inf
        worst = max(worst, diff)
        if not diff <= CHECK_TOLERANCE * scale:
            raise ExportError(
                f"{path}: output {i} of the ONNX graph of {_model_name(model)} differs from PyTorch on a batch "
                f"of 3 (max |diff| {diff:.3g} > {CHECK_TOLERANCE * scale:.3g}, shape {tuple(got.shape)} vs "
                f"{tuple(want.shape)}); export --format safetensors instead"
            )
    if len(gots) != len(wants):
        raise ExportError(f"{path}: the ONNX graph has {len(gots)} outputs, the model {len(wants)}")
    return {"onnxruntime": ort.__version__, "batch": int(x.shape[0]), "max_abs_diff": worst,
            "tolerance": f"{CHECK_TOLERANCE:g} x max(1, max |output|)"}


def _norm_stats(norm: nn.Module | None) -> dict[str, list[float]] | None:
    if norm is None:
        return None
    return {"mean": norm.mean.flatten().tolist(), "std": norm.std.flatten().tolist()}


def _model_name(model: nn.Module) -> str:
    return getattr(model, "model_name", None) or type(model).__name__


def _first_line(exc: BaseException) -> str:
    """``Type: first line`` of the innermost cause (the exporters wrap the real reason)."""
    import re

    while exc.__cause__ is not None:
        exc = exc.__cause__
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))  # ANSI colours of the exporter's messages
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return f"{type(exc).__name__}: {(lines[0] if lines else '')[:300]}"


@contextlib.contextmanager
def _quiet():
    """Keep the exporters' progress prints and warnings out of the CLI's output (logged at debug).

    The TorchScript exporter logs graphs from C++ straight to file descriptor 1 (its log switch
    stays on in torch 2.13), so the descriptors are redirected, not only ``sys.stdout``.
    """
    import os
    import sys
    import tempfile
    import warnings

    torch_log = logging.getLogger("torch.onnx")
    level = torch_log.level
    torch_log.setLevel(logging.ERROR)  # e.g. "torchvision is not installed. Skipping torchvision::nms"
    with tempfile.TemporaryFile(mode="w+b") as sink, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(AttributeError, ValueError):
                stream.flush()
        saved = [os.dup(1), os.dup(2)]
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        buf = io.StringIO()
        try:
            with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
                yield
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            torch_log.setLevel(level)
            sink.seek(0)
            text = buf.getvalue() + sink.read().decode(errors="replace")
            if text:
                log.debug("exporter output:\n%s", text[-20000:])
