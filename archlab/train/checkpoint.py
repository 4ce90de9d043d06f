"""Checkpoints: safetensors weights + JSON config + a ``weights_only``-loadable training state.

A checkpoint is a directory::

    model.safetensors   the model's state_dict (safetensors: no code runs when it is read)
    config.json         the resolved run config (sorted keys)
    train_state.pt      torch.save of plain types and tensors only: optimizer/scheduler state
                        dicts, RNG states, epoch/step position, best metric, history

Saving is atomic per file and all-or-nothing in practice: every file is first written in full to
a temporary name in the same directory (and fsynced); only then are the three renamed over the
old ones with ``os.replace``. A failure while writing leaves the previous checkpoint untouched.
Both ``model.safetensors`` and ``train_state.pt`` carry the same ``checkpoint_id``, so a process
killed between two renames leaves a checkpoint that :func:`load_checkpoint` rejects as torn instead
of resuming from mismatched parts.

Untrusted files are never unpickled (SPEC §11): weights via safetensors, everything else via
``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import io
import os
import shutil
import random
import uuid
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import Tensor, nn

from archlab.errors import CheckpointError

__all__ = [
    "CONFIG_FILE",
    "MODEL_FILE",
    "STATE_FILE",
    "capture_rng_state",
    "checkpoint_folders",
    "load_checkpoint",
    "load_state_dict_file",
    "read_weights",
    "recover_checkpoint",
    "restore_rng_state",
    "previous_dir",
    "save_checkpoint",
    "staging_dir",
]

log = logging.getLogger(__name__)

_COMPLETE = "COMPLETE"  # written last into the staging folder
MODEL_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
STATE_FILE = "train_state.pt"

_ID_KEY = "checkpoint_id"
_SHOW = 5  # how many keys an error message lists


# ----------------------------------------------------------------------------------------------
# RNG state


def capture_rng_state() -> dict[str, Any]:
    """Snapshot of every global random generator, as plain types and tensors.

    Returns:
        ``{"torch": ByteTensor, "cuda": list[ByteTensor] | None, "python": tuple,
        "numpy": dict}`` — storable in ``train_state.pt`` and loadable with ``weights_only``.
    """
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        "python": random.getstate(),
        "numpy": {
            "kind": str(kind),
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),  # uint32 -> int64
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
    }


def restore_rng_state(state: Mapping[str, Any]) -> None:
    """Restore the generators captured by :func:`capture_rng_state`.

    CUDA states are restored when CUDA is available (for as many devices as both have); a
    checkpoint written without CUDA leaves the CUDA generators as they are.

    Raises:
        CheckpointError: ``state`` is not a captured RNG state.
    """
    try:
        torch.set_rng_state(state["torch"])
        cuda = state.get("cuda")
        if cuda and torch.cuda.is_available():
            for i, s in enumerate(cuda[: torch.cuda.device_count()]):
                torch.cuda.set_rng_state(s, device=i)
        version, internal, gauss = state["python"]
        random.setstate((version, tuple(internal), gauss))
        npst = state["numpy"]
        np.random.set_state((npst["kind"], npst["keys"].numpy().astype(np.uint32),
                             npst["pos"], npst["has_gauss"], npst["cached_gaussian"]))
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as exc:
        raise CheckpointError(f"malformed RNG state ({type(exc).__name__}: {exc}); expected "
                              "the dict made by capture_rng_state()") from exc


# ----------------------------------------------------------------------------------------------
# writing


def _check_plain(obj: Any, where: str) -> None:
    """Raise unless ``obj`` holds only types that ``torch.load(weights_only=True)`` accepts."""
    # exact types: numpy.float64 is a float subclass, yet weights_only loading refuses it
    if obj is None or type(obj) in (bool, int, float, str, Tensor, nn.Parameter, torch.Size,
                                    torch.dtype, torch.device):
        return
    if type(obj) in (dict, OrderedDict):
        for k, v in obj.items():
            if not isinstance(k, (str, int)):
                raise CheckpointError(f"{where} has a key {k!r} of type {type(k).__name__}; "
                                      "use str or int keys")
            _check_plain(v, f"{where}[{k!r}]")
        return
    if type(obj) in (list, tuple):
        for i, v in enumerate(obj):
            _check_plain(v, f"{where}[{i}]")
        return
    raise CheckpointError(f"{where} is a {type(obj).__module__}.{type(obj).__qualname__}; the "
                          "training state may hold only None/bool/int/float/str, tensors, "
                          "dicts, lists and tuples (convert e.g. numpy values with float())")


def _json_default(obj: Any) -> Any:
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"{type(obj).__name__} is not JSON serializable")


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):  # not supported on every platform/file system
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def save_checkpoint(dir: Path, *, model: nn.Module, config: dict[str, Any],
                    state: dict[str, Any]) -> Path:
    """Write a checkpoint directory atomically (see the module docstring).

    Args:
        dir: checkpoint directory (created if needed; an existing checkpoint there is replaced).
        model: the model; its ``state_dict`` goes to ``model.safetensors`` (tensors are copied
            to CPU, contiguous and unshared, so tied or strided tensors save fine).
        config: the resolved, JSON-serializable run config.
        state: training state — optimizer/scheduler state dicts, epoch/step, best metric,
            history, ... — of plain types and tensors only. An ``"rng"`` entry is added with
            :func:`capture_rng_state` unless present.

    Returns:
        ``dir`` as a Path.

    Raises:
        CheckpointError: a non-tensor in the state dict, a non-plain value in ``state`` (named
            by its path) or a config that is not JSON-serializable. Nothing is replaced then.
    """
    dir = Path(dir)
    ckpt_id = uuid.uuid4().hex
    tensors: dict[str, Tensor] = {}
    for k, v in model.state_dict().items():
        if not isinstance(v, Tensor):
            raise CheckpointError(f"state_dict entry {k!r} is a {type(v).__name__}, not a "
                                  "tensor; safetensors stores tensors only")
        # clone: safetensors refuses shared (tied) and non-contiguous tensors
        tensors[k] = v.detach().to("cpu").clone(memory_format=torch.contiguous_format)
    state = dict(state)
    state.setdefault("rng", capture_rng_state())
    state[_ID_KEY] = ckpt_id
    _check_plain(state, "state")
    try:
        config_text = json.dumps(config, sort_keys=True, indent=2, default=_json_default)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"config is not JSON-serializable: {exc}") from exc
    weights = st_save(tensors, metadata={"format": "pt", _ID_KEY: ckpt_id})

    # The three files are written into a staging folder, then the folders are swapped: a kill at
    # any moment leaves either the previous or the new checkpoint complete (see recover_checkpoint).
    recover_checkpoint(dir)
    staging, previous = staging_dir(dir), previous_dir(dir)
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        _write_synced(staging / MODEL_FILE, weights)
        _write_synced(staging / CONFIG_FILE, (config_text + "\n").encode())
        buf = io.BytesIO()
        torch.save(state, buf)
        _write_synced(staging / STATE_FILE, buf.getvalue())
        _write_synced(staging / _COMPLETE, ckpt_id.encode())
        _fsync_dir(staging)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if dir.exists():
        shutil.rmtree(previous, ignore_errors=True)
        os.replace(dir, previous)
    os.replace(staging, dir)
    shutil.rmtree(previous, ignore_errors=True)
    _fsync_dir(dir.parent)
    return dir


def recover_checkpoint(dir: Path) -> bool:
    """Finish or roll back a checkpoint swap that a kill interrupted; True if ``dir`` holds one.

    :func:`save_checkpoint` writes ``<dir>.new`` completely (ending with a marker file), moves
    ``dir`` aside to ``<dir>.old`` and renames ``<dir>.new`` to ``dir``. If ``dir`` is missing, a
    complete ``.new`` is promoted, else the ``.old`` one is restored; leftovers are removed.
    """
    dir = Path(dir)
    staging, previous = staging_dir(dir), previous_dir(dir)
    if not dir.exists():
        if (staging / _COMPLETE).is_file():
            os.replace(staging, dir)
        elif previous.is_dir():
            os.replace(previous, dir)
    if dir.exists():
        for leftover in (staging, previous):
            if leftover.exists():
                shutil.rmtree(leftover, ignore_errors=True)
    return (dir / STATE_FILE).is_file()


def staging_dir(dir: Path) -> Path:
    """Where :func:`save_checkpoint` writes the next checkpoint of ``dir`` before the swap (``<dir>.new``)."""
    return dir.with_name(dir.name + ".new")


def previous_dir(dir: Path) -> Path:
    """Where the replaced checkpoint of ``dir`` waits during the swap (``<dir>.old``)."""
    return dir.with_name(dir.name + ".old")


def checkpoint_folders(dir: Path) -> tuple[Path, Path, Path]:
    """Every folder a checkpoint at ``dir`` may occupy: ``dir`` and its staging and previous folders.

    A run folder holding any of them holds training progress (a kill may leave only the staging one).
    """
    dir = Path(dir)
    return dir, staging_dir(dir), previous_dir(dir)


def _write_synced(path: Path, data: bytes) -> None:
    with open(path, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


# ----------------------------------------------------------------------------------------------
# reading


def _read_weights(path: Path, fix: str = "delete the checkpoint directory to start over"
                  ) -> tuple[dict[str, Tensor], dict[str, str]]:
    if not path.is_file():
        raise CheckpointError(f"checkpoint file {path} is missing")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (not a dict)
    except Exception as exc:  # SafetensorError, OSError, header errors: all mean unreadable
        raise CheckpointError(f"checkpoint file {path} is corrupt or not a safetensors file "
                              f"({exc}); {fix}") from None
    return tensors, meta


def read_weights(path: Path, *, fix: str) -> dict[str, Tensor]:
    """The tensors of a safetensors file archlab wrote (a run's ``best.safetensors``), as stored.

    Args:
        path: the file.
        fix: what the user can do when it is unreadable (ends the error message).

    Raises:
        CheckpointError: the file is missing, truncated or not safetensors (one line, no traceback).
    """
    return _read_weights(Path(path), fix)[0]


def _shape_report(model_sd: Mapping[str, Tensor], loaded: Mapping[str, Tensor]
                  ) -> tuple[list[str], list[str], list[str]]:
    missing = [k for k in model_sd if k not in loaded]
    unexpected = [k for k in loaded if k not in model_sd]
    mismatched = [f"{k}: checkpoint {tuple(loaded[k].shape)} vs model {tuple(v.shape)}"
                  for k, v in model_sd.items() if k in loaded and loaded[k].shape != v.shape]
    return missing, unexpected, mismatched


def _listing(label: str, items: list[str]) -> str:
    more = f" (+{len(items) - _SHOW} more)" if len(items) > _SHOW else ""
    return f"{len(items)} {label}: {', '.join(items[:_SHOW])}{more}"


def load_checkpoint(dir: Path, *, model: nn.Module, strict: bool = True
                    ) -> tuple[dict[str, Any], dict[str, Any]]:
    """Load a checkpoint written by :func:`save_checkpoint` into ``model``.

    Args:
        dir: checkpoint directory.
        model: a model built from the checkpoint's config; its tensors are overwritten in place
            (on whatever device they live).
        strict: when False, load only the tensors whose name and shape match and log the rest
            instead of failing.

    Returns:
        ``(config, state)``: the config dict and the training state (optimizer/scheduler state
        dicts, ``state["rng"]`` for :func:`restore_rng_state`, position, history, ...). Tensors in
        ``state`` are on the CPU; ``optimizer.load_state_dict`` moves them to the parameters'
        device.

    Raises:
        CheckpointError: a missing or corrupt file (named), a torn checkpoint (interrupted
            save), or — with ``strict`` — weights of another architecture (missing/unexpected
            keys and mismatched shapes are listed).
    """
    dir = Path(dir)
    recover_checkpoint(dir)
    if not dir.is_dir():
        raise CheckpointError(f"checkpoint directory {dir} does not exist")
    config_path, state_path = dir / CONFIG_FILE, dir / STATE_FILE
    tensors, meta = _read_weights(dir / MODEL_FILE)

    if not config_path.is_file():
        raise CheckpointError(f"checkpoint file {config_path} is missing")
    try:
        config = json.loads(config_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"checkpoint file {config_path} is corrupt ({exc})") from exc
    if not isinstance(config, dict):
        raise CheckpointError(f"checkpoint file {config_path} holds a {type(config).__name__}, "
                              "expected a JSON object")

    if not state_path.is_file():
        raise CheckpointError(f"checkpoint file {state_path} is missing")
    try:
        state = torch.load(state_path, map_location="cpu", weights_only=True)
    except Exception as exc:  # UnpicklingError, RuntimeError, EOFError, ... all mean corrupt
        raise CheckpointError(f"checkpoint file {state_path} is corrupt or holds more than "
                              f"plain data and tensors ({type(exc).__name__}: {exc})") from exc
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint file {state_path} holds a {type(state).__name__}, "
                              "expected a dict")

    if meta.get(_ID_KEY) != state.get(_ID_KEY):
        raise CheckpointError(f"checkpoint {dir} is torn: {MODEL_FILE} and {STATE_FILE} come "
                              "from different saves (a save was interrupted); delete it or "
                              "resume from an earlier checkpoint")
    state.pop(_ID_KEY, None)

    model_sd = model.state_dict()
    missing, unexpected, mismatched = _shape_report(model_sd, tensors)
    if missing or unexpected or mismatched:
        parts = [_listing(lbl, items) for lbl, items in (("missing keys", missing),
                 ("unexpected keys", unexpected), ("shape mismatches", mismatched)) if items]
        arch = config.get("model", config.get("arch"))
        where = f" (checkpoint config: model={arch!r})" if arch is not None else ""
        msg = (f"checkpoint {dir / MODEL_FILE} does not fit {type(model).__name__}{where}: "
               + "; ".join(parts))
        if strict:
            raise CheckpointError(msg + ". It was saved from another architecture: build the "
                                  f"model from {dir / CONFIG_FILE}, or pass strict=False to "
                                  "load only the matching tensors")
        log.warning("%s; loading the %d matching tensors only", msg,
                    len(model_sd) - len(missing) - len(mismatched))
        bad = set(unexpected) | {m.split(":")[0] for m in mismatched}
        tensors = {k: v for k, v in tensors.items() if k not in bad}
    model.load_state_dict(tensors, strict=False)
    return config, state


_TORCH_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")


def load_state_dict_file(path: Path) -> dict[str, Tensor]:
    """Read a state dict (e.g. torchvision weights) without unpickling arbitrary objects.

    ``.safetensors`` files are read with safetensors; ``.pt``/``.pth``/``.bin``/``.ckpt`` with
    ``torch.load(weights_only=True)`` only. A top-level wrapper ``{"state_dict": {...}}`` or
    ``{"model": {...}}`` is unwrapped, and a ``module.`` prefix on every key (DataParallel) is
    stripped. Tensors are returned on the CPU.

    Args:
        path: the weights file.

    Returns:
        Parameter/buffer name -> tensor.

    Raises:
        CheckpointError: missing file, unsupported suffix, corrupt file, a file that needs full
            unpickling, or content that is not a dict of tensors.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"weights file {path} is missing")
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        try:
            sd: Any = st_load(path.read_bytes())
        except Exception as exc:  # SafetensorError and header-parsing errors
            raise CheckpointError(f"weights file {path} is corrupt or not safetensors "
                                  f"({exc})") from exc
    elif suffix in _TORCH_SUFFIXES:
        try:
            sd = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise CheckpointError(
                f"weights file {path} could not be read with torch.load(weights_only=True) "
                f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
                "archlab never unpickles arbitrary objects — convert it to a plain state_dict "
                "or to .safetensors") from exc
    else:
        raise CheckpointError(f"weights file {path} has an unsupported suffix {suffix!r}; "
                              f"use .safetensors or one of {', '.join(_TORCH_SUFFIXES)}")
    if isinstance(sd, dict):
        for wrapper in ("state_dict", "model"):
            inner = sd.get(wrapper)
            if isinstance(inner, dict) and inner and all(isinstance(v, Tensor)
                                                         for v in inner.values()):
                sd = inner
                break
    if not isinstance(sd, dict) or not all(isinstance(k, str) and isinstance(v, Tensor)
                                           for k, v in sd.items()):
        raise CheckpointError(f"weights file {path} does not hold a state_dict "
                              "(a dict of name -> tensor)")
    if sd and all(k.startswith("module.") for k in sd):
        sd = {k[len("module."):]: v for k, v in sd.items()}
    return dict(sd)
