"""Class-per-folder images (the torchvision ``ImageFolder`` layout), e.g. the seed-000 X-ray set.

``root/<class>/<image>``; class names are the sorted sub-folder names. When ``root`` holds
``train/`` and ``test/`` folders that each contain class folders, both parts are returned with the
class list of ``train/``. Images are decoded with PIL once at load time, converted to ``mode`` and
resized (bilinear) to ``image_size``, so folders of mixed sizes, greyscale/RGB/RGBA/palette and
16-bit greyscale (common for X-rays, scaled to 8 bits) load into one uint8 tensor.

Decoding thousands of X-rays is slow, so the decoded uint8 tensor of each part is cached on disk
(``<root>/.archlab_cache/<part>-<key>.npz``, or under ``$ARCHLAB_CACHE/image_folder/`` when that
environment variable is set, or in ``cache_dir``). The key hashes the
file list with sizes and modification times and every option that changes the pixels, so a changed,
added or removed file, or another ``image_size``/``mode``, never reads a stale cache.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import stat
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from archlab._seed import make_generator
from archlab.data._dataset import ImageDataset
from archlab.data.datasets.registry import register_dataset
from archlab.errors import ConfigError, DataError

__all__ = ["load_image_folder", "IMAGE_EXTENSIONS"]

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (
    ".png",
    ".jpg",
    ".jpeg",
    ".bmp",
    ".gif",
    ".tif",
    ".tiff",
    ".webp",
    ".pgm",
    ".ppm",
    ".pbm",
)
_JUNK = {"thumbs.db", "desktop.ini"}  # system files silently ignored, like dot-files
_CACHE_DIR = ".archlab_cache"  # a dot-folder: never mistaken for a class folder
CACHE_ENV = "ARCHLAB_CACHE"  # moves the decoded-image cache out of the data folder (e.g. read-only data)


def default_cache_dir(root: Path) -> Path:
    """``$ARCHLAB_CACHE/image_folder`` when set (one folder for every root: the cache key holds
    the root), else ``<root>/.archlab_cache``."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() / "image_folder" if env else root / _CACHE_DIR
_CACHE_VERSION = 1  # bump when the decoding changes, so old caches are not read


