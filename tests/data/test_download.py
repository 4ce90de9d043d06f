"""archlab.data.download against a local HTTP server serving generated files in the real formats.

The server (127.0.0.1, a thread) honours ``Range`` requests like the official hosts, records every
request, and can cut a connection after N bytes once, ignore ranges, or serve any bytes — so
resuming, checksum refusal and corrupt archives are tested without the network.
"""

from __future__ import annotations

import hashlib
import io
import re
import socket
import tarfile
import threading
import urllib.parse
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
import torch

from archlab.cli import main
from archlab.data import download as dl
from archlab.data import load_dataset, write_cifar_batch, write_idx
from archlab.data.datasets import cifar, idx, stl10, svhn
from archlab.errors import ConfigError, DataError, UnknownNameError


class _Server:
    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.requests: list[tuple[str, str | None]] = []  # (path, Range header)
        self.cut_once: dict[str, int] = {}  # path -> bytes sent before closing, first GET only
        self.ignore_range = False
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep pytest output clean
                pass

            def do_GET(self):
                path = urllib.parse.unquote(self.path)
                rng = self.headers.get("Range")
                server.requests.append((path, rng))
                if path not in server.files:
                    self.send_error(404)
                    return
                data = server.files[path]
                start, end, status = 0, len(data) - 1, 200
                m = re.fullmatch(r"bytes=(\d+)-(\d*)", rng or "")
                if m and not server.ignore_range:
                    start = int(m.group(1))
                    end = min(int(m.group(2)), len(data) - 1) if m.group(2) else len(data) - 1
                    if start >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    status = 206
                body = data[start : end + 1]
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                if status == 206:
                    self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
                self.end_headers()
                cut = server.cut_once.pop(path, None)
                self.wfile.write(body if cut is None else body[:cut])
                if cut is not None:
                    self.wfile.flush()
                    self.close_connection = True

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.02,), daemon=True)
        self.thread.start()

    def publish(self, monkeypatch, dataset: str, filename: str, data: bytes, *, md5: bool = True):
        """Serve ``data`` as the official file and make its md5 the expected one."""
        self.files[f"/{dataset}/{filename}"] = data
        if md5:
            table = {**idx.RESOURCES, **cifar.RESOURCES, **svhn.RESOURCES, **stl10.RESOURCES}
            monkeypatch.setitem(table[dataset]["md5"], filename, hashlib.md5(data).hexdigest())

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = _Server()
    yield s
    s.close()


def _gz_idx(arr: np.ndarray, tmp_path, name="f.gz") -> bytes:
    return write_idx(tmp_path / name, arr).read_bytes()


def _mnist_like(server, monkeypatch, tmp_path, dataset="mnist", n=(12, 6)):
    rng = np.random.default_rng(0)
    data = {}
    for part, prefix, count in (("train", "train", n[0]), ("test", "t10k", n[1])):
        x = rng.integers(0, 256, (count, 28, 28), dtype=np.uint8)
        y = (np.arange(count) % 10).astype(np.uint8)
        server.publish(monkeypatch, dataset, f"{prefix}-images-idx3-ubyte.gz", _gz_idx(x, tmp_path))
        server.publish(monkeypatch, dataset, f"{prefix}-labels-idx1-ubyte.gz", _gz_idx(y, tmp_path))
        data[part] = (x, y)
    return data


