"""Bad input gives one clear line, never a traceback, hang or crash (issue 14, items 7 and 8).

Each case goes through the user-facing CLI (``archlab.cli.main`` in-process, or a real subprocess
where a hang or a signal is the point) and checks: the exit code (2 for bad input, 1 for a failure
while working), one ``error:`` line on stderr naming the file/key/value, no traceback, nothing
written outside the output folder and nothing stored lost or rewritten.
"""

from __future__ import annotations

import errno
import gzip
import hashlib
import os
import shutil
import signal
import sqlite3
import struct
import time
import zlib
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from archlab.cli import main
from archlab.data.datasets.idx import read_idx, write_idx
from archlab.errors import DataError
from archlab.study.store import DB_NAME

from .conftest import fault_study, study_cli, write_study


def _run(capsys, *argv) -> tuple[int, str]:
    """``archlab ARGV`` in-process: (exit code, stderr with whitespace normalised)."""
    capsys.readouterr()
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    return code, " ".join(err.split())


def _one_error(err: str) -> str:
    """The error line (rich may wrap it; the words are what matter)."""
    assert err.count("error:") == 1, err
    return err


def _listing(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` with its content hash (to prove nothing else was touched)."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).digest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


@contextmanager
def _no_hang(seconds: int):
    """Fail (instead of hanging the suite) when the block blocks longer than ``seconds``."""

    def on_alarm(signum, frame):
        raise AssertionError(f"blocked for more than {seconds} s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def _tiny_study(**over):
    study = fault_study(seeds=[0], train={"epochs": 1, "batch_size": 10, "threads": 1})
    study.update(over)
    return study


# ------------------------------------------------------------------------------ study files and flags


def test_study_file_that_is_not_utf8(tmp_path, capsys):
    path = tmp_path / "latin1.yaml"
    path.write_bytes(write_study(tmp_path / "ok.yaml", fault_study()).read_bytes() + "description: Übung\n".encode("latin-1"))
    code, err = _run(capsys, "study", "run", path, "--out", tmp_path / "out")
    assert code == 2 and f"{path}: not UTF-8 text" in _one_error(err) and "line" in err and "save the file as UTF-8" in err
    assert not (tmp_path / "out").exists()
    run_file = tmp_path / "run.yaml"
    run_file.write_bytes(b"epochs: 1\nmodel: {name: mnist_cnn}\n# caf\xe9\n")
    code, err = _run(capsys, "train", "--config", run_file, "--out", tmp_path / "run")
    assert code == 2 and "not UTF-8 text" in _one_error(err)
    assert not (tmp_path / "run").exists()


BILLION_LAUGHS = """\
name: laughs
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
"""


def test_yaml_alias_bomb_is_refused_quickly(tmp_path, capsys):
    """9^9 = 387 million strings if expanded: refused from the composed nodes (linear), in well under a second."""
    path = tmp_path / "bomb.yaml"
    path.write_text(BILLION_LAUGHS)
    t0 = time.perf_counter()
    with _no_hang(30):
        code, err = _run(capsys, "study", "run", path, "--out", tmp_path / "out")
    assert time.perf_counter() - t0 < 10
    assert code == 2 and "expands to more than 100,000 values" in _one_error(err) and str(path) in err
    assert not (tmp_path / "out").exists()
    # a recursive alias is refused too, and a study using a few aliases still loads
    rec = tmp_path / "rec.yaml"
    rec.write_text("name: r\nvariants: &v {a: *v}\n")
    code, err = _run(capsys, "study", "run", rec, "--out", tmp_path / "out")
    assert code == 2 and "refers to itself" in _one_error(err)
    from archlab.study.config import load_study

    ok = tmp_path / "aliases.yaml"
    ok.write_text(
        write_study(tmp_path / "x.yaml", fault_study()).read_text()
        + "smoke: {train: &t {epochs: 1, batch_size: 10, threads: 1}}\n"
    )
    assert load_study(ok, smoke=True).train["epochs"] == 1


@pytest.mark.parametrize(
    "tagged",
    ["!!python/object/apply:os.system ['touch {m}']", "!!python/object/new:subprocess.Popen [['touch', '{m}']]"],
)
def test_set_with_a_python_tag_is_refused(tmp_path, capsys, tagged):
    marker = tmp_path / "pwned"
    code, err = _run(
        capsys, "train", "--model", "mnist_cnn", "--dataset", "synthetic", "--epochs", "1",
        "--set", f"x={tagged.format(m=marker)}", "--out", tmp_path / "run",
    )
    assert code == 2 and "--set x" in _one_error(err) and "could not determine a constructor" in err
    assert not marker.exists() and not (tmp_path / "run").exists()
    code, err = _run(capsys, "data", "audit", "synthetic", "-O", f"seed={tagged.format(m=marker)}", "--out", tmp_path / "a")
    assert code == 2 and "--option seed" in _one_error(err) and "could not determine a constructor" in err
    assert not marker.exists() and not (tmp_path / "a").exists()


@pytest.mark.parametrize("kind", ["file", "devnull", "proc", "under_a_file"])
def test_out_that_cannot_be_a_folder(tmp_path, capsys, kind):
    a_file = tmp_path / "notes.txt"
    a_file.write_text("keep me")
    out = {
        "file": a_file,
        "devnull": Path("/dev/null"),
        "proc": Path("/proc/archlab-x"),
        "under_a_file": a_file / "out",
    }[kind]
    study = write_study(tmp_path / "s.yaml", _tiny_study())
    before = _listing(tmp_path)
    for argv in (
        ["study", "run", study, "--out", out],
        ["train", "--model", "mnist_cnn", "--dataset", "synthetic", "--epochs", "1", "--out", out],
    ):
        code, err = _run(capsys, *argv)
        assert code == 2 and f"--out {out}" in _one_error(err), err
    assert _listing(tmp_path) == before  # the file is unchanged, nothing was created
    assert Path("/dev/null").is_char_device()
    assert not Path("/proc/[red]x").exists()


def test_mirror_that_is_not_a_url(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("ARCHLAB_MIRROR", raising=False)
    root = tmp_path / "data"
    code, err = _run(capsys, "data", "download", "mnist", "--root", root, "--mirror", "notaurl")
    assert code == 2 and "'notaurl' is not a URL" in _one_error(err) and "http(s)://" in err
    assert not root.exists()
    monkeypatch.setenv("ARCHLAB_MIRROR", "ftp:/x")
    code, err = _run(capsys, "data", "download", "mnist", "--root", root)
    assert code == 2 and "$ARCHLAB_MIRROR" in _one_error(err)
    assert not root.exists()


# ------------------------------------------------------------------------------ data files


def _png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG whose header declares ``width x height`` greyscale pixels (no pixel data: a bomb's header)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b""))
    return path


def _image_folder(root: Path, n: int = 4) -> Path:
    for c in ("cat", "dog"):
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            Image.fromarray(np.full((12, 12), 40 * i, np.uint8)).save(root / c / f"{i}.png")
    return root


def _folder_study(tmp_path: Path, root: Path) -> Path:
    data = {"name": "image_folder", "root": str(root), "options": {"image_size": 16, "mode": "L", "cache": False},
            "val_fraction": 0.25, "test_fraction": 0.25}
    return write_study(tmp_path / "s.yaml", _tiny_study(data=data))


@pytest.mark.parametrize("side", [20000, 10000])  # PIL's DecompressionBombError / DecompressionBombWarning range
def test_decompression_bomb_png_in_an_image_folder(tmp_path, capsys, side):
    root = _image_folder(tmp_path / "imgs")
    bomb = _png_header_only(root / "cat" / "big.png", side, side)
    code, err = _run(capsys, "study", "run", _folder_study(tmp_path, root), "--out", tmp_path / "out")
    assert code == 2 and str(bomb) in _one_error(err) and "image_size=16x16" in err and "pixels" in err
    assert f"{side * side:,}" in err


def test_fifo_named_png_in_an_image_folder_does_not_hang(tmp_path, capsys):
    root = _image_folder(tmp_path / "imgs")
    fifo = root / "dog" / "x.png"
    os.mkfifo(fifo)
    with _no_hang(60):
        code, err = _run(capsys, "study", "run", _folder_study(tmp_path, root), "--out", tmp_path / "out")
    assert code == 2 and f"{fifo} is a FIFO (named pipe), not an image file" in _one_error(err)
    from archlab.data.datasets.image_folder import load_image_folder

    with _no_hang(60):  # on_error="skip" leaves it out with a warning
        parts = load_image_folder(root=root, image_size=16, mode="L", cache=False, on_error="skip")
    assert len(parts["train"]) == 8


def test_image_folder_larger_than_memory_is_refused_before_decoding(tmp_path, capsys, monkeypatch):
    """The decoded size n x h x w x channels is compared with the available memory first (here capped by
    $ARCHLAB_MAX_LOAD_BYTES, as a real machine's MemAvailable would): nothing is decoded."""
    root = _image_folder(tmp_path / "imgs")
    import archlab.data.datasets.image_folder as image_folder

    decoded = []
    monkeypatch.setattr(image_folder, "_decode", lambda *a: decoded.append(a) or np.zeros((16, 16), np.uint8))
    monkeypatch.setenv("ARCHLAB_MAX_LOAD_BYTES", "3000")  # 8 images x 16 x 16 x 1 = 2,048 B, twice while loading
    code, err = _run(capsys, "study", "run", _folder_study(tmp_path, root), "--out", tmp_path / "out")
    assert code == 2 and "8 images decoded at image_size=16x16 x 1 channel(s) are 2.0 KiB" in _one_error(err)
    assert "only 2.9 KiB is available" in err and "smaller image_size" in err
    assert decoded == []
    monkeypatch.setenv("ARCHLAB_MAX_LOAD_BYTES", "5000")  # fits: loads
    parts = image_folder.load_image_folder(root=root, image_size=16, mode="L", cache=False)
    assert len(parts["train"]) == 8 and len(decoded) == 8


def test_idx_header_declaring_65536_to_the_4th(tmp_path, capsys):
    """2^64 bytes declared: the product does not overflow to 0, and nothing is allocated before the check."""
    folder = tmp_path / "data" / "mnist"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    write_idx(folder / "train-labels-idx1-ubyte.gz", rng.integers(0, 10, 4, dtype=np.uint8))
    write_idx(folder / "t10k-images-idx3-ubyte.gz", rng.integers(0, 255, (4, 28, 28), dtype=np.uint8))
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", rng.integers(0, 10, 4, dtype=np.uint8))
    header = b"\x00\x00\x08\x04" + struct.pack(">4I", 65536, 65536, 65536, 65536)
    bad = folder / "train-images-idx3-ubyte.gz"
    bad.write_bytes(header + bytes(64))  # plain (not gzipped) despite the name
    with pytest.raises(DataError, match=r"is truncated: shape \(65536, 65536, 65536, 65536\) of uint8 needs "
                                        r"18446744073709551616 bytes"):
        read_idx(bad)
    study = write_study(tmp_path / "s.yaml", _tiny_study(data={"name": "mnist", "root": str(tmp_path / "data")}))
    code, err = _run(capsys, "study", "run", study, "--out", tmp_path / "out")
    assert code == 2 and str(bad) in _one_error(err) and "65536" in err
    # gzipped: the declared size is checked against the memory before decompressing anything
    bad.write_bytes(gzip.compress(header + bytes(64)))
    code, err = _run(capsys, "study", "run", study, "--out", tmp_path / "out")
    assert code == 2 and "its header declares shape (65536, 65536, 65536, 65536)" in _one_error(err)
    assert "nothing was loaded" in err


def test_gzip_bomb_idx_is_read_only_up_to_its_declared_size(tmp_path):
    path = tmp_path / "x.gz"
    path.write_bytes(gzip.compress(b"\x00\x00\x08\x01" + struct.pack(">I", 10) + bytes(50_000_000)))
    with pytest.raises(DataError, match="has trailing bytes after the 10 bytes"):
        read_idx(path)
    write_idx(tmp_path / "ok.gz", np.arange(10, dtype=np.uint8))
    assert read_idx(tmp_path / "ok.gz").tolist() == list(range(10))


# ------------------------------------------------------------------------------ trained runs


@pytest.fixture(scope="module")
def finished_study(tmp_path_factory):
    """A finished 2-variant x 1-seed study (report written); tests copy it before damaging it."""
    from archlab.study.config import load_study
    from archlab.study.runner import run_study

    root = tmp_path_factory.mktemp("finished")
    path = write_study(root / "study.yaml", _tiny_study())
    store = run_study(load_study(path), root / "out", workers=1)
    assert all(r.status == "done" for r in store.rows())
    store.close()
    return path, root / "out"


def _copy(finished_study, tmp_path) -> tuple[Path, Path]:
    path, out = finished_study
    shutil.copytree(out, tmp_path / "out")
    return path, tmp_path / "out"


def test_export_and_analyze_with_a_corrupt_best_safetensors(tmp_path, capsys, finished_study):
    _, out = _copy(finished_study, tmp_path)
    run = next(p.parent for p in (out / "runs").rglob("best.safetensors"))
    best = run / "best.safetensors"
    best.write_bytes(best.read_bytes()[:100])  # truncated
    for argv in (
        ["export", run, "--format", "safetensors", "--out", tmp_path / "m.safetensors"],
        ["analyze", "rotation", run, "--images", "2", "--step", "90", "--out", tmp_path / "rot"],
    ):
        code, err = _run(capsys, *argv)
        assert code == 2 and f"{best} is corrupt or not safetensors" in _one_error(err), err
    best.write_bytes(b"not a safetensors file at all")
    code, err = _run(capsys, "export", run, "--format", "onnx", "--out", tmp_path / "m.onnx")
    assert code == 2 and str(best) in _one_error(err)
    assert not (tmp_path / "m.safetensors").exists() and not (tmp_path / "m.onnx").exists()
    (run / "config.json").write_text('{"model": ')
    code, err = _run(capsys, "export", run, "--format", "onnx", "--out", tmp_path / "m.onnx")
    assert code == 2 and f"{run / 'config.json'}" in _one_error(err) and "JSON" in err


def _dump(db: Path) -> list[str]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return list(conn.iterdump())
    finally:
        conn.close()


def _edit(db: Path, *statements: str) -> None:
    conn = sqlite3.connect(db)
    try:
        for s in statements:
            conn.execute(s)
        conn.commit()
    finally:
        conn.close()


DAMAGE = {
    "config_json": ("UPDATE runs SET config = '{\"model\": ' WHERE id = 1", "table runs, id 1, column config: not valid JSON"),
    "provenance_json": ("UPDATE runs SET provenance = 'nope' WHERE id = 2", "table runs, id 2, column provenance: not valid JSON"),
    "text_seed": ("UPDATE runs SET seed = 'zero' WHERE id = 1", "table runs, id 1, column seed: expected an integer, found 'zero'"),
    "truncated_predictions": (
        "UPDATE predictions SET preds = substr(preds, 1, 7) WHERE run_id = 1",
        "table predictions, run id 1, column preds: 7 bytes is not a whole number of int32 values (truncated)",
    ),
    "meta_json": ("UPDATE study SET value = '{' WHERE key = 'baseline'", "table study, key 'baseline', column value: not valid JSON"),
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_damaged_database_is_one_line_and_never_rewritten(tmp_path, capsys, finished_study, damage):
    study, out = _copy(finished_study, tmp_path)
    db = out / DB_NAME
    statement, expected = DAMAGE[damage]
    _edit(db, statement)
    before, files = _dump(db), _listing(out)
    for argv in (["study", "status", out], ["study", "report", out], ["study", "export", out],
                 ["study", "run", study, "--out", out]):
        code, err = _run(capsys, *argv)
        if damage == "truncated_predictions" and argv[1] in ("status", "export"):
            assert code == 0, err  # these read no predictions
            continue
        assert code == 2, (argv, err)
        assert f"{db}: {expected}" in _one_error(err), (argv, err)
        assert "left untouched" in err and "restore it from a backup" in err
        assert _dump(db) == before, argv
    after = _listing(out)
    for name in ("report.md", "report.html"):  # the old report stays as it was
        assert after.get(name) == files.get(name)


def test_foreign_sqlite_database_is_refused_and_left_as_it_is(tmp_path, capsys):
    study = write_study(tmp_path / "s.yaml", _tiny_study())
    out = tmp_path / "out"
    out.mkdir()
    db = out / DB_NAME
    _edit(db, "CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT)", "INSERT INTO users VALUES (1, 'a@b.c')")
    raw = db.read_bytes()
    for argv in (["study", "status", out], ["study", "report", out], ["study", "export", out],
                 ["study", "run", study, "--out", out]):
        code, err = _run(capsys, *argv)
        assert code == 2 and f"{db} is not an archlab study database (its tables: users)" in _one_error(err), err
        assert db.read_bytes() == raw, argv  # no table added, no WAL switch
    assert sorted(p.name for p in out.iterdir()) == [".study.lock", DB_NAME]  # (the lock of `run`)


def test_empty_database_file_is_not_silently_rebuilt(tmp_path, capsys):
    study = write_study(tmp_path / "s.yaml", _tiny_study())
    out = tmp_path / "out"
    out.mkdir()
    (out / DB_NAME).write_bytes(b"")
    for argv in (["study", "status", out], ["study", "report", out], ["study", "run", study, "--out", out]):
        code, err = _run(capsys, *argv)
        assert code == 2 and f"{out / DB_NAME} is empty (0 bytes)" in _one_error(err)
        assert "delete it to start afresh" in err
        assert (out / DB_NAME).stat().st_size == 0
    assert not (out / "runs").exists()


def test_disk_full_while_the_report_is_written(tmp_path, capsys, finished_study, monkeypatch):
    """ENOSPC in the middle of report.html: exit 1, one line, the old report intact, no temp file, db unchanged."""
    _, out = _copy(finished_study, tmp_path)
    db = out / DB_NAME
    before, files = _dump(db), _listing(out)
    import archlab.study.report as report

    real_open = open

    class Full:
        def __init__(self, f):
            self.f = f

        def write(self, data):
            self.f.write(data[: len(data) // 2])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        def __getattr__(self, name):
            return getattr(self.f, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

    def full_open(path, mode="r", *a, **kw):
        f = real_open(path, mode, *a, **kw)
        return Full(f) if "w" in mode and ".report.html" in str(path) else f

    monkeypatch.setattr(report, "open", full_open, raising=False)
    code, err = _run(capsys, "study", "report", out)
    assert code == 1 and f"{out / 'report.html'}: could not be written (No space left on device)" in _one_error(err)
    assert "the study database is unchanged" in err and "the previous file is intact" in err
    assert _dump(db) == before
    after = _listing(out)
    assert after["report.html"] == files["report.html"]
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


# ------------------------------------------------------------------------------ Ctrl-C


@pytest.mark.slow
def test_two_ctrl_c_within_milliseconds(tmp_path, reference):
    """The second Ctrl-C arrives while the first is being handled (workers being stopped): no traceback,
    exit 130, and the runs resume to the uninterrupted results."""
    from archlab.study.config import load_study
    from archlab.study.runner import run_study

    from .conftest import metrics

    path, ref, _ = reference
    out = tmp_path / "out"
    proc = study_cli("run", path, "--out", out, "--workers", "2")
    deadline = time.monotonic() + 180
    while not ((out / "runs").exists() and any((out / "runs").rglob("checkpoint"))):
        assert proc.poll() is None, proc.stderr.read()
        assert time.monotonic() < deadline, "training did not start"
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.002)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert "Traceback" not in err, err
    assert proc.returncode == 130, err
    assert "interrupted" in err and "run the same command again" in err
    store = run_study(load_study(path), out, report=False)
    assert metrics(store) == ref


def test_resuming_a_run_with_a_corrupt_best_safetensors(tmp_path, capsys):
    """`archlab train` resuming an interrupted run whose best.safetensors is damaged: one CheckpointError line."""
    import yaml

    cfg = tmp_path / "run.yaml"
    study = _tiny_study()
    cfg.write_text(yaml.safe_dump({"model": {"name": "mnist_cnn"}, "data": study["data"], "epochs": 1,
                                   "batch_size": 20, "threads": 1, "checkpoint_every_steps": 2}))
    run = tmp_path / "run"
    code, err = _run(capsys, "train", "--config", cfg, "--out", run, "--quiet")
    assert code == 0, err
    (run / "result.json").unlink()  # looks interrupted after its last checkpoint
    best = run / "best.safetensors"
    best.write_bytes(best.read_bytes()[:64])
    code, err = _run(capsys, "train", "--config", cfg, "--out", run, "--quiet")
    assert code == 2 and f"checkpoint file {best} is corrupt or not a safetensors file" in _one_error(err), err
    assert "--no-resume" in err


def test_a_second_ctrl_c_does_not_interrupt_the_clean_stop():
    """Deterministic half of the test above: with the CLI's handler, the first SIGINT raises
    KeyboardInterrupt and a second one, arriving while that is handled, raises nothing."""
    from archlab.cli import _one_interrupt

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    restore = _one_interrupt()
    try:
        cleaned = False
        with pytest.raises(KeyboardInterrupt):
            try:
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(1)  # (the signal is handled at once)
            except KeyboardInterrupt:
                os.kill(os.getpid(), signal.SIGINT)  # the second press, during the clean-up
                time.sleep(0.05)
                cleaned = True
                raise
        assert cleaned
    finally:
        restore()
        signal.signal(signal.SIGINT, previous)
    assert signal.getsignal(signal.SIGINT) is previous


def test_an_os_error_reaching_the_cli_is_one_line(tmp_path, capsys):
    """A command without its own --out check (analyze profile) that cannot write: one line, exit 1."""
    code, err = _run(capsys, "analyze", "profile", "mnist_cnn", "--in-chans", "1", "--latency-runs", "0",
                     "--out", "/proc/[red]x/y")
    assert code == 1 and "error: /proc/[red]x: No such file or directory" in _one_error(err), err
    assert not Path("/proc/[red]x").exists()
