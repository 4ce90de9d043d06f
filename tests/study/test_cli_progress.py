"""`study run`'s live display (every run in flight, epoch/step, study ETA) and `study status`
telling a running study from an interrupted one."""

import fcntl
import json
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest
import yaml

from archlab._cli.progress import estimate_eta, format_eta
from archlab.cli import main
from archlab.study.progress import PROGRESS_FILE, ProgressWriter, read_progress, steps_per_epoch

from .conftest import study_dict

ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b[()][0-9A-B]|\r")


def test_progress_writer_positions_and_throttle(tmp_path):
    w = ProgressWriter(tmp_path / "run", steps_per_epoch=10, epochs=3, min_interval=3600)
    assert read_progress(tmp_path / "run") is None
    w(1)  # first call writes
    rec = read_progress(tmp_path / "run")
    assert (rec["epoch"], rec["step"], rec["global_step"], rec["total_steps"]) == (1, 1, 1, 30)
    w(15)  # within the interval: not written
    assert read_progress(tmp_path / "run")["global_step"] == 1
    w(30)  # the last step is always written, as the last epoch full
    rec = read_progress(tmp_path / "run")
    assert (rec["epoch"], rec["step"], rec["steps_per_epoch"], rec["epochs"]) == (3, 10, 10, 3)
    w2 = ProgressWriter(tmp_path / "run", steps_per_epoch=10, epochs=3, min_interval=0)
    w2(20)  # end of epoch 2 reads as epoch 2 step 10/10, not epoch 3 step 0
    rec = read_progress(tmp_path / "run")
    assert (rec["epoch"], rec["step"]) == (2, 10)
    assert [p.name for p in (tmp_path / "run").iterdir()] == [PROGRESS_FILE]  # no temp file left
    (tmp_path / "run" / PROGRESS_FILE).write_text("{not json")
    assert read_progress(tmp_path / "run") is None
    assert steps_per_epoch(101, 10, drop_last=False) == 11 and steps_per_epoch(101, 10, drop_last=True) == 10


def test_eta_from_finished_runs_and_in_flight_progress():
    assert estimate_eta([], [], 5, 2) is None  # nothing to extrapolate from
    # no run finished yet: 10 s for a quarter of a run -> 40 s per run; 1.75 runs of work left on 1 worker
    assert estimate_eta([], [(10.0, 0.25)], 1, 1) == pytest.approx(40 * 1.75)
    # finished runs decide: mean 20 s; 3 runs not started + halves of 2 in flight = 4 runs on 2 workers
    assert estimate_eta([10.0, 30.0], [(5.0, 0.5), (1.0, 0.5)], 3, 2) == pytest.approx(20 * 4 / 2)
    assert format_eta(None) == "?" and format_eta(75) == "1:15" and format_eta(3725) == "1:02:05"


def _run_in_pty(args, cwd, timeout=240):
    """Run the CLI in a pseudo-terminal (160 columns); returns (exit code, output without ANSI codes)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 160, 0, 0))
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "160", "LINES": "50"}
    env.pop("NO_COLOR", None)
    proc = subprocess.Popen([sys.executable, "-m", "archlab.cli", *map(str, args)], stdin=slave, stdout=slave,
                            stderr=slave, cwd=cwd, env=env, close_fds=True)
    os.close(slave)
    chunks, deadline = [], time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not data:
                    break
                chunks.append(data)
            elif proc.poll() is not None:
                break
        code = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    return code, ANSI.sub("", b"".join(chunks).decode(errors="replace"))


@pytest.mark.slow
def test_live_display_in_a_terminal_shows_runs_in_flight_and_eta(tmp_path):
    data = {"name": "synthetic", "options": {"num_classes": 3, "num_samples": 1500, "image_size": 16, "channels": 1},
            "val_fraction": 0.1, "test_fraction": 0.1}
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(study_dict(data=data, seeds=[0, 1], train={"epochs": 2, "batch_size": 8})))
    code, text = _run_in_pty(["study", "run", path, "--out", tmp_path / "out", "--workers", "2"], tmp_path)
    (tmp_path / "screen.txt").write_text(text)
    assert code == 0, text[-3000:]
    # every run in flight has its own line with epoch and step, two of them at once
    run_lines = re.findall(r"(synthetic16/[ab]/seed\d)\s.*?epoch (\d)/2\s+step (\d+)/(\d+)", text)
    assert len({label for label, *_ in run_lines}) >= 2, text[-3000:]
    assert {int(total) for *_, total in run_lines} == {steps_per_epoch(1200, 8, False)}
    assert re.search(r"2 running\s+ETA \d+:\d\d", text), text[-3000:]  # two in flight, a study ETA
    assert re.search(r"\d/4 runs.*ETA \d+:\d\d", text)
    assert "4/4 runs  writing the report" in text
    # the summary table after the display, its verdicts as lines under it
    assert "Δ vs baseline" in text and re.search(r"^- b: \w+", text, re.M) and "report:" in text
    done = read_progress(tmp_path / "out" / "runs" / "synthetic16" / "a" / "seed0")
    assert done is not None and done["global_step"] == done["total_steps"]


def _tiny_study(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(study_dict(seeds=[0], train={"epochs": 1, "batch_size": 30})))
    out = tmp_path / "out"
    assert main(["study", "run", str(path), "--out", str(out)]) == 0
    return out


def test_status_tells_running_from_interrupted(tmp_path, capsys):
    from archlab.study.runner import StudyLock
    from archlab.study.store import DB_NAME, StudyStore

    out = _tiny_study(tmp_path)
    capsys.readouterr()
    store = StudyStore(out / DB_NAME)
    run_id = next(r.id for r in store.rows(with_predictions=False, with_history=False) if r.variant == "b")
    store.mark_running(run_id)  # as after a kill -9 of the study process
    store.close()
    run = out / "runs" / "synthetic28" / "b" / "seed0"
    (run / PROGRESS_FILE).write_text(json.dumps({"epoch": 1, "epochs": 1, "step": 2, "steps_per_epoch": 3,
                                                 "global_step": 2, "total_steps": 3}))

    assert main(["study", "status", str(out)]) == 0
    text = capsys.readouterr().out
    assert "1 interrupted" in text and "no study process" in text
    assert "interrupted synthetic28/b/seed0: epoch 1/1, step 2/3" in text

    with StudyLock(out):  # a live `study run` holds the folder
        assert main(["study", "status", str(out)]) == 0
        text = capsys.readouterr().out
    assert f"1 running (study process pid {os.getpid()})" in text and "interrupted" not in text
    assert "running synthetic28/b/seed0: epoch 1/1, step 2/3" in text

    assert main(["study", "status", str(out)]) == 0  # the lock is gone with its holder
    assert "1 interrupted" in capsys.readouterr().out
    assert Path(out / ".study.lock").is_file()