def _tar_gz(members: dict[str, bytes], extra=None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, blob in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(blob)
            tf.addfile(info, io.BytesIO(blob))
        if extra is not None:
            extra(tf)
    return buf.getvalue()


def _npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


# ------------------------------------------------------------------ each dataset: download, load


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist", "kmnist"])
def test_mnist_family_downloads_then_loads(server, monkeypatch, tmp_path, name):
    data = _mnist_like(server, monkeypatch, tmp_path, name)
    root = tmp_path / "data"
    got = dl.download(name, root, mirror=server.url)
    assert [f.status for f in got.files] == ["downloaded"] * 4
    assert not list((root / name).glob("*.part"))
    parts = load_dataset(name, root=root)
    for part, (x, y) in data.items():
        assert parts[part].images.shape == (len(x), 1, 28, 28)
        assert parts[part].images.dtype == torch.uint8
        assert np.array_equal(parts[part].images[:, 0].numpy(), x)
        assert parts[part].labels.tolist() == y.tolist()
    n_requests = len(server.requests)
    again = dl.download(name, root, mirror=server.url)
    assert [f.status for f in again.files] == ["present"] * 4 and len(server.requests) == n_requests


def test_qmnist_uses_label_column_zero(server, monkeypatch, tmp_path):
    rng = np.random.default_rng(1)
    for part, n in (("train", 8), ("test", 12)):
        x = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        table = rng.integers(0, 100000, (n, 8)).astype(np.int32)
        table[:, 0] = np.arange(n) % 10
        server.publish(
            monkeypatch, "qmnist", f"qmnist-{part}-images-idx3-ubyte.gz", _gz_idx(x, tmp_path)
        )
        server.publish(
            monkeypatch, "qmnist", f"qmnist-{part}-labels-idx2-int.gz", _gz_idx(table, tmp_path)
        )
    dl.download("qmnist", tmp_path / "data", mirror=server.url)
    parts = load_dataset("qmnist", root=tmp_path / "data")
    assert parts["train"].images.shape == (8, 1, 28, 28)
    assert parts["test"].labels.tolist() == [i % 10 for i in range(12)]


def test_emnist_zip_is_extracted(server, monkeypatch, tmp_path):
    rng = np.random.default_rng(2)
    buf = io.BytesIO()
    expected = {}
    with zipfile.ZipFile(buf, "w") as zf:
        for split, classes in idx.EMNIST_SPLITS.items():
            for part in ("train", "test"):
                x = rng.integers(0, 256, (5, 28, 28), dtype=np.uint8)
                y = np.arange(5, dtype=np.uint8) % len(classes) + (1 if split == "letters" else 0)
                stem = f"gzip/emnist-{split}-{part}"
                zf.writestr(f"{stem}-images-idx3-ubyte.gz", _gz_idx(x, tmp_path))
                zf.writestr(f"{stem}-labels-idx1-ubyte.gz", _gz_idx(y, tmp_path))
                expected[(split, part)] = x
            zf.writestr(f"gzip/emnist-{split}-mapping.txt", "0 48\n")
        zf.writestr("gzip/README.txt", "not extracted")
    server.publish(monkeypatch, "emnist", "gzip.zip", buf.getvalue())
    root = tmp_path / "data"
    got = dl.download("emnist", root, mirror=server.url)
    assert not (root / "emnist" / "gzip.zip").exists()  # archive removed after extraction
    assert len(got.extracted) == 24 + 6 and not (root / "emnist" / "README.txt").exists()
    letters = load_dataset("emnist", root=root, split="letters")
    assert letters["train"].labels.tolist() == [0, 1, 2, 3, 4]
    balanced = load_dataset("emnist", root=root, split="balanced")["test"]
    assert np.array_equal(
        balanced.images[:, 0].numpy(), expected[("balanced", "test")].transpose(0, 2, 1)
    )
    assert dl.download("emnist", root, mirror=server.url).files[0].status == "present"


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_cifar_tar_gz_is_extracted(server, monkeypatch, tmp_path, name):
    rng = np.random.default_rng(3)
    src = tmp_path / "src"
    src.mkdir()
    members = {}
    if name == "cifar10":
        top, batches, key = (
            "cifar-10-batches-py",
            [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"],
            "labels",
        )
    else:
        top, batches, key = "cifar-100-python", ["train", "test"], "fine_labels"
    for b in batches:
        x = rng.integers(0, 256, (4, 3, 32, 32), dtype=np.uint8)
        kw = {"coarse_labels": [0, 1, 2, 3]} if name == "cifar100" else {}
        members[f"{top}/{b}"] = write_cifar_batch(
            src / b, x, [0, 1, 2, 3], label_key=key, **kw
        ).read_bytes()
    if name == "cifar10":
        members[f"{top}/batches.meta"] = _pickle_meta(
            src, b"label_names", list(cifar.CIFAR10_CLASSES)
        )
    else:
        members[f"{top}/meta"] = _pickle_meta(src, b"fine_label_names", list(cifar.CIFAR100_FINE))
    members[f"{top}/readme.html"] = b"<html></html>"
    archive = "cifar-10-python.tar.gz" if name == "cifar10" else "cifar-100-python.tar.gz"
    server.publish(monkeypatch, name, archive, _tar_gz(members))
    root = tmp_path / "data"
    got = dl.download(name, root, mirror=server.url)
    assert got.files[0].status == "downloaded" and not (root / name / archive).exists()
    parts = load_dataset(name, root=root)
    n_train = 20 if name == "cifar10" else 4
    assert (
        parts["train"].images.shape == (n_train, 3, 32, 32)
        and parts["test"].images.dtype == torch.uint8
    )
    assert parts["test"].labels.tolist() == [0, 1, 2, 3]
    assert not list((root / name).glob(".extract-*"))


def _pickle_meta(src, key: bytes, names: list[str]) -> bytes:
    import pickle

    return pickle.dumps({key: [n.encode() for n in names]}, protocol=2)


def test_svhn_mat_files(server, monkeypatch, tmp_path):
    from scipy.io import savemat

    rng = np.random.default_rng(4)
    for part, n in (("train", 7), ("test", 3)):
        x = rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8)
        y = (np.arange(n) % 10 + 1).reshape(-1, 1).astype(np.uint8)  # 1..10, 10 = digit 0
        bio = io.BytesIO()
        savemat(bio, {"X": x, "y": y})
        server.publish(monkeypatch, "svhn", f"{part}_32x32.mat", bio.getvalue())
    dl.download("svhn", tmp_path / "data", mirror=server.url)
    parts = load_dataset("svhn", root=tmp_path / "data")
    assert parts["train"].images.shape == (7, 3, 32, 32)
    assert parts["train"].labels.tolist() == [1, 2, 3, 4, 5, 6, 7]
    assert parts["test"].labels.tolist() == [1, 2, 3]


def test_stl10_binary_skips_unlabeled(server, monkeypatch, tmp_path):
    rng = np.random.default_rng(5)
    members = {}
    data = {}
    for part, n in (("train", 4), ("test", 3)):
        x = rng.integers(0, 256, (n, 3, 96, 96), dtype=np.uint8)
        members[f"stl10_binary/{part}_X.bin"] = stl10.write_stl10_images(
            tmp_path / "x.bin", x
        ).read_bytes()
        members[f"stl10_binary/{part}_y.bin"] = (np.arange(n) + 1).astype(np.uint8).tobytes()
        data[part] = x
    members["stl10_binary/unlabeled_X.bin"] = b"\0" * 27648
    members["stl10_binary/class_names.txt"] = "\n".join(stl10.STL10_CLASSES).encode()
    members["stl10_binary/fold_indices.txt"] = b"0 1\n" * 10
    server.publish(monkeypatch, "stl10", "stl10_binary.tar.gz", _tar_gz(members))
    root = tmp_path / "data"
    dl.download("stl10", root, mirror=server.url)
    assert not (root / "stl10" / "stl10_binary" / "unlabeled_X.bin").exists()
    parts = load_dataset("stl10", root=root)
    assert parts["train"].images.shape == (4, 3, 96, 96)
    assert np.array_equal(parts["test"].images.numpy(), data["test"])
    assert parts["test"].labels.tolist() == [0, 1, 2]


def test_quickdraw_categories_and_range_capped_download(server, monkeypatch, tmp_path):
    rng = np.random.default_rng(6)
    bitmaps = {
        c: rng.integers(0, 256, (9, 784), dtype=np.uint8) for c in ("cat", "The Eiffel Tower")
    }
    for c, a in bitmaps.items():
        server.publish(monkeypatch, "quickdraw", f"{c}.npy", _npy(a), md5=False)
    root = tmp_path / "data"
    got = dl.download(
        "quickdraw", root, categories="cat,The Eiffel Tower", per_class=4, mirror=server.url
    )
    assert [f.status for f in got.files] == ["downloaded", "downloaded"]
    assert ("/quickdraw/The Eiffel Tower.npy", "bytes=0-4095") in server.requests
    sent = [r for p, r in server.requests if p == "/quickdraw/cat.npy"]
    assert sent == ["bytes=0-4095"]  # the whole capped file fits the first range
    ds = load_dataset("quickdraw", root=root, categories=["The Eiffel Tower", "cat"])["train"]
    assert ds.images.shape == (8, 1, 28, 28) and ds.classes == ("The Eiffel Tower", "cat")
    assert np.array_equal(ds.images[4:, 0].reshape(4, 784).numpy(), bitmaps["cat"][:4])
    assert ds.labels.tolist() == [0] * 4 + [1] * 4
    # a smaller cap is already satisfied; the full file replaces the capped copy
    assert (
        dl.download("quickdraw", root, categories=["cat"], per_class=2, mirror=server.url)
        .files[0]
        .status
        == "present"
    )
    dl.download("quickdraw", root, categories=["cat"], mirror=server.url)
    assert np.array_equal(np.load(root / "quickdraw" / "cat.npy"), bitmaps["cat"])
    assert not (root / "quickdraw" / "cat.npy.json").exists()
    assert (
        dl.download("quickdraw", root, categories=["cat"], mirror=server.url).files[0].status
        == "present"
    )


def test_quickdraw_cap_fetches_only_a_prefix(server, monkeypatch, tmp_path):
    big = np.random.default_rng(7).integers(0, 256, (40, 784), dtype=np.uint8)  # ~31 kB
    server.publish(monkeypatch, "quickdraw", "dog.npy", _npy(big), md5=False)
    server.cut_once["/quickdraw/dog.npy"] = 1000  # the header request breaks; retried
    got = dl.download(
        "quickdraw", tmp_path, categories=["dog"], per_class=10, mirror=server.url, retry_wait=0
    )
    hl = len(_npy(big)) - big.nbytes
    ranges = [r for p, r in server.requests if p == "/quickdraw/dog.npy"]
    assert ranges == ["bytes=0-4095", "bytes=1000-4095", f"bytes=4096-{hl + 10 * 784 - 1}"]
    assert got.files[0].status == "resumed"
    assert np.array_equal(np.load(tmp_path / "quickdraw" / "dog.npy"), big[:10])


def test_quickdraw_bad_file_is_refused(server, monkeypatch, tmp_path):
    server.publish(
        monkeypatch, "quickdraw", "cat.npy", _npy(np.zeros((3, 10), np.uint8)), md5=False
    )
    server.publish(monkeypatch, "quickdraw", "dog.npy", b"<html>not found</html>", md5=False)
    with pytest.raises(DataError, match=r"expected C-order uint8 bitmaps of shape \(N, 784\)"):
        dl.download("quickdraw", tmp_path, categories=["cat"], mirror=server.url)
    with pytest.raises(DataError, match=r"dog.npy is not a .npy file"):
        dl.download("quickdraw", tmp_path, categories=["dog"], per_class=3, mirror=server.url)
    assert not list((tmp_path / "quickdraw").iterdir())


def test_quickdraw_names_are_checked(tmp_path):
    with pytest.raises(
        UnknownNameError, match=r"unknown quickdraw category 'catt'; did you mean 'cat'"
    ):
        dl.download("quickdraw", tmp_path, categories=["catt"], mirror="http://127.0.0.1:9")
    with pytest.raises(ConfigError, match="choose some with"):
        dl.download("quickdraw", tmp_path)


# ------------------------------------------------------------------ failure modes


def test_wrong_checksum_is_refused_and_leaves_nothing(server, monkeypatch, tmp_path):
    _mnist_like(server, monkeypatch, tmp_path)
    bad = "0" * 32
    monkeypatch.setitem(idx.RESOURCES["mnist"]["md5"], "train-images-idx3-ubyte.gz", bad)
    actual = hashlib.md5(server.files["/mnist/train-images-idx3-ubyte.gz"]).hexdigest()
    with pytest.raises(DataError) as info:
        dl.download("mnist", tmp_path / "data", mirror=server.url)
    msg = str(info.value)
    assert f"{server.url}/mnist/train-images-idx3-ubyte.gz" in msg and bad in msg and actual in msg
    assert not (tmp_path / "data" / "mnist" / "train-images-idx3-ubyte.gz").exists()
    assert not (tmp_path / "data" / "mnist" / "train-images-idx3-ubyte.gz.part").exists()


def test_existing_file_with_wrong_checksum_is_kept_and_reported(server, monkeypatch, tmp_path):
    _mnist_like(server, monkeypatch, tmp_path)
    f = tmp_path / "data" / "mnist" / "train-images-idx3-ubyte.gz"
    f.parent.mkdir(parents=True)
    f.write_bytes(b"something else")
    with pytest.raises(DataError, match=r"exists but its md5 is .* delete it and download again"):
        dl.download("mnist", tmp_path / "data", mirror=server.url)
    assert f.read_bytes() == b"something else"


def test_cut_connection_then_rerun_resumes(server, monkeypatch, tmp_path):
    rng = np.random.default_rng(8)
    blob = rng.integers(0, 256, 300_000, dtype=np.uint8).tobytes()
    server.publish(monkeypatch, "svhn", "train_32x32.mat", blob)
    dest = tmp_path / "svhn" / "train_32x32.mat"
    url = f"{server.url}/svhn/train_32x32.mat"
    server.cut_once["/svhn/train_32x32.mat"] = 120_000
    with pytest.raises(
        DataError, match=r"broke off after 120000 of 300000 bytes.*run the command again to resume"
    ):
        dl.fetch(url, dest, md5=hashlib.md5(blob).hexdigest(), retries=0)
    assert not dest.exists() and dest.with_name(dest.name + ".part").stat().st_size == 120_000
    got = dl.fetch(url, dest, md5=hashlib.md5(blob).hexdigest(), retries=0)
    assert server.requests[-1] == ("/svhn/train_32x32.mat", "bytes=120000-")
    assert got.status == "resumed" and dest.read_bytes() == blob
    assert not dest.with_name(dest.name + ".part").exists()


def test_cut_connection_is_resumed_automatically(server, monkeypatch, tmp_path):
    _mnist_like(server, monkeypatch, tmp_path)
    server.cut_once["/mnist/train-images-idx3-ubyte.gz"] = 500
    seen = []
    got = dl.download(
        "mnist",
        tmp_path / "data",
        mirror=server.url,
        retry_wait=0,
        progress=lambda u, d, t: seen.append((d, t)),
    )
    assert got.files[0].status == "resumed"
    assert ("/mnist/train-images-idx3-ubyte.gz", "bytes=500-") in server.requests
    assert seen and seen[-1][0] == seen[-1][1]  # the callback saw the file complete
    assert len(load_dataset("mnist", root=tmp_path / "data")["train"]) == 12


def test_server_ignoring_range_restarts_cleanly(server, monkeypatch, tmp_path):
    _mnist_like(server, monkeypatch, tmp_path)
    server.cut_once["/mnist/train-images-idx3-ubyte.gz"] = 500
    server.ignore_range = True
    dl.download("mnist", tmp_path / "data", mirror=server.url, retry_wait=0)
    assert len(load_dataset("mnist", root=tmp_path / "data")["train"]) == 12


def test_offline_names_url_and_where_to_place_files(tmp_path):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(DataError) as info:
        dl.download("cifar10", tmp_path, mirror=f"http://127.0.0.1:{port}")
    msg = str(info.value)
    assert f"cannot reach http://127.0.0.1:{port}/cifar10/cifar-10-python.tar.gz" in msg
    assert f"place it in {tmp_path / 'cifar10'} as cifar-10-python.tar.gz" in msg


def test_mirror_from_environment_and_http_errors(server, monkeypatch, tmp_path):
    data = _mnist_like(server, monkeypatch, tmp_path, "kmnist")
    monkeypatch.setenv(dl.MIRROR_ENV, server.url)
    dl.download("kmnist", tmp_path / "data")
    assert len(load_dataset("kmnist", root=tmp_path / "data")["test"]) == len(data["test"][0])
    with pytest.raises(DataError, match=r"/fashion_mnist/train-images-idx3-ubyte.gz: HTTP 404"):
        dl.download("fashion_mnist", tmp_path / "data")


def test_truncated_tar_gz_is_a_clear_error(server, monkeypatch, tmp_path):
    members = {f"cifar-10-batches-py/data_batch_{i}": bytes(range(256)) * 400 for i in range(1, 6)}
    whole = _tar_gz(members)
    server.publish(monkeypatch, "cifar10", "cifar-10-python.tar.gz", whole[: len(whole) // 2])
    with pytest.raises(DataError, match=r"cifar-10-python.tar.gz is corrupt or truncated"):
        dl.download("cifar10", tmp_path, mirror=server.url)
    assert not (tmp_path / "cifar10" / "cifar-10-batches-py").exists()
    assert not list((tmp_path / "cifar10").glob(".extract-*"))


def test_bad_gzip_archive_is_a_clear_error(server, monkeypatch, tmp_path):
    server.publish(
        monkeypatch, "cifar100", "cifar-100-python.tar.gz", b"\x1f\x8b\x08" + b"\xff" * 100
    )
    with pytest.raises(DataError, match=r"cifar-100-python.tar.gz is corrupt or truncated"):
        dl.download("cifar100", tmp_path, mirror=server.url)


def test_bad_gzip_idx_is_refused_by_the_loader(server, monkeypatch, tmp_path):
    _mnist_like(server, monkeypatch, tmp_path)
    good = server.files["/mnist/t10k-labels-idx1-ubyte.gz"]
    server.publish(monkeypatch, "mnist", "t10k-labels-idx1-ubyte.gz", good[:-12])  # truncated gzip
    dl.download("mnist", tmp_path / "data", mirror=server.url)  # its md5 matches: stored
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte.gz: corrupt or truncated gzip"):
        load_dataset("mnist", root=tmp_path / "data")


@pytest.mark.parametrize("kind", ["traversal", "symlink", "absolute"])
def test_unsafe_tar_members_are_refused(server, monkeypatch, tmp_path, kind):
    def extra(tf):
        if kind == "symlink":
            info = tarfile.TarInfo("cifar-10-batches-py/test_batch")
            info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
            tf.addfile(info)
        else:
            name = "../../evil.txt" if kind == "traversal" else "/tmp/evil.txt"
            info = tarfile.TarInfo(name)
            info.size = 4
            tf.addfile(info, io.BytesIO(b"evil"))

    server.publish(
        monkeypatch,
        "cifar10",
        "cifar-10-python.tar.gz",
        _tar_gz({"cifar-10-batches-py/a": b"x"}, extra),
    )
    with pytest.raises(DataError, match="refusing"):
        dl.download("cifar10", tmp_path / "data", mirror=server.url)
    assert not (tmp_path / "evil.txt").exists()
    assert not (tmp_path / "data" / "cifar10" / "cifar-10-batches-py").exists()


def test_bad_names_and_options():
    with pytest.raises(
        UnknownNameError,
        match=r"unknown downloadable dataset 'cifar'; did you mean 'cifar10', 'cifar100'",
    ):
        dl.download("cifar")
    with pytest.raises(ConfigError, match="nothing to download"):
        dl.download("digits")
    with pytest.raises(ConfigError, match="apply to quickdraw only"):
        dl.download("mnist", per_class=5)


def test_official_tables_are_complete():
    for name in dl.DOWNLOADABLE:
        if name == "quickdraw":
            continue
        for r in dl.resources(name):
            assert r.url.startswith(("https://", "http://")) and r.url.endswith(r.filename)
            assert r.md5 is not None and re.fullmatch(r"[0-9a-f]{32}", r.md5)
    from archlab.data.datasets.quickdraw import QUICKDRAW_CATEGORIES

    assert len(QUICKDRAW_CATEGORIES) == len(set(QUICKDRAW_CATEGORIES)) == 345


# ------------------------------------------------------------------ CLI


def test_cli_download_end_to_end(server, monkeypatch, tmp_path, capsys):
    _mnist_like(server, monkeypatch, tmp_path)
    root = tmp_path / "data"
    assert main(["data", "download", "mnist", "--root", str(root), "--mirror", server.url]) == 0
    out = capsys.readouterr().out
    assert out.count("downloaded") == 4 and "train-images-idx3-ubyte.gz" in out
    assert len(load_dataset("mnist", root=root)["train"]) == 12
    assert main(["data", "download", "minst", "--root", str(root)]) == 2
    assert "did you mean 'mnist'" in capsys.readouterr().err
    assert main(["data", "download", "mnist", "--root", str(root), "--per-class", "3"]) == 2
    assert main(["data", "download", "quickdraw", "--categories", "cta", "--root", str(root)]) == 2
    assert "did you mean 'cat'" in capsys.readouterr().err


@pytest.mark.parametrize("mirror", ["notaurl", "ftp://host/x", "http://", "https:///path", "file://", "//host/x"])
def test_a_mirror_that_is_not_a_url_is_refused_before_anything_is_fetched(tmp_path, monkeypatch, mirror):
    monkeypatch.delenv(dl.MIRROR_ENV, raising=False)
    with pytest.raises(ConfigError, match=re.escape(f"{mirror!r} is not a URL")):
        dl.download("mnist", tmp_path / "data", mirror=mirror)
    monkeypatch.setenv(dl.MIRROR_ENV, mirror)
    with pytest.raises(ConfigError, match=re.escape(f"${dl.MIRROR_ENV}: {mirror!r} is not a URL")):
        dl.download("mnist", tmp_path / "data")
    assert not (tmp_path / "data").exists()


def test_a_malformed_url_reaching_fetch_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="not a URL that can be fetched"):
        dl.fetch("notaurl/mnist/f.bin", tmp_path / "f.bin", retries=0)  # no scheme: urllib raises ValueError
