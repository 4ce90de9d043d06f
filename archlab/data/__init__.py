"""Data: in-memory uint8 datasets, real on-disk formats, seeded splits, batched augmentation.

parts = load_dataset("digits", image_size=28)        # {"train": ImageDataset}
splits = make_splits(parts, val_fraction=0.1, test_fraction=0.2, seed=0)
loader = DeviceLoader(splits.train, 128, shuffle=True, seed=0,
                      augment=build_augment("cifar", image_size=(28, 28), in_chans=1))
for x, y in loader.epoch(3):                          # (B, 1, 28, 28) float32, (B,) int64
    ...
"""

from archlab.data._dataset import ImageDataset, check_finite, to_uint8_images
from archlab.data.augment import Normalize, build_augment, build_eval_transform, dataset_stats
from archlab.data.datasets import list_datasets, load_dataset, register_dataset
from archlab.data.datasets.cifar import safe_unpickle, write_cifar_batch
from archlab.data.datasets.idx import read_idx, write_idx
from archlab.data.loader import DeviceLoader
from archlab.data.splits import Splits, make_splits, split_indices

__all__ = [
    "ImageDataset",
    "check_finite",
    "to_uint8_images",
    "load_dataset",
    "list_datasets",
    "register_dataset",
    "make_splits",
    "split_indices",
    "Splits",
    "DeviceLoader",
    "build_augment",
    "build_eval_transform",
    "Normalize",
    "dataset_stats",
    "read_idx",
    "write_idx",
    "safe_unpickle",
    "write_cifar_batch",
]
