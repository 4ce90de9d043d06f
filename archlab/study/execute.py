"""Executing one study run, wherever it runs: the study process, a worker process or a Ray task.

Every backend (:mod:`archlab.study.backends`: inline, local worker processes, Ray) calls
:func:`execute_run` with the same arguments and sends its outcome dict back to the study process,
the only writer of the study database. Nothing here knows about processes: a worker's watchdog
comes in as a callback (:func:`archlab.study.backends.local.execute_in_worker`).

Invariance (SPEC §5): everything that decides a run's numbers is in its resolved config, the
torch thread count included (``train.threads``, fixed by the study, never derived from
``--workers`` or the machine's core count). So a study gives identical runs on 1 or N workers, here
or on a Ray cluster.

Ownership (SPEC §11): a run folder carries ``owner.json`` (study id, dataset, variant, seed),
written before the first checkpoint. A folder that belongs to another run is refused, so no run
can resume another's checkpoint or store another's result; the engine checks the config of every
checkpoint and result it reuses against the run's config.
"""

from __future__ import annotations

import json
import os
import traceback
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

from archlab.errors import ArchlabError, ConfigError
from archlab.plugins import ensure_plugins
from archlab.study.config import RunKey
from archlab.study.progress import ProgressWriter, steps_per_epoch
from archlab.study.tuning import guard_test
from archlab.train.config import DataConfig, TrainConfig

__all__ = ["execute_run", "load_splits", "run_dir", "OWNER_FILE", "check_owner"]

OWNER_FILE = "owner.json"


@lru_cache(maxsize=8)  # a resolution study holds the unresized splits and one copy per resolution
def load_splits(data_json: str):
    """The splits of a data config, loaded once per process (a study's runs share them)."""
    # imported here, as the engine is: the data stack's imports come after the study's workers started
    from archlab.data.resolution import resize_splits
    from archlab.train.engine import prepare_data

    data = DataConfig.model_validate_json(data_json)
    if data.resize is not None:  # a per-variant resolution: the unresized splits, loaded once, resized
        return resize_splits(load_splits(data.model_copy(update={"resize": None}).model_dump_json()), data.resize)
    return prepare_data(TrainConfig(data=data))


def run_dir(out: Path, key: RunKey) -> Path:
    """The folder of one run's checkpoints and result: ``out/runs/<dataset>/<variant>/seed<k>``.

    Dataset labels and variant names are validated folder names (:mod:`archlab.study.config`), so
    every grid cell has its own folder inside ``out``; the check below keeps that true by
    construction even for a hand-made :class:`RunKey`.
    """
    runs = (out / "runs").resolve()
    path = (runs / key.dataset / key.variant / f"seed{int(key.seed)}").resolve()
    if path.parent.parent.parent != runs:
        raise ConfigError(f"run {key.label!r} would not get its own folder under {runs}; rename the dataset/variant")
    return out / "runs" / key.dataset / key.variant / f"seed{int(key.seed)}"


def check_owner(run_dir: Path, owner: dict[str, Any], *, claim: bool) -> None:
    """Refuse a run folder that belongs to another run; with ``claim`` write ``owner.json`` first.

    Raises:
        ConfigError: the folder's ``owner.json`` names another study, cell or config, or is
            unreadable (a copied or edited folder).
    """
    path = run_dir / OWNER_FILE
    if path.is_file():
        try:
            found = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ConfigError(f"{path} is unreadable ({exc}); this run folder cannot be trusted: delete it") from None
        if found != owner:
            diff = sorted(k for k in set(found) | set(owner) if (found.get(k) if isinstance(found, dict) else None) != owner.get(k))
            raise ConfigError(
                f"{run_dir} belongs to another run ({', '.join(diff)} differ: "
                f"{ {k: found.get(k) for k in diff} if isinstance(found, dict) else found!r} vs "
                f"{ {k: owner.get(k) for k in diff} }); it was copied or left by another study — "
                "delete the folder or use another --out"
            )
        return
    if any(run_dir.iterdir()) if run_dir.is_dir() else False:
        raise ConfigError(
            f"{run_dir} holds files but no {OWNER_FILE}; it was not written by this study "
            "(a copied or foreign folder) — delete it or use another --out"
        )
    if claim:
        run_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(owner, indent=1, sort_keys=True))
        os.replace(tmp, path)


def execute_run(config_json: str, out: str, owner: dict[str, Any] | None = None,
                watchdog: Callable[[], None] | None = None) -> dict[str, Any]:
    """Train one run; returns ``{"ok": True, "result": ...}`` or ``{"ok": False, "error": ...}``.

    Args:
        config_json: the resolved run config (its ``threads`` sets torch's intra-op threads).
        out: the run folder.
        owner: the identity this folder must carry (written on first use, checked after).
        watchdog: called before every step (a worker process exits there when the study process
            has died, kill -9, instead of racing the run's next attempt).
    """
    from archlab.train.engine import train

    try:  # the run's own plugins first (a local worker, a Ray task): their components build its model
        ensure_plugins(json.loads(config_json).get("plugins") or [], f"run {out}")
    except ArchlabError as exc:
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    config = TrainConfig.model_validate_json(config_json)
    # The thread count is part of the config: float reductions depend on it (never on --workers).
    torch.set_num_threads(config.threads or 1)

    try:
        if owner is not None:
            check_owner(Path(out), owner, claim=True)
        splits = load_splits(config.data.model_dump_json())
        # a tuning trial (owner phase "tune") selects on validation only: reading the test split raises
        trial = owner is not None and owner.get("phase") == "tune"
        if trial:
            splits = guard_test(splits, f"tuning trial {owner['variant']!r} seed {owner['seed']}")
        # RUN_DIR/progress.json (epoch, step; at most ~1 write/s) for `study run`'s live display
        progress = ProgressWriter(out, steps_per_epoch(len(splits.train), config.batch_size, config.drop_last),
                                  config.epochs)

        def on_step(step: int) -> None:
            if watchdog is not None:
                watchdog()
            progress(step)

        result = train(config, out, resume=True, splits=splits, on_step=on_step, evaluate_test=not trial)
        return {"ok": True, "result": result.to_dict()}
    except ArchlabError as exc:
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    except Exception as exc:  # a failed run is recorded with its reason; the study goes on
        tb = traceback.format_exc(limit=3)
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}\n{tb}"}
