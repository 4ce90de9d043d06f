"""A run folder's files and what they record: ``result.json``, the config checks, provenance.

A run folder (``archlab train --out``, or one per grid cell of a study) holds::

    checkpoint/         the last checkpoint (:mod:`archlab.train.checkpoint`), for resume
    best.safetensors    the weights of the best validation epoch (the ones tested)
    config.json         the resolved config the run trains under
    result.json         the finished run's :class:`RunResult`, sealed with its SHA-256

A result or checkpoint is only ever reused under the config it was computed with
(:func:`check_same_config`, SPEC §11); a config recorded before an option existed is read in
today's schema (:func:`normalize_config`).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from archlab import __version__
from archlab.errors import CheckpointError, ConfigMismatch
from archlab.train.config import TrainConfig

__all__ = [
    "BEST_WEIGHTS",
    "CKPT_DIR",
    "LEGACY_DEFAULTS",
    "RESULT_FILE",
    "RunResult",
    "check_same_config",
    "config_diff",
    "normalize_config",
    "provenance",
    "read_checkpoint_config",
    "read_result",
    "write_result",
]

CKPT_DIR = "checkpoint"
BEST_WEIGHTS = "best.safetensors"
RESULT_FILE = "result.json"

@dataclass
class RunResult:
    """What one run produced (also written to ``RUN_DIR/result.json``).

    Attributes:
        config: the resolved config (``TrainConfig.model_dump()``).
        status: ``"done"``.
        best_epoch: 1-based epoch whose weights were tested.
        val: validation metrics at the best epoch.
        test: test metrics (``accuracy``, ``f1_macro``, ``dice``, ``loss``).
        history: one dict per epoch (train loss/accuracy, val metrics, lr, seconds).
        test_predictions / test_targets: per-sample predicted and true classes (paired tests).
        params / flops: model size (FLOPs of one sample's forward pass).
        train_seconds: wall time of training (all attempts of a resumed run added).
        epochs_run: epochs trained (< config.epochs after early stopping).
        provenance: package/torch versions, git commit, hardware.
    """

    config: dict[str, Any]
    status: str
    best_epoch: int
    val: dict[str, float]
    test: dict[str, float]
    history: list[dict[str, float]]
    test_predictions: list[int]
    test_targets: list[int]
    params: int
    flops: int
    train_seconds: float
    epochs_run: int
    provenance: dict[str, Any] = field(default_factory=dict)
    extras: dict[str, Any] = field(default_factory=dict)  # e.g. per-epoch gate values ("gates")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunResult:
        return cls(**d)

def _digest(payload: dict[str, Any]) -> str:
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":"), allow_nan=True).encode()
    return hashlib.sha256(blob).hexdigest()


def write_result(path: Path, result: RunResult) -> None:
    """Write ``result.json`` atomically, sealed with the SHA-256 of its content.

    The seal makes an edited file detectable; the config inside makes a file copied from another
    run detectable (:func:`read_result`).
    """
    payload = result.to_dict()
    payload = {**payload, "sha256": _digest(payload)}
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=1))
    os.replace(tmp, path)


def read_result(path: Path, config: TrainConfig) -> RunResult:
    """Read a finished run's ``result.json``; refuse one that is edited, unsealed or of another config.

    Raises:
        CheckpointError: the file is unreadable, its seal does not match its content (edited or
            truncated), or it was computed under another config (copied from another run).
    """
    try:
        payload = json.loads(path.read_text())
        if not isinstance(payload, dict):
            raise ValueError(f"holds a {type(payload).__name__}, expected an object")
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise CheckpointError(f"{path} is unreadable ({exc}); delete it to train the run again") from None
    seal = payload.pop("sha256", None)
    if seal is None or seal != _digest(payload):
        raise CheckpointError(
            f"{path} does not match its seal ({'missing' if seal is None else 'content changed'}): it was edited or "
            "truncated, so its metrics cannot be trusted; delete it (the run's checkpoint, if any, resumes)"
        )
    check_same_config(payload.get("config") or {}, config, path)
    try:
        return RunResult.from_dict(payload)
    except TypeError as exc:
        raise CheckpointError(f"{path} is not a result of this archlab version ({exc}); delete it") from None


def read_checkpoint_config(dir: Path) -> dict[str, Any]:
    """The config a checkpoint was saved with (its ``config.json``)."""
    path = dir / "config.json"
    try:
        cfg = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise CheckpointError(f"checkpoint file {path} is missing or corrupt ({exc}); delete {dir} to start afresh") from None
    if not isinstance(cfg, dict):
        raise CheckpointError(f"checkpoint file {path} holds a {type(cfg).__name__}, expected a JSON object")
    return cfg


def check_same_config(found: dict[str, Any], config: TrainConfig, where: Path) -> None:
    """Refuse to resume (or reuse) state computed under another config than ``config``.

    Raises:
        ConfigMismatch: (exit 2) naming the differing keys and the ways out.
    """
    want = json.loads(json.dumps(config.model_dump(mode="json"), sort_keys=True))
    found = normalize_config(found)
    if found == want:
        return
    diff = config_diff(found, want)
    shown = "; ".join(diff[:6]) + (f" (+{len(diff) - 6} more)" if len(diff) > 6 else "")
    raise ConfigMismatch(
        f"{where} was computed with another config ({shown}, recorded -> requested); it is never resumed or "
        "reused under a different config. Use the recorded config to continue it, another --out for the new "
        "config, or --no-resume to start this folder afresh"
    )


#: Options whose default is ``"auto"`` but which a config recorded before they existed ran without.
LEGACY_DEFAULTS: dict[str, Any] = {"fused_optimizer": False}


def normalize_config(config: dict[str, Any]) -> dict[str, Any]:
    """A recorded config in today's schema: options added since it was recorded take their defaults.

    New options always default to the old behaviour, so a config recorded before they existed
    means the same computation; one that no longer validates is returned unchanged (and then
    differs from any valid config).
    """
    config = {**LEGACY_DEFAULTS, **config} if isinstance(config, dict) else config
    try:
        canon = TrainConfig.model_validate(config).model_dump(mode="json")
    except ValueError:
        return config
    return json.loads(json.dumps(canon, sort_keys=True))


def config_diff(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two config dicts, as ``key: old -> new``."""
    out: list[str] = []
    for k in sorted(set(old) | set(new), key=str):
        a, b = old.get(k, "<unset>"), new.get(k, "<unset>")
        if isinstance(a, dict) and isinstance(b, dict):
            out += config_diff(a, b, f"{prefix}{k}.")
        elif a != b:
            out.append(f"{prefix}{k}: {a!r} -> {b!r}")
    return out

def provenance(device: torch.device | None = None) -> dict[str, Any]:
    """Versions, git commit and hardware a result was produced with."""
    info: dict[str, Any] = {
        "archlab": __version__,
        "git_commit": _git_commit(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "device": str(device) if device is not None else "cpu",
    }
    if device is not None and device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def _git_commit() -> str | None:
    root = Path(__file__).resolve().parents[2]
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None
