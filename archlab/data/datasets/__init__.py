"""Dataset loaders, one file per on-disk format, behind one registry (:mod:`.registry`).

A loader is a function ``loader(*, root: Path, **options) -> dict[str, ImageDataset]`` returning
the parts of a dataset keyed ``"train"`` and, when the format has an official test set,
``"test"``. Register one with :func:`register_dataset` and load by name with
:func:`load_dataset`::

    parts = load_dataset("mnist", root="~/data")          # reads ~/data/mnist/*.gz
    parts = load_dataset("digits", image_size=28)          # bundled, no download
"""

from __future__ import annotations

# The format modules register their loaders when imported (the package's only import-time effect).
from archlab.data.datasets import (  # noqa: F401
    cifar,
    digits,
    idx,
    image_folder,
    quickdraw,
    segmentation,
    stl10,
    svhn,
    synthetic,
)
from archlab.data.datasets.registry import (
    DATA_ROOT_ENV,
    Loader,
    dataset_loader,
    default_root,
    list_datasets,
    load_dataset,
    missing_file_error,
    register_dataset,
)

__all__ = [
    "register_dataset",
    "list_datasets",
    "dataset_loader",
    "load_dataset",
    "default_root",
    "missing_file_error",
    "DATA_ROOT_ENV",
    "Loader",
]
