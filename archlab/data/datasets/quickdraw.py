"""Quick, Draw! numpy bitmaps: one ``<category>.npy`` file per category, (N, 784) uint8.

Each file is a plain ``.npy`` array of 28x28 greyscale drawings flattened to 784 bytes (0 =
background, 255 = stroke), read from ``root/quickdraw/<category>.npy``. A study picks a subset
of the 345 categories (``categories``) and caps the drawings per category (``per_class``); the
label of a drawing is the position of its category in ``categories``.

Google publishes no checksums for these files; :mod:`archlab.data.download` verifies the ``.npy``
header (uint8, shape ``(N, 784)``, C order) and the file size instead.

Reference: Ha & Eck, "A Neural Representation of Sketch Drawings", ICLR 2018; the data:
https://github.com/googlecreativelab/quickdraw-dataset
"""

from __future__ import annotations

import ast
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from archlab.data._dataset import ImageDataset
from archlab.data.datasets.registry import register_dataset
from archlab.errors import ConfigError, DataError

__all__ = [
    "load_quickdraw",
    "read_npy_header",
    "parse_categories",
    "QUICKDRAW_CATEGORIES",
    "QUICKDRAW_URL",
]

#: Official address of one category's bitmaps (``{}`` = the URL-quoted category name).
QUICKDRAW_URL = "https://storage.googleapis.com/quickdraw_dataset/full/numpy_bitmap/{}.npy"

#: The 345 categories of the dataset (``categories.txt`` of the quickdraw-dataset repository).
QUICKDRAW_CATEGORIES: tuple[str, ...] = tuple(
    (
        "aircraft carrier|airplane|alarm clock|ambulance|angel|animal migration|ant|anvil|"
        "apple|arm|asparagus|axe|backpack|banana|bandage|barn|baseball|baseball bat|basket|"
        "basketball|bat|bathtub|beach|bear|beard|bed|bee|belt|bench|bicycle|binoculars|bird|"
        "birthday cake|blackberry|blueberry|book|boomerang|bottlecap|bowtie|bracelet|brain|"
        "bread|bridge|broccoli|broom|bucket|bulldozer|bus|bush|butterfly|cactus|cake|"
        "calculator|calendar|camel|camera|camouflage|campfire|candle|cannon|canoe|car|carrot|"
        "castle|cat|ceiling fan|cello|cell phone|chair|chandelier|church|circle|clarinet|clock|"
        "cloud|coffee cup|compass|computer|cookie|cooler|couch|cow|crab|crayon|crocodile|crown|"
        "cruise ship|cup|diamond|dishwasher|diving board|dog|dolphin|donut|door|dragon|dresser|"
        "drill|drums|duck|dumbbell|ear|elbow|elephant|envelope|eraser|eye|eyeglasses|face|fan|"
        "feather|fence|finger|fire hydrant|fireplace|firetruck|fish|flamingo|flashlight|"
        "flip flops|floor lamp|flower|flying saucer|foot|fork|frog|frying pan|garden|"
        "garden hose|giraffe|goatee|golf club|grapes|grass|guitar|hamburger|hammer|hand|harp|"
        "hat|headphones|hedgehog|helicopter|helmet|hexagon|hockey puck|hockey stick|horse|"
        "hospital|hot air balloon|hot dog|hot tub|hourglass|house|house plant|hurricane|"
        "ice cream|jacket|jail|kangaroo|key|keyboard|knee|knife|ladder|lantern|laptop|leaf|leg|"
        "light bulb|lighter|lighthouse|lightning|line|lion|lipstick|lobster|lollipop|mailbox|"
        "map|marker|matches|megaphone|mermaid|microphone|microwave|monkey|moon|mosquito|"
        "motorbike|mountain|mouse|moustache|mouth|mug|mushroom|nail|necklace|nose|ocean|"
        "octagon|octopus|onion|oven|owl|paintbrush|paint can|palm tree|panda|pants|paper clip|"
        "parachute|parrot|passport|peanut|pear|peas|pencil|penguin|piano|pickup truck|"
        "picture frame|pig|pillow|pineapple|pizza|pliers|police car|pond|pool|popsicle|"
        "postcard|potato|power outlet|purse|rabbit|raccoon|radio|rain|rainbow|rake|"
        "remote control|rhinoceros|rifle|river|roller coaster|rollerskates|sailboat|sandwich|"
        "saw|saxophone|school bus|scissors|scorpion|screwdriver|sea turtle|see saw|shark|sheep|"
        "shoe|shorts|shovel|sink|skateboard|skull|skyscraper|sleeping bag|smiley face|snail|"
        "snake|snorkel|snowflake|snowman|soccer ball|sock|speedboat|spider|spoon|spreadsheet|"
        "square|squiggle|squirrel|stairs|star|steak|stereo|stethoscope|stitches|stop sign|"
        "stove|strawberry|streetlight|string bean|submarine|suitcase|sun|swan|sweater|"
        "swing set|sword|syringe|table|teapot|teddy-bear|telephone|television|tennis racquet|"
        "tent|The Eiffel Tower|The Great Wall of China|The Mona Lisa|tiger|toaster|toe|toilet|"
        "tooth|toothbrush|toothpaste|tornado|tractor|traffic light|train|tree|triangle|"
        "trombone|truck|trumpet|t-shirt|umbrella|underwear|van|vase|violin|washing machine|"
        "watermelon|waterslide|whale|wheel|windmill|wine bottle|wine glass|wristwatch|yoga|"
        "zebra|zigzag"
    ).split("|")
)

