"""The README's quick start, run exactly as written, so the README cannot drift from what works.

The commands are read from the README's "The two commands" section (every shell block there) and
run by bash, one script, in a copy of the repository's top-level files: ``make demo`` with the
install stamp already in place (``.venv`` is this checkout's environment, linked), then the first
steps after it. Two things differ from a fresh clone, both to keep the test short: ``make test``
(the whole suite, of which this is a part) is left out, and the demo's study file is the real
quickstart cut down to 2 heads x 2 seeds x 1 epoch (tests/study/test_ready_studies.py checks the
real one).
"""

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
STAMP = REPO / ".venv" / ".installed"


def quick_start_commands(readme: str) -> list[str]:
    """Every command line of the shell blocks in the README's "## The two commands" section."""
    section = readme.split("## The two commands", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", section, flags=re.S)
    lines = [ln.strip() for block in blocks for ln in block.splitlines()]
    return [ln for ln in lines if ln and not ln.startswith("#")]


def test_the_section_holds_the_commands_a_new_user_needs():
    cmds = quick_start_commands((REPO / "README.md").read_text())
    assert cmds[:2] == ["make demo   # creates .venv, installs pinned dependencies, runs studies/quickstart.yaml on the embedded digits",
                        "make test   # same install, runs the whole test suite"]
    assert any(c.startswith("source .venv/bin/activate") for c in cmds)
    assert any("--print-config" in c for c in cmds) and any("study new" in c for c in cmds)


@pytest.mark.slow
@pytest.mark.skipif(not STAMP.is_file() or shutil.which("make") is None, reason="needs `make install` done and make")
def test_quick_start_runs_as_written(tmp_path):
    work = tmp_path / "clone"
    work.mkdir()
    for name in ("Makefile", "pyproject.toml", "constraints.txt", "README.md"):
        shutil.copy(REPO / name, work / name)
        os.utime(work / name, (STAMP.stat().st_mtime - 60,) * 2)  # older than the stamp: no reinstall
    (work / ".venv").symlink_to(REPO / ".venv")
    (work / "studies").mkdir()
    quick = yaml.safe_load((REPO / "studies" / "quickstart.yaml").read_text())
    quick["train"]["epochs"], quick["seeds"] = 1, 2
    quick["variants"] = {k: quick["variants"][k] for k in ("linear", "mlp")}
    (work / "studies" / "quickstart.yaml").write_text(yaml.safe_dump(quick, sort_keys=False))

    cmds = [c for c in quick_start_commands((REPO / "README.md").read_text()) if not c.startswith("make test")]
    script = "set -euo pipefail\n" + "\n".join(cmds) + "\n"
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env["PATH"] = "/usr/bin:/bin:/usr/local/bin"  # no archlab on the PATH until the README activates .venv
    proc = subprocess.run(["bash", "-c", script], cwd=work, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    out = proc.stdout
    assert "pip install" not in proc.stderr  # make found the stamp: nothing was installed
    assert "4/4 done" in out  # study status of the (cut-down) demo
    assert "vgg5" in out  # archlab models 'vgg*'
    assert "test accuracy" in out and (work / "runs" / "first" / "result.json").is_file()  # the run file trained
    assert yaml.safe_load((work / "run.yaml").read_text())["epochs"] == 10  # the printed template
    assert (work / "heads.yaml").is_file() and (work / "runs" / "heads-smoke" / "report.html").is_file()
    assert (work / "runs" / "quickstart" / "report.html").is_file()
