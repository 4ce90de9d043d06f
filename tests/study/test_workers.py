"""The study's worker processes (archlab.study.backends.local): fork server, environment, start-up."""

import multiprocessing as mp
import os
import subprocess
import sys

import pytest

from archlab.study.backends.local import WORKER_PRELOAD, LocalExecutor, Pool, start_worker_server, worker_context


@pytest.mark.skipif("forkserver" not in mp.get_all_start_methods(), reason="no fork server on this platform")
def test_workers_fork_from_a_server_holding_torch_and_archlab():
    ctx = worker_context()
    assert ctx.get_start_method() == "forkserver"
    assert {"torch", "archlab.train.engine", "torch._dynamo"} <= set(WORKER_PRELOAD)


def test_a_worker_sees_the_environment_of_the_study_process_at_its_start(monkeypatch):
    start_worker_server()  # started before the variable is set, as `study run` does
    monkeypatch.setenv("ARCHLAB_TEST_WORKER_ENV", "set-after-the-server-started")
    pool = Pool()
    try:
        got = pool.get(2).submit(os.getenv, "ARCHLAB_TEST_WORKER_ENV").result(timeout=120)
    finally:
        pool.close()
    assert got == "set-after-the-server-started"


def test_cli_starts_without_torch():
    """`archlab` imports lazily: the CLI (and the fork server's start) come before torch is loaded."""
    code = "import sys, archlab.cli, archlab.study.backends.local; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_lazy_package_still_lists_every_builtin_model():
    code = "import archlab; print(len(archlab.list_models()), len(archlab.list_heads()), archlab.errors.ConfigError.__name__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    n_models, n_heads, name = out.stdout.split()
    assert int(n_models) > 20 and int(n_heads) >= 5 and name == "ConfigError"


def test_a_worker_runs_in_the_working_folder_of_the_study_process(tmp_path, monkeypatch):
    """Relative data and run paths resolve as in the study process, whatever folder the server started in."""
    start_worker_server()
    monkeypatch.chdir(tmp_path)
    pool = Pool()
    try:
        got = pool.get(2).submit(os.getcwd).result(timeout=120)
    finally:
        pool.close()
    assert os.path.realpath(got) == os.path.realpath(tmp_path)


def test_preflight_checks_the_optimizer_itself_when_the_workers_are_gone(tmp_path):
    """A pool broken before the preflight (a worker killed) still gets every variant checked, here."""
    from archlab.errors import ConfigError
    from archlab.study.config import Study
    from archlab.study.runner import preflight

    spec = {
        "name": "broken_pool", "seeds": [0], "baseline": "a",
        "data": {"name": "synthetic", "options": {"num_samples": 40, "image_size": 16, "channels": 1, "num_classes": 2}},
        "model": {"name": "mnist_cnn", "kwargs": {}}, "train": {"epochs": 1, "batch_size": 8},
        "variants": {"a": {}, "b": {"train": {"scheduler": {"name": "step", "kwargs": {"step_sise": 2}}}}},
    }
    local = LocalExecutor(2)
    try:
        local.warm(runs=2, threads=1)
        assert local.checks_optimizers
        executor = local.pool.get()
        for proc in list(executor._processes.values()):  # noqa: SLF001 - kill the workers from outside
            proc.kill()
            proc.join()
        with pytest.raises(ConfigError, match="step_sise") as err:
            preflight(Study.model_validate(spec), local)
        assert "variant 'b'" in str(err.value)
    finally:
        local.kill()
