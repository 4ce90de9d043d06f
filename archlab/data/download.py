"""Download datasets from their official sources: resumable, verified, atomic.

``download(name, root)`` fetches the files a loader in :mod:`archlab.data.datasets` reads and puts
them where it reads them (``root/<name>/...``). Every file goes through :func:`fetch`:

- **resumable**: bytes land in ``<file>.part``; a rerun (or an automatic retry after a cut
  connection) asks the server for the rest with an HTTP ``Range`` header. A server that ignores
  the range is read again from the start.
- **verified and atomic**: only a file whose md5/sha256 matches the published checksum is renamed
  to its final name, so a partial or wrong file never passes as a dataset. A checksum mismatch
  deletes the part file and raises :class:`~archlab.errors.DataError` naming the URL and both
  hashes. The Quick, Draw! bitmaps have no published checksums; their ``.npy`` header (uint8,
  ``(N, 784)``, C order) and the exact file size are checked instead.
- **safe extraction**: archives (CIFAR and STL-10 ``.tar.gz``, EMNIST ``gzip.zip``) are unpacked
  into a temporary folder and moved into place only when complete; members that are links,
  devices, absolute paths or contain ``..`` are refused.

``mirror=`` (or ``$ARCHLAB_MIRROR``) replaces the official hosts: a file is then fetched from
``<mirror>/<dataset>/<file name>``. Only :mod:`urllib` is used. Progress goes to the logger
``archlab.data.download`` and to an optional ``progress(url, done_bytes, total_bytes)`` callback.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import os
import re
import shutil
import socket
import stat
import tarfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from archlab.data.datasets import cifar, default_root, idx, list_datasets, quickdraw, stl10, svhn
from archlab.errors import ConfigError, DataError, UnknownNameError

__all__ = [
    "download",
    "fetch",
    "resources",
    "Resource",
    "Fetched",
    "Downloaded",
    "DOWNLOADABLE",
    "MIRROR_ENV",
]

log = logging.getLogger(__name__)

#: environment variable holding a base URL that replaces the official hosts.
MIRROR_ENV = "ARCHLAB_MIRROR"

#: datasets :func:`download` knows how to fetch.
DOWNLOADABLE = (
    "mnist",
    "fashion_mnist",
    "kmnist",
    "emnist",
    "qmnist",
    "cifar10",
    "cifar100",
    "svhn",
    "stl10",
    "quickdraw",
)

#: ``progress(url, bytes_done, bytes_total_or_None)``, called after every chunk.
Progress = Callable[[str, int, "int | None"], None]

_CHUNK = 1 << 20
_NPY_HEAD = 4096  # bytes fetched to read a .npy header (quickdraw headers are 80 bytes)


@dataclass(frozen=True)
class Resource:
    """One file of a dataset: its name on disk, its official address and checksums."""

    filename: str
    url: str
    md5: str | None = None
    sha256: str | None = None


@dataclass(frozen=True)
class Fetched:
    """What :func:`fetch` did for one file: ``status`` is downloaded, resumed or present."""

    path: Path
    url: str
    status: str
    nbytes: int


@dataclass(frozen=True)
class Downloaded:
    """The result of :func:`download`: the dataset folder, the files fetched, those extracted."""

    name: str
    folder: Path
    files: tuple[Fetched, ...]
    extracted: tuple[Path, ...] = ()


class _Interrupted(Exception):
    """The connection broke before the file was complete (retry / resume)."""

    def __init__(self, done: int, total: int | None, reason: str):
        super().__init__(reason)
        self.done, self.total, self.reason = done, total, reason


def _tables() -> dict[str, dict[str, dict[str, str]]]:
    # read at call time so the tables stay the loaders' own (and tests can patch them)
    return {**idx.RESOURCES, **cifar.RESOURCES, **svhn.RESOURCES, **stl10.RESOURCES}


def resources(name: str) -> list[Resource]:
    """The official files of dataset ``name`` (not quickdraw: its files depend on categories).

    Raises:
        UnknownNameError: ``name`` has no fixed file list.
    """
    tables = _tables()
    if name not in tables:
        raise UnknownNameError("downloadable dataset", name, tables)
    t = tables[name]
    return [
        Resource(f, url, t.get("md5", {}).get(f), t.get("sha256", {}).get(f))
        for f, url in t["urls"].items()
    ]


# --------------------------------------------------------------------------------------------
# one file: resumable HTTP into <file>.part, verified, renamed


def _hash(path: Path, algo: str) -> str:
    h = hashlib.new(algo)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def _verify(path: Path, url: str, md5: str | None, sha256: str | None, *, final: bool) -> None:
    for algo, expected in (("md5", md5), ("sha256", sha256)):
        if not expected:
            continue
        actual = _hash(path, algo)
        if actual == expected.lower():
            continue
        if final:  # a file already in place (placed by hand or damaged later): never delete it
            raise DataError(
                f"{path} exists but its {algo} is {actual}, expected {expected} (the official "
                f"file is {url}); delete it and download again"
            )
        path.unlink(missing_ok=True)
        raise DataError(
            f"checksum mismatch for {url}: {algo} expected {expected}, got {actual}; the "
            "download was deleted. Run the command again; if it repeats, the server (or mirror) "
            "serves a different file"
        )


class NetworkError(DataError):
    """The network failed (no connection, a download that kept breaking off): not bad input."""

    exit_code = 1


def _offline(url: str, dest: Path, reason: object) -> DataError:
    return NetworkError(
        f"cannot reach {url} ({reason}). Check the network connection, or download the file by "
        f"hand and place it in {dest.parent} as {dest.name}, or point --mirror / "
        f"${MIRROR_ENV} at a reachable copy"
    )


def _content_range(value: str | None) -> tuple[int, int | None] | None:
    m = re.fullmatch(r"bytes (\d+)-\d+/(\d+|\*)", (value or "").strip())
    if not m:
        return None
    return int(m.group(1)), (None if m.group(2) == "*" else int(m.group(2)))


def _stream(
    url: str,
    part: Path,
    dest: Path,
    *,
    limit: int | None,
    timeout: float,
    progress: Progress | None,
) -> None:
    """Append the missing bytes of ``url`` (up to ``limit``) to ``part``."""
    start = part.stat().st_size if part.is_file() else 0
    if limit is not None and start >= limit:
        return
    try:
        req = urllib.request.Request(url, headers={"User-Agent": "archlab-download"})
        if start or limit is not None:
            req.add_header("Range", f"bytes={start}-{'' if limit is None else limit - 1}")
        resp = urllib.request.urlopen(req, timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and start:  # nothing left to send: the part is complete
            return
        raise DataError(
            f"{url}: HTTP {e.code} {e.reason}; check the dataset name / category and the mirror"
        ) from None
    except urllib.error.URLError as e:
        if isinstance(e.reason, (socket.timeout, TimeoutError)):
            raise _Interrupted(start, None, f"timed out: {e.reason}") from None
        raise _offline(url, dest, e.reason) from None
    except (ConnectionError, socket.timeout, TimeoutError, http.client.HTTPException) as e:
        raise _Interrupted(start, None, f"{type(e).__name__}: {e}") from None
    except ValueError as e:  # "unknown url type" and other malformed URLs
        raise DataError(f"{url}: not a URL that can be fetched ({e}); check the mirror") from None
    with resp:
        status = getattr(resp, "status", None) or 200
        length = resp.headers.get("Content-Length")
        body = int(length) if length and length.isdigit() else None
        if status == 206:
            cr = _content_range(resp.headers.get("Content-Range"))
            if cr is None or cr[0] != start:  # not the range asked for: start over
                part.unlink(missing_ok=True)
                raise _Interrupted(
                    0, None, f"server answered range {cr} for a request from {start}"
                )
            total = cr[1]
            mode = "ab"
        elif status == 200:
            if start:
                log.info("%s: server ignored the range request; downloading from the start", url)
            start, mode = 0, "wb"
            total = body
        else:
            raise DataError(f"{url}: unexpected HTTP status {status}")
        done = start
        last_log = done
        with open(part, mode) as f:
            while limit is None or done < limit:
                want = _CHUNK if limit is None else min(_CHUNK, limit - done)
                try:
                    buf = resp.read(want)
                except (
                    http.client.IncompleteRead,
                    ConnectionError,
                    socket.timeout,
                    TimeoutError,
                ) as e:
                    raise _Interrupted(done, total, f"{type(e).__name__}: {e}") from None
                if not buf:
                    break
                f.write(buf)
                done += len(buf)
                if progress is not None:
                    progress(url, done, total)
                if total and done - last_log >= max(total // 10, _CHUNK):
                    log.info("%s: %d / %d bytes (%.0f%%)", url, done, total, 100 * done / total)
                    last_log = done
        if body is not None and done - start < body and (limit is None or done < limit):
            raise _Interrupted(
                done, total, f"connection closed after {done - start} of {body} bytes"
            )


def _to_part(
    url: str,
    part: Path,
    dest: Path,
    *,
    limit: int | None = None,
    retries: int,
    retry_wait: float,
    timeout: float,
    progress: Progress | None,
    continuing: bool = False,
) -> bool:
    """Fill ``part`` from ``url``, resuming after broken connections.

    Returns whether it resumed: a part file left by an earlier run (unless ``continuing``, i.e.
    this run wrote it), or a connection that broke and was picked up again.
    """
    resumed = not continuing and part.is_file() and part.stat().st_size > 0
    attempt = 0
    while True:
        try:
            _stream(url, part, dest, limit=limit, timeout=timeout, progress=progress)
            return resumed
        except _Interrupted as e:
            attempt += 1
            if attempt > retries:
                raise NetworkError(
                    f"download of {url} broke off after {e.done} of {e.total or '?'} bytes "
                    f"({e.reason}); the partial file {part} is kept: run the command again to "
                    "resume"
                ) from None
            log.warning("%s: %s; resuming (attempt %d of %d)", url, e.reason, attempt, retries)
            time.sleep(retry_wait * attempt)
            resumed = True


def fetch(
    url: str,
    dest: str | os.PathLike,
    *,
    md5: str | None = None,
    sha256: str | None = None,
    check: Callable[[Path, str], None] | None = None,
    retries: int = 3,
    retry_wait: float = 2.0,
    timeout: float = 60.0,
    progress: Progress | None = None,
) -> Fetched:
    """Download ``url`` to ``dest``: resumable, verified, renamed into place only when correct.

    Args:
        url: the address (``http(s)://`` or ``file://``).
        dest: the final file. If it exists and matches the checksums, nothing is downloaded.
        md5: expected md5 hex digest (None: not checked).
        sha256: expected sha256 hex digest (None: not checked).
        check: extra validation ``check(part_path, url)`` raising DataError (used for files
            without published checksums); the part file is deleted when it raises.
        retries: automatic resumptions after a broken connection before giving up.
        retry_wait: seconds to wait before retry ``k`` is ``retry_wait * k``.
        timeout: socket timeout in seconds.
        progress: optional ``progress(url, bytes_done, bytes_total)`` callback.

    Returns:
        A :class:`Fetched` with status ``"present"``, ``"downloaded"`` or ``"resumed"``.

    Raises:
        DataError: offline / unreachable host (naming the URL and where to place the file by
            hand), an HTTP error, a connection that kept breaking (the part file is kept for the
            next run), a checksum mismatch or a failed ``check`` (the part file is deleted).
    """
    dest = Path(dest)
    if dest.is_file():
        _verify(dest, url, md5, sha256, final=True)
        return Fetched(dest, url, "present", dest.stat().st_size)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    resumed = _to_part(
        url,
        part,
        dest,
        retries=retries,
        retry_wait=retry_wait,
        timeout=timeout,
        progress=progress,
    )
    if not part.is_file():
        raise DataError(f"{url}: the server sent no data")
    _verify(part, url, md5, sha256, final=False)
    if check is not None:
        try:
            check(part, url)
        except DataError:
            part.unlink(missing_ok=True)
            raise
    os.replace(part, dest)
    log.info("%s -> %s (%d bytes)", url, dest, dest.stat().st_size)
    return Fetched(dest, url, "resumed" if resumed else "downloaded", dest.stat().st_size)


# --------------------------------------------------------------------------------------------
# archives


def _member_path(archive: Path, name: str) -> PurePosixPath:
    rel = PurePosixPath(name.replace("\\", "/"))
    if rel.is_absolute() or ".." in rel.parts or re.match(r"^[A-Za-z]:", name):
        raise DataError(
            f"{archive}: member {name!r} points outside the extraction folder; refusing to "
            "extract (the official archive holds only relative paths)"
        )
    return rel


def _corrupt(archive: Path, e: BaseException) -> DataError:
    return DataError(
        f"{archive} is corrupt or truncated ({type(e).__name__}: {e}); delete it and download again"
    )


def _extract(
    archive: Path,
    folder: Path,
    want: Callable[[PurePosixPath], PurePosixPath | None],
) -> list[Path]:
    """Extract the members ``want`` maps to a relative target path; move them into ``folder``.

    Everything is written to a temporary folder first and moved into place only after the whole
    archive was read, so a corrupt archive leaves nothing behind.
    """
    tmp = folder / f".extract-{archive.name}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    written: list[PurePosixPath] = []
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                for info in zf.infolist():
                    rel = _member_path(archive, info.filename)
                    mode = info.external_attr >> 16
                    if stat.S_ISLNK(mode):
                        raise DataError(f"{archive}: member {info.filename!r} is a link; refusing")
                    if info.is_dir() or (target := want(rel)) is None:
                        continue
                    out = tmp / target
                    out.parent.mkdir(parents=True, exist_ok=True)
                    with zf.open(info) as src, open(out, "wb") as dst:
                        shutil.copyfileobj(src, dst, _CHUNK)
                    written.append(target)
        else:
            with tarfile.open(archive, "r:*") as tf:
                for m in tf:
                    rel = _member_path(archive, m.name)
                    if m.issym() or m.islnk():
                        raise DataError(
                            f"{archive}: member {m.name!r} is a link (to {m.linkname!r}); "
                            "refusing to extract links"
                        )
                    if not (m.isfile() or m.isdir()):
                        raise DataError(
                            f"{archive}: member {m.name!r} is not a regular file; refusing"
                        )
                    if m.isdir() or (target := want(rel)) is None:
                        continue
                    out = tmp / target
                    out.parent.mkdir(parents=True, exist_ok=True)
                    src = tf.extractfile(m)
                    if src is None:
                        raise _corrupt(archive, ValueError(f"member {m.name!r} has no data"))
                    with src, open(out, "wb") as dst:
                        shutil.copyfileobj(src, dst, _CHUNK)
                    written.append(target)
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error) as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise _corrupt(archive, e) from e
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if "gzip" in str(e).lower() or "crc" in str(e).lower():  # gzip.BadGzipFile & co
            raise _corrupt(archive, e) from e
        raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    moved = []
    for target in written:
        out = folder / target
        out.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp / target, out)
        moved.append(out)
    shutil.rmtree(tmp, ignore_errors=True)
    return moved


# --------------------------------------------------------------------------------------------
# datasets


@dataclass(frozen=True)
class _Ctx:
    mirror: str | None
    retries: int
    retry_wait: float
    timeout: float
    progress: Progress | None

    def url(self, dataset: str, filename: str, official: str) -> str:
        if not self.mirror:
            return official
        return f"{self.mirror.rstrip('/')}/{dataset}/{urllib.parse.quote(filename)}"

    def fetch(self, dataset: str, res: Resource, dest: Path, **kw) -> Fetched:
        return fetch(
            self.url(dataset, res.filename, res.url),
            dest,
            md5=res.md5,
            sha256=res.sha256,
            retries=self.retries,
            retry_wait=self.retry_wait,
            timeout=self.timeout,
            progress=self.progress,
            **kw,
        )


def _plain(ctx: _Ctx, name: str, root: Path) -> Downloaded:
    folder = root / name
    files = tuple(ctx.fetch(name, r, folder / r.filename) for r in resources(name))
    return Downloaded(name, folder, files)


def _archive(
    ctx: _Ctx,
    name: str,
    root: Path,
    needed: Sequence[str],
    want: Callable[[PurePosixPath], PurePosixPath | None],
    keep_archive: bool,
) -> Downloaded:
    folder = root / name
    (res,) = resources(name)
    url = ctx.url(name, res.filename, res.url)
    if all((folder / p).is_file() for p in needed):
        present = tuple(
            Fetched(folder / p, url, "present", (folder / p).stat().st_size) for p in needed
        )
        return Downloaded(name, folder, present)
    got = ctx.fetch(name, res, folder / res.filename)
    extracted = _extract(got.path, folder, want)
    missing = [p for p in needed if not (folder / p).is_file()]
    if missing:
        raise DataError(
            f"{got.path} does not contain {missing[0]} ({len(missing)} expected files missing); "
            "it is not the official archive"
        )
    if not keep_archive:
        got.path.unlink()
    return Downloaded(name, folder, (got,), tuple(extracted))


def _cifar(ctx: _Ctx, name: str, root: Path, keep_archive: bool) -> Downloaded:
    if name == "cifar10":
        top = "cifar-10-batches-py"
        files = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]
    else:
        top = "cifar-100-python"
        files = ["train", "test", "meta"]

    def want(rel: PurePosixPath) -> PurePosixPath | None:
        return rel if rel.parts[:1] == (top,) else None

    return _archive(ctx, name, root, [f"{top}/{f}" for f in files], want, keep_archive)


def _stl10(ctx: _Ctx, root: Path, keep_archive: bool) -> Downloaded:
    def want(rel: PurePosixPath) -> PurePosixPath | None:  # skips unlabeled_X.bin (2.7 GB)
        return rel if len(rel.parts) == 2 and rel.parts[1] in stl10.FILES else None

    needed = [f"stl10_binary/{f}" for f in stl10.FILES]
    return _archive(ctx, "stl10", root, needed, want, keep_archive)


_EMNIST_MEMBER = re.compile(
    r"emnist-[a-z]+-(train|test)-(images-idx3|labels-idx1)-ubyte\.gz|emnist-[a-z]+-mapping\.txt"
)


def _emnist(ctx: _Ctx, root: Path, keep_archive: bool) -> Downloaded:
    def want(rel: PurePosixPath) -> PurePosixPath | None:  # gzip/emnist-*.gz -> emnist/
        return PurePosixPath(rel.name) if _EMNIST_MEMBER.fullmatch(rel.name) else None

    needed = [
        f"emnist-{s}-{p}-{k}-ubyte.gz"
        for s in idx.EMNIST_SPLITS
        for p in ("train", "test")
        for k in ("images-idx3", "labels-idx1")
    ]
    return _archive(ctx, "emnist", root, needed, want, keep_archive)


def _check_npy(path: Path, where: str, *, exact_size: bool = True) -> tuple[int, int]:
    """Validate a quickdraw ``.npy`` file; returns ``(rows, header_length)``."""
    with open(path, "rb") as f:
        head = f.read(_NPY_HEAD)
    shape, dtype, fortran, hl = quickdraw.read_npy_header(head, where)
    if dtype != np.uint8 or fortran or len(shape) != 2 or shape[1] != 784:
        raise DataError(
            f"{where}: expected C-order uint8 bitmaps of shape (N, 784), got {dtype} {shape}"
            f"{' (Fortran order)' if fortran else ''}"
        )
    size, need = path.stat().st_size, hl + shape[0] * 784
    if size < need or (exact_size and size != need):
        raise DataError(
            f"{where}: the header promises {shape[0]} drawings ({need} bytes) but the file has "
            f"{size} bytes; it is truncated or corrupt"
        )
    return shape[0], hl


def _quickdraw_one(ctx: _Ctx, category: str, folder: Path, per_class: int | None) -> Fetched:
    filename = f"{category}.npy"
    url = ctx.url(
        "quickdraw", filename, quickdraw.QUICKDRAW_URL.format(urllib.parse.quote(category))
    )
    dest, meta = folder / filename, folder / f"{filename}.json"
    if dest.is_file():
        rows, _ = _check_npy(dest, str(dest))
        try:
            info = json.loads(meta.read_text()) if meta.is_file() else None
            total = int(info["of"]) if info else rows  # no sidecar: the complete official file
        except (ValueError, KeyError, TypeError):
            total = rows + 1  # unreadable sidecar: unknown size, fetch again

        if rows >= (total if per_class is None else min(per_class, total)):
            return Fetched(dest, url, "present", dest.stat().st_size)
        dest.unlink()  # a smaller capped copy: fetch what is asked for now
    folder.mkdir(parents=True, exist_ok=True)
    if per_class is None:
        got = fetch(
            url,
            dest,
            check=lambda p, u: _check_npy(p, u) and None,
            retries=ctx.retries,
            retry_wait=ctx.retry_wait,
            timeout=ctx.timeout,
            progress=ctx.progress,
        )
        meta.unlink(missing_ok=True)
        return got
    # Only the first per_class drawings: fetch the header, then exactly the bytes needed.
    part = dest.with_name(filename + ".part")
    kw = dict(retries=ctx.retries, retry_wait=ctx.retry_wait, timeout=ctx.timeout)
    resumed = _to_part(url, part, dest, limit=_NPY_HEAD, progress=None, **kw)
    with open(part, "rb") as f:
        head = f.read(_NPY_HEAD)
    try:
        shape, dtype, fortran, hl = quickdraw.read_npy_header(head, url)
        if dtype != np.uint8 or fortran or len(shape) != 2 or shape[1] != 784:
            raise DataError(f"{url}: expected C-order uint8 bitmaps (N, 784), got {dtype} {shape}")
    except DataError:
        part.unlink(missing_ok=True)
        raise
    n = min(per_class, shape[0])
    need = hl + n * 784
    resumed |= _to_part(url, part, dest, limit=need, progress=ctx.progress, continuing=True, **kw)
    if part.stat().st_size < need:
        part.unlink()
        raise DataError(f"{url}: the file ends before the {n} drawings its header promises")
    tmp = dest.with_name(filename + ".tmp")
    with open(part, "rb") as src, open(tmp, "wb") as dst:
        np.lib.format.write_array_header_1_0(
            dst, {"descr": "|u1", "fortran_order": False, "shape": (n, 784)}
        )
        src.seek(hl)
        dst.write(src.read(n * 784))
    os.replace(tmp, dest)
    part.unlink()
    meta.write_text(json.dumps({"rows": n, "of": shape[0], "url": url}))
    return Fetched(dest, url, "resumed" if resumed else "downloaded", dest.stat().st_size)


def _quickdraw(
    ctx: _Ctx, root: Path, categories: str | Sequence[str] | None, per_class: int | None
) -> Downloaded:
    names = quickdraw.parse_categories(categories)
    if names is None:
        raise ConfigError(
            "quickdraw has 345 categories (about 37 GB); choose some with categories=[...] or "
            "--categories cat,dog (and --per-class N to fetch only the first N drawings of each)"
        )
    for c in names:
        if c not in quickdraw.QUICKDRAW_CATEGORIES:
            raise UnknownNameError("quickdraw category", c, quickdraw.QUICKDRAW_CATEGORIES)
    folder = root / "quickdraw"
    files = tuple(_quickdraw_one(ctx, c, folder, per_class) for c in names)
    return Downloaded("quickdraw", folder, files)


def _check_mirror(mirror: str, source: str) -> None:
    """ConfigError unless ``mirror`` is an ``http(s)://host[/path]`` or ``file:///path`` URL."""
    try:
        parts = urllib.parse.urlsplit(mirror.strip())
    except ValueError as e:
        raise ConfigError(f"{source}: {mirror!r} is not a URL ({e}); expected http(s)://host/path") from None
    if parts.scheme in ("http", "https") and parts.netloc:
        return
    if parts.scheme == "file" and parts.path:
        return
    raise ConfigError(
        f"{source}: {mirror!r} is not a URL; expected http(s)://host[/path] or file:///folder "
        "(files are fetched from <mirror>/<dataset>/<file name>)"
    )


def download(
    name: str,
    root: str | os.PathLike | None = None,
    *,
    categories: str | Sequence[str] | None = None,
    per_class: int | None = None,
    mirror: str | None = None,
    keep_archive: bool = False,
    retries: int = 3,
    retry_wait: float = 2.0,
    timeout: float = 60.0,
    progress: Progress | None = None,
) -> Downloaded:
    """Download dataset ``name`` into ``root/<name>/``, where its loader reads it.

    Files already in place and verified are not fetched again; an interrupted download resumes.

    Args:
        name: one of :data:`DOWNLOADABLE`.
        root: data root (default :func:`archlab.data.datasets.default_root`).
        categories: quickdraw only: the categories to fetch (list or ``"cat,dog"``).
        per_class: quickdraw only: fetch just the first ``per_class`` drawings of each category
            (an HTTP range request; the rest of the file is never transferred).
        mirror: base URL replacing the official hosts (files at ``<mirror>/<name>/<file>``);
            default ``$ARCHLAB_MIRROR``.
        keep_archive: keep ``.tar.gz`` / ``.zip`` archives after extraction.
        retries: automatic resumptions per file after a broken connection.
        retry_wait: base wait in seconds between resumptions.
        timeout: socket timeout in seconds.
        progress: optional ``progress(url, bytes_done, bytes_total)`` callback.

    Returns:
        A :class:`Downloaded` naming the folder, every file and its status.

    Raises:
        UnknownNameError: a name that cannot be downloaded (with close matches), an unknown
            quickdraw category.
        ConfigError: ``categories``/``per_class`` for a dataset other than quickdraw.
        DataError: offline, HTTP errors, checksum mismatch, corrupt archive (see :func:`fetch`).
    """
    if name not in DOWNLOADABLE:
        if name in list_datasets():
            raise ConfigError(
                f"dataset {name!r} has nothing to download (digits is bundled, synthetic is "
                "generated, image_folder reads your own folder); downloadable datasets: "
                f"{', '.join(DOWNLOADABLE)}"
            )
        raise UnknownNameError("downloadable dataset", name, DOWNLOADABLE)
    if name != "quickdraw" and (categories is not None or per_class is not None):
        raise ConfigError(
            f"categories / per_class apply to quickdraw only, not {name!r}; drop them (other "
            "datasets are capped after loading, e.g. make_splits(max_per_class=...))"
        )
    if per_class is not None and (
        isinstance(per_class, bool) or not isinstance(per_class, int) or per_class < 1
    ):
        raise ConfigError(f"per_class must be a positive int, got {per_class!r}")
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise ConfigError(f"retries must be an int >= 0, got {retries!r}")
    root = Path(root).expanduser() if root is not None else default_root()
    if mirror:
        _check_mirror(mirror, "--mirror / mirror=")
        base = mirror
    else:
        base = os.environ.get(MIRROR_ENV) or None
        if base:
            _check_mirror(base, f"${MIRROR_ENV}")
    ctx = _Ctx(base, retries, retry_wait, timeout, progress)
    if name in ("cifar10", "cifar100"):
        return _cifar(ctx, name, root, keep_archive)
    if name == "stl10":
        return _stl10(ctx, root, keep_archive)
    if name == "emnist":
        return _emnist(ctx, root, keep_archive)
    if name == "quickdraw":
        return _quickdraw(ctx, root, categories, per_class)
    return _plain(ctx, name, root)