_PIXELS = 28 * 28


def parse_categories(categories: str | Sequence[str] | None) -> list[str] | None:
    """Normalise ``categories`` (a list, or one comma-separated string) to a list of names.

    Raises:
        ConfigError: an empty list, a non-string entry or a repeated category.
    """
    if categories is None:
        return None
    if isinstance(categories, str):
        categories = categories.split(",")
    if not isinstance(categories, Sequence) or not all(isinstance(c, str) for c in categories):
        raise ConfigError(
            f"quickdraw: categories must be a list of names or 'a,b,c', got {categories!r}"
        )
    names = [c.strip() for c in categories if c.strip()]
    if not names:
        raise ConfigError("quickdraw: categories is empty; name at least two, e.g. 'cat,dog'")
    dup = sorted({c for c in names if names.count(c) > 1})
    if dup:
        raise ConfigError(f"quickdraw: category {dup[0]!r} is listed twice")
    return names


def read_npy_header(head: bytes, where: str) -> tuple[tuple[int, ...], np.dtype, bool, int]:
    """Parse the header of a version 1/2/3 ``.npy`` file from its first bytes.

    Args:
        head: the first bytes of the file (at least the whole header).
        where: file or URL named in errors.

    Returns:
        ``(shape, dtype, fortran_order, header_length)``; the data starts at ``header_length``.

    Raises:
        DataError: not an ``.npy`` file, or a header that does not parse.
    """
    if head[:6] != b"\x93NUMPY" or len(head) < 10:
        raise DataError(f"{where} is not a .npy file (magic bytes {head[:6]!r})")
    major = head[6]
    if major == 1:
        n, start = int.from_bytes(head[8:10], "little"), 10
    elif major in (2, 3):
        n, start = int.from_bytes(head[8:12], "little"), 12
    else:
        raise DataError(f"{where}: unsupported .npy format version {major}")
    if len(head) < start + n:
        raise DataError(f"{where}: truncated .npy header ({len(head)} of {start + n} bytes)")
    try:
        d = ast.literal_eval(head[start : start + n].decode("latin1"))
        shape = tuple(int(s) for s in d["shape"])
        dtype = np.dtype(d["descr"])
        fortran = bool(d["fortran_order"])
    except (ValueError, SyntaxError, KeyError, TypeError) as e:
        raise DataError(f"{where}: malformed .npy header ({e})") from e
    return shape, dtype, fortran, start + n


def _read_category(path: Path, per_class: int | None) -> np.ndarray:
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise DataError(
            f"{path}: not a readable .npy file ({e}); download it again with "
            f"`archlab data download quickdraw --categories '{path.stem}' --data-root DIR`"
        ) from e
    if arr.dtype != np.uint8 or arr.ndim != 2 or arr.shape[1] != _PIXELS or len(arr) == 0:
        raise DataError(
            f"{path}: expected uint8 bitmaps of shape (N, 784), got {arr.dtype} {arr.shape}"
        )
    if per_class is not None:
        arr = arr[:per_class]  # the first drawings: a deterministic cap, no seed involved
    return np.ascontiguousarray(arr).reshape(-1, 1, 28, 28)  # (n, 1, 28, 28)


@register_dataset("quickdraw")
def load_quickdraw(
    *,
    root: Path,
    categories: str | Sequence[str] | None = None,
    per_class: int | None = None,
) -> dict[str, ImageDataset]:
    """Quick, Draw! bitmaps from ``root/quickdraw/<category>.npy`` (1x28x28, no official test).

    Args:
        root: data root.
        categories: the categories to load, in label order (a list or ``"cat,dog"``); None loads
            every ``.npy`` file in ``root/quickdraw`` in sorted order.
        per_class: keep only the first ``per_class`` drawings of each category (None: all).

    Shape:
        - images: :math:`(N, 1, 28, 28)` uint8 with :math:`N = \\sum_c \\min(N_c, per\\_class)`

    Raises:
        ConfigError: bad ``categories``/``per_class``.
        DataError: a missing or malformed category file, fewer than two categories.
    """
    if per_class is not None and (
        isinstance(per_class, bool) or not isinstance(per_class, int) or per_class < 1
    ):
        raise ConfigError(f"quickdraw: per_class must be a positive int or None, got {per_class!r}")
    folder = root / "quickdraw"
    names = parse_categories(categories)
    if names is None:
        names = sorted(p.stem for p in folder.glob("*.npy")) if folder.is_dir() else []
        if not names:
            raise DataError(
                f"quickdraw: no <category>.npy files in {folder}; get some with "
                f"`archlab data download quickdraw --categories cat,dog --data-root {root}`"
            )
    if len(names) < 2:
        raise DataError(
            f"quickdraw: only one category ({names[0]!r}); a classifier needs at least two"
        )
    arrays, labels = [], []
    for k, name in enumerate(names):
        path = folder / f"{name}.npy"
        if not path.is_file():
            raise DataError(
                f"quickdraw: file not found: {path}; get it with `archlab data download "
                f"quickdraw --categories '{name}' --data-root {root}` (or place the official "
                f"{name}.npy in {folder})"
            )
        x = _read_category(path, per_class)
        arrays.append(x)
        labels.append(np.full(len(x), k, dtype=np.int64))
    images = torch.from_numpy(np.concatenate(arrays))  # (N, 1, 28, 28)
    return {
        "train": ImageDataset(
            images, torch.from_numpy(np.concatenate(labels)), tuple(names), "quickdraw/train"
        )
    }
