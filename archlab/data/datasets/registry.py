"""The dataset registry: register a loader, list them, load one by name.

The format modules (one file per on-disk format) register into it; :mod:`archlab.data.datasets`
imports them all and re-exports this module's names. It imports no format module, so there is no
package <-> module import circle.

A loader is a function ``loader(*, root: Path, **options) -> dict[str, ImageDataset]`` returning
the parts of a dataset keyed ``"train"`` and, when the format has an official test set,
``"test"``. Register one with :func:`register_dataset` and load by name with
:func:`load_dataset`::

    parts = load_dataset("mnist", root="~/data")          # reads ~/data/mnist/*.gz
    parts = load_dataset("digits", image_size=28)          # bundled, no download
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from archlab.data._dataset import ImageDataset
from archlab.data.load_options import LOAD_OPTIONS, apply_load_options
from archlab.errors import ConfigError, DataError, UnknownNameError

__all__ = [
    "register_dataset",
    "list_datasets",
    "dataset_loader",
    "load_dataset",
    "default_root",
    "missing_file_error",
]

Loader = Callable[..., dict[str, ImageDataset]]

#: name -> loader. The only mutable module state: filled once, at import, by the decorators.
_DATASETS: dict[str, Loader] = {}

#: environment variable naming the default data root (else ``~/.cache/archlab/data``).
DATA_ROOT_ENV = "ARCHLAB_DATA"


def register_dataset(name: str) -> Callable[[Loader], Loader]:
    """Decorator registering ``fn`` as the loader of dataset ``name``.

    The loader's keyword parameters other than ``root`` are the dataset's options; they are what
    :func:`load_dataset` accepts.
    """

    def deco(fn: Loader) -> Loader:
        old = _DATASETS.get(name)
        if old is not None and (old.__module__, old.__qualname__) != (
            fn.__module__,
            fn.__qualname__,
        ):
            raise ConfigError(f"dataset {name!r} is already registered (by {old.__module__})")
        _DATASETS[name] = fn
        return fn

    return deco


def list_datasets() -> list[str]:
    """Names of all registered datasets, sorted."""
    return sorted(_DATASETS)


def dataset_loader(name: str) -> Loader:
    """The loader registered as ``name`` (its keyword parameters other than ``root`` are its options).

    Raises:
        UnknownNameError: ``name`` is not registered.
    """
    if name not in _DATASETS:
        raise UnknownNameError("dataset", name, _DATASETS)
    return _DATASETS[name]


def default_root() -> Path:
    """The data root used when ``root`` is None: ``$ARCHLAB_DATA`` or ``~/.cache/archlab/data``."""
    return Path(os.environ.get(DATA_ROOT_ENV, "~/.cache/archlab/data")).expanduser()


def _options(fn: Loader) -> list[str]:
    return [
        p.name
        for p in inspect.signature(fn).parameters.values()
        if p.name != "root" and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]


def load_dataset(
    name: str, *, root: str | os.PathLike | None = None, **options: Any
) -> dict[str, ImageDataset]:
    """Load the parts of dataset ``name``.

    Args:
        name: a registered name (see :func:`list_datasets`).
        root: data root; file-based datasets read ``root/<name>/``; ``image_folder`` reads
            ``root`` itself. Default :func:`default_root`.
        **options: the dataset's options (e.g. ``image_size=28`` for ``digits``), and the options
            every dataset takes (:mod:`archlab.data.load_options`: ``image_size``, ``channels``,
            ``per_class``, ``subset``, ``subset_seed``) where the loader has none of that name.

    Returns:
        ``{"train": ImageDataset}`` plus ``"test"`` when the format has an official test set.

    Raises:
        UnknownNameError: ``name`` is not registered (with a suggestion).
        ConfigError: an option the dataset does not accept, or a bad option value.
        DataError: missing or malformed files.
    """
    if name not in _DATASETS:
        raise UnknownNameError("dataset", name, _DATASETS)
    fn = _DATASETS[name]
    own = _options(fn)
    accepted = own + [k for k in LOAD_OPTIONS if k not in own]
    unknown = [k for k in options if k not in accepted]
    if unknown:
        raise ConfigError(
            f"unknown option {unknown[0]!r} for dataset {name!r}; accepted options: "
            f"{', '.join(accepted) if accepted else '(none)'}"
        )
    shared = {k: v for k, v in options.items() if k not in own}
    root_path = Path(root).expanduser() if root is not None else default_root()
    parts = fn(root=root_path, **{k: v for k, v in options.items() if k in own})
    if "train" not in parts:  # a loader bug, not a user error
        raise RuntimeError(f"loader of dataset {name!r} returned no 'train' part")
    return apply_load_options(parts, name, shared) if shared else parts


def missing_file_error(path: Path, dataset: str) -> DataError:
    """The DataError for a missing dataset file, saying how to get it.

    The data root in the hint is the folder above ``<dataset>/`` in ``path``.
    """
    root = next((p.parent for p in path.parents if p.name == dataset), path.parent)
    return DataError(
        f"{dataset}: file not found: {path}; get it with `archlab data download {dataset} "
        f"--data-root {root}` (or place the official files in {path.parent}; their addresses and "
        "checksums are in archlab.data.download)"
    )
