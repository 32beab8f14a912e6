"""The training command as users run it, in subprocesses: kill -9 and resume, 4 fake devices vs 1, and two
local processes with two CPU devices each (gloo collectives through ``jax.distributed``) vs one process with
four devices."""

from __future__ import annotations

import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from mamba_jax.data.synthetic import SyntheticSpec, ensure_corpus
from mamba_jax.training.checkpoint import load_params

REPO = pathlib.Path(__file__).parents[2]
SPEC = SyntheticSpec(n_train=3, n_valid=2, n_test=2, train_utts=3, eval_utts=2, tr_mixtures=8, cv_mixtures=2,
                     tt_mixtures=2, libri_train_utts=1, libri_eval_utts=1, min_seconds=0.5, max_seconds=1.0)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> pathlib.Path:
    return ensure_corpus(tmp_path_factory.mktemp("mp") / "corpus", progress=False, spec=SPEC)


def command(corpus: pathlib.Path, workdir: pathlib.Path, **train) -> list[str]:
    """A tiny Mamba-TasNet run: static mixtures, 0.25 s crops, validation on one utterance."""
    over = dict(num_steps=6, batch_size=4, log_every_steps=1, eval_every_steps=3, checkpoint_every_steps=2,
                eval_batches=1)
    over.update(train)
    return [sys.executable, str(REPO / "train.py"), "--config", str(REPO / "configs/mambatasnet_xs.py") + ":smoke",
            "--workdir", str(workdir), f"--config.data.root={corpus}", "--config.data.dynamic_mixing=False",
            "--config.data.segment_seconds=0.25"] + [f"--config.train.{k}={v}" for k, v in over.items()]


def env(devices: int, **extra) -> dict:
    e = {k: v for k, v in os.environ.items() if not k.startswith("JAX_")}
    e.update(XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}", JAX_PLATFORMS="cpu",
             PYTHONPATH=str(REPO), **extra)
    return e


def losses(workdir: pathlib.Path) -> dict[int, float]:
    rows = [json.loads(x) for x in (workdir / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in rows if "loss" in r}


def run(cmd: list[str], e: dict, timeout: int = 600) -> None:
    p = subprocess.run(cmd, env=e, capture_output=True, text=True, timeout=timeout)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]


def test_kill_9_then_resume_matches_uninterrupted(corpus, tmp_path):
    full, part = tmp_path / "full", tmp_path / "part"
    run(command(corpus, full), env(1))
    proc = subprocess.Popen(command(corpus, part), env=env(1), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 600
    # Kill once step 3 is logged: step 2 is checkpointed (possibly still being written asynchronously).
    while time.monotonic() < deadline and proc.poll() is None:
        if (part / "metrics.jsonl").exists() and max(losses(part), default=0) >= 3:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = max(losses(part))
    assert killed_at < 6
    run(command(corpus, part), env(1))  # the same command resumes
    a, b = losses(full), losses(part)
    assert sorted(a) == sorted(b) == list(range(1, 7))
    assert a == b  # bit-identical on CPU, including the steps recomputed after the kill


def test_four_devices_equal_one(corpus, tmp_path):
    run(command(corpus, tmp_path / "one", num_steps=3, checkpoint_every_steps=3), env(1))
    run(command(corpus, tmp_path / "four", num_steps=3, checkpoint_every_steps=3), env(4))
    a, b = losses(tmp_path / "one"), losses(tmp_path / "four")
    assert sorted(a) == sorted(b) == [1, 2, 3]
    np.testing.assert_allclose([b[s] for s in sorted(b)], [a[s] for s in sorted(a)], rtol=1e-5)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_equal_one_process(corpus, tmp_path):
    over = dict(num_steps=3, checkpoint_every_steps=3)
    run(command(corpus, tmp_path / "single", **over), env(4))
    port = _free_port()
    procs = [subprocess.Popen(command(corpus, tmp_path / "multi", **over), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True,
                              env=env(2, JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}", JAX_NUM_PROCESSES="2",
                                      JAX_PROCESS_ID=str(i)))
             for i in range(2)]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], "\n".join(o[-3000:] for o in outs)
    _, single, _, s1 = load_params(tmp_path / "single")
    _, multi, _, s2 = load_params(tmp_path / "multi")
    assert s1 == s2 == 3
    for x, y in zip(jax.tree.leaves(single), jax.tree.leaves(multi), strict=True):
        np.testing.assert_allclose(y, x, rtol=1e-5, atol=1e-7)