def _class_dirs(folder: Path) -> list[Path]:
    return sorted(
        (p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")),
        key=lambda p: p.name,
    )


def _size(image_size: int | Sequence[int] | None) -> tuple[int, int] | None:
    if image_size is None:
        return None
    if isinstance(image_size, int) and not isinstance(image_size, bool):
        hw = (image_size, image_size)
    elif (
        isinstance(image_size, Sequence)
        and len(image_size) == 2
        and all(isinstance(v, int) for v in image_size)
    ):
        hw = (int(image_size[0]), int(image_size[1]))
    else:
        hw = (0, 0)
    if min(hw) < 1:
        raise ConfigError(
            "image_folder: image_size must be an int or (h, w) of positive ints, "
            f"got {image_size!r}"
        )
    return hw


def _bomb_error(f: Path, pixels: str, size: tuple[int, int] | None) -> DataError:
    target = f"{size[0]}x{size[1]}" if size is not None else "None (the images' own size)"
    return DataError(
        f"{f} is {pixels} pixels, more than the {Image.MAX_IMAGE_PIXELS:,} PIL decodes safely "
        f"(a decompression bomb, or an image far larger than image_size={target} needs); "
        "shrink or remove it, or pass on_error='skip'"
    )


def _decode(f: Path, mode: str, size: tuple[int, int] | None) -> np.ndarray:
    """Decode one image file to a uint8 ``(h, w)`` / ``(h, w, 3)`` array.

    Images above ``PIL.Image.MAX_IMAGE_PIXELS`` are refused from their header, before decoding.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im_ctx = Image.open(f)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        dims = re.search(r"\((\d+) pixels\)", str(e))
        raise _bomb_error(f, f"{int(dims.group(1)):,}" if dims else "too many", size) from None
    with im_ctx as im:
        w, h = im.size
        if Image.MAX_IMAGE_PIXELS and w * h > Image.MAX_IMAGE_PIXELS:
            raise _bomb_error(f, f"{w}x{h} = {w * h:,}", size)
        if im.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
            # 16/32-bit greyscale (X-rays): PIL's convert("L") would clip at 255, so scale instead
            a = np.asarray(im).astype(np.int64)
            bits = 16 if im.mode.startswith("I;16") or a.max(initial=0) < 65536 else 32
            im = Image.fromarray((np.clip(a, 0, None) >> (bits - 8)).astype(np.uint8), "L")
        elif im.mode == "F":
            a = np.nan_to_num(np.asarray(im, dtype=np.float64))
            lo, hi = float(a.min(initial=0)), float(a.max(initial=0))
            scaled = (a - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(a)
            im = Image.fromarray(np.round(scaled).astype(np.uint8), "L")
        im = im.convert(mode)
        if size is not None and im.size != (size[1], size[0]):
            im = im.resize((size[1], size[0]), Image.Resampling.BILINEAR)
        return np.asarray(im, dtype=np.uint8)


def _is_regular(f: Path, on_error: str) -> bool:
    """True for a regular file (or a link to one); a FIFO, socket, device or broken link is refused.

    Opening a FIFO blocks until something writes to it, so such entries are never opened.
    """
    try:
        mode = f.stat().st_mode
    except OSError as e:
        kind = f"unreadable ({e.strerror or e}; a broken link?)"
    else:
        if stat.S_ISREG(mode):
            return True
        kind = (
            "a FIFO (named pipe)" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode)
            else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "not a regular file"
        )
    err = DataError(
        f"{f} is {kind}, not an image file; remove it, or pass on_error='skip'"
    )
    if on_error == "raise":
        raise err
    log.warning("skipping %s", err)
    return False


def _list_files(
    folder: Path,
    classes: tuple[str, ...],
    name: str,
    per_class: int | None,
    seed: int,
    on_error: str = "raise",
) -> list[tuple[Path, int]]:
    """``(file, label)`` pairs of a part, sorted, at most ``per_class`` per class (seeded)."""
    index = {c: i for i, c in enumerate(classes)}
    files: list[tuple[Path, int]] = []
    for cdir in _class_dirs(folder):
        if cdir.name not in index:
            raise DataError(
                f"{name}: class folder {cdir} is not among the training classes {list(classes)}"
            )
        entries = sorted(
            f
            for f in cdir.iterdir()
            if not (f.name.startswith(".") or f.name.lower() in _JUNK or f.is_dir())
            and _is_regular(f, on_error)
        )
        if not entries:
            raise DataError(f"{name}: class folder {cdir} holds no readable images")
        if per_class is not None and len(entries) > per_class:
            gen = make_generator(seed, "image_folder-per-class", cdir.name)
            keep = torch.randperm(len(entries), generator=gen)[:per_class].sort().values
            entries = [entries[i] for i in keep.tolist()]
        files += [(f, index[cdir.name]) for f in entries]
    return files


def _cache_key(files: list[tuple[Path, int]], folder: Path, options: dict) -> str:
    listing = []
    for f, label in files:
        st = f.stat()
        listing.append((f.relative_to(folder).as_posix(), label, st.st_size, st.st_mtime_ns))
    blob = json.dumps(
        {"v": _CACHE_VERSION, "folder": str(folder.resolve()), "files": listing, **options},
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def _read_cache(path: Path) -> tuple[np.ndarray, np.ndarray] | None:
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            images, labels = z["images"], z["labels"]
    except (OSError, ValueError, KeyError, EOFError) as e:
        log.warning("ignoring unreadable image cache %s (%s); decoding the images again", path, e)
        return None
    if images.dtype != np.uint8 or images.ndim != 4 or labels.shape != (len(images),):
        log.warning("ignoring malformed image cache %s; decoding the images again", path)
        return None
    return images, labels


def _write_cache(path: Path, images: np.ndarray, labels: np.ndarray) -> None:
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            np.savez(f, images=images, labels=labels)
        os.replace(tmp, path)  # atomic: a concurrent reader sees the old state or the whole file
    except OSError as e:
        tmp.unlink(missing_ok=True)
        log.warning("could not write the image cache %s (%s); loading without it", path, e)


def _read_part(
    folder: Path,
    classes: tuple[str, ...],
    *,
    size: tuple[int, int] | None,
    mode: str,
    extensions: tuple[str, ...],
    on_error: str,
    name: str,
    per_class: int | None = None,
    seed: int = 0,
    cache_dir: Path | None = None,
) -> ImageDataset:
    files = _list_files(folder, classes, name, per_class, seed, on_error)
    cache = None
    if cache_dir is not None:
        options = dict(
            classes=classes, size=size, mode=mode, extensions=extensions, on_error=on_error
        )
        part = name.rsplit("/", 1)[-1]
        cache = cache_dir / f"{part}-{_cache_key(files, folder, options)}.npz"
        hit = _read_cache(cache)
        if hit is not None:
            log.debug("%s: read %d images from the cache %s", name, len(hit[0]), cache)
            return ImageDataset(
                torch.from_numpy(hit[0]), torch.from_numpy(hit[1].astype(np.int64)), classes, name
            )
    _check_memory(files, size, mode, name)
    arrays: list[np.ndarray] = []
    labels: list[int] = []
    per_label = [0] * len(classes)
    for f, label in files:
        try:
            if f.suffix.lower() not in extensions:
                raise DataError(
                    f"{f} is not an image file (extension {f.suffix or '(none)'!r} not in "
                    f"{', '.join(extensions)}); remove it, pass extensions=..., "
                    "or on_error='skip'"
                )
            try:
                arr = _decode(f, mode, size)
            except DataError:
                raise
            except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
                raise DataError(
                    f"{f} could not be read as an image ({type(e).__name__}: {e}); remove or "
                    "replace it, or pass on_error='skip'"
                ) from e
            if arrays and arr.shape != arrays[0].shape:
                raise DataError(
                    f"{f} has size {arr.shape[1]}x{arr.shape[0]} (w x h) but earlier images "
                    f"have {arrays[0].shape[1]}x{arrays[0].shape[0]}; "
                    "pass image_size=... to resize all images"
                )
        except DataError as e:
            if on_error == "raise":
                raise
            log.warning("skipping %s", e)
            continue
        arrays.append(arr)
        labels.append(label)
        per_label[label] += 1
    empty = [
        folder / c
        for c, n in zip(classes, per_label, strict=True)
        if n == 0 and (folder / c).is_dir()
    ]
    if empty:
        raise DataError(f"{name}: class folder {empty[0]} holds no readable images")
    if not arrays:
        raise DataError(f"{name}: no images found in {folder}")
    x = np.stack(arrays)  # (N, H, W) or (N, H, W, C)
    x = np.ascontiguousarray(x[:, None] if x.ndim == 3 else x.transpose(0, 3, 1, 2))
    y = np.asarray(labels, dtype=np.int64)
    if cache is not None:
        _write_cache(cache, x, y)
    return ImageDataset(torch.from_numpy(x), torch.from_numpy(y), classes, name)


def _check_memory(
    files: list[tuple[Path, int]], size: tuple[int, int] | None, mode: str, name: str
) -> None:
    """Refuse a part whose decoded images would not fit in the available memory (before decoding).

    The decoded size is ``n_images x h x w x channels`` bytes (``image_size``, or the first
    image's size read from its header when ``image_size`` is None); loading holds the decoded
    images and their stacked copy, so the peak is about twice that.
    """
    from archlab.data._memory import check_fits, human_bytes

    if not files:
        return
    channels = 1 if mode == "L" else 3
    if size is None:
        try:
            with Image.open(files[0][0]) as im:  # the header only: nothing is decoded
                size = (im.size[1], im.size[0])
        except Exception:  # an unreadable first file is reported when it is decoded
            return
        how = f"their size {size[0]}x{size[1]} (image_size=None: the first image's)"
    else:
        how = f"image_size={size[0]}x{size[1]}"
    decoded = len(files) * size[0] * size[1] * channels
    check_fits(
        2 * decoded,
        f"{name}: {len(files):,} images decoded at {how} x {channels} channel(s) are "
        f"{human_bytes(decoded)}, twice that while loading",
        "Pass a smaller image_size, per_class=N to read fewer images per class, or mode='L'.",
    )


def _check_classes(folder: Path) -> tuple[str, ...]:
    classes = tuple(p.name for p in _class_dirs(folder))
    if not classes:
        raise DataError(
            f"image_folder: {folder} holds no class folders (expected {folder}/<class>/<image>)"
        )
    if len(classes) == 1:
        raise DataError(
            f"image_folder: {folder} holds only one class folder ({classes[0]!r}); a classifier "
            f"needs at least two: add one folder per class under {folder}"
        )
    return classes


@register_dataset("image_folder")
def load_image_folder(
    *,
    root: Path,
    image_size: int | tuple[int, int] | None = None,
    mode: str = "RGB",
    extensions: Sequence[str] = IMAGE_EXTENSIONS,
    on_error: str = "raise",
    per_class: int | None = None,
    seed: int = 0,
    cache: bool = True,
    cache_dir: str | None = None,
) -> dict[str, ImageDataset]:
    """Load a folder of class sub-folders of images.

    Args:
        root: the folder holding the class folders (or ``train/`` and ``test/``).
        image_size: output ``(h, w)`` (an int means square); None requires equal-sized images.
        mode: ``"L"`` (grey, 1 channel) or ``"RGB"`` (3 channels).
        extensions: file extensions read as images (case-insensitive); other files are errors.
        on_error: ``"raise"`` on an unreadable or foreign file, or ``"skip"`` it with a warning.
        per_class: read at most this many files per class folder (in every part), chosen with
            ``make_generator(seed, "image_folder-per-class", class)``; None reads all. Balancing
            the training split to the smallest class is ``make_splits(balance=True)``.
        seed: seed of the ``per_class`` choice.
        cache: keep the decoded uint8 images on disk so the next load skips decoding.
        cache_dir: folder of the cache (default ``$ARCHLAB_CACHE/image_folder`` when that variable
            is set, else ``<root>/.archlab_cache``).

    Shape:
        - images: :math:`(N, C, h, w)` uint8 with ``C = 1`` for ``"L"``, 3 for ``"RGB"``

    Raises:
        DataError: missing/empty folder, a single class folder, a file that is not an image
            (under ``on_error="raise"``), images of different sizes without ``image_size``,
            a FIFO/socket/device among the images (never opened: it would block), an image above
            ``PIL.Image.MAX_IMAGE_PIXELS`` (a decompression bomb; refused from its header), or a
            part whose decoded size (``n x h x w x channels``, twice that while loading) exceeds
            the available memory (``MemAvailable``, capped by ``$ARCHLAB_MAX_LOAD_BYTES``);
            these are checked before anything is decoded.
    """
    if mode not in ("L", "RGB"):
        raise ConfigError(f"image_folder: mode must be 'L' or 'RGB', got {mode!r}")
    if on_error not in ("raise", "skip"):
        raise ConfigError(f"image_folder: on_error must be 'raise' or 'skip', got {on_error!r}")
    if isinstance(extensions, str):
        extensions = (extensions,)
    exts = tuple(e.lower() if e.startswith(".") else "." + e.lower() for e in extensions)
    size = _size(image_size)
    root = Path(root)
    if not root.is_dir():
        raise DataError(
            f"image_folder: {root} is not a folder; pass the folder of class folders as root "
            "(archlab train --data-root FOLDER; data.root in a run or study file)"
        )
    if per_class is not None and (
        isinstance(per_class, bool) or not isinstance(per_class, int) or per_class < 1
    ):
        raise ConfigError(
            f"image_folder: per_class must be a positive int or None, got {per_class!r}"
        )
    opts = dict(
        size=size,
        mode=mode,
        extensions=exts,
        on_error=on_error,
        per_class=per_class,
        seed=seed,
        cache_dir=(Path(cache_dir).expanduser() if cache_dir else default_cache_dir(root))
        if cache
        else None,
    )
    train_dir, test_dir = root / "train", root / "test"
    if (
        train_dir.is_dir()
        and test_dir.is_dir()
        and _class_dirs(train_dir)
        and _class_dirs(test_dir)
    ):
        classes = _check_classes(train_dir)
        return {
            "train": _read_part(train_dir, classes, name=f"{root.name}/train", **opts),
            "test": _read_part(test_dir, classes, name=f"{root.name}/test", **opts),
        }
    classes = _check_classes(root)
    return {"train": _read_part(root, classes, name=f"{root.name}/train", **opts)}
