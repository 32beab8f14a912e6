"""The training command as users run it, in subprocesses: kill -9 and resume, SIGTERM and resume, a changed
model refused, disk full (a small tmpfs) and resume, 4 fake devices vs 1, and two local processes with two CPU
devices each (gloo collectives through ``jax.distributed``) vs one process with four devices."""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from mamba_jax.checkpoint import load_params
from mamba_jax.data.synthetic import SyntheticSpec, ensure_corpus

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
    # No JAX_* setting of this process leaks in, except the run's compilation cache (tests/conftest.py).
    e = {k: v for k, v in os.environ.items() if not k.startswith("JAX_") or k == "JAX_COMPILATION_CACHE_DIR"}
    flags = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={devices}".strip()
    e.update(XLA_FLAGS=flags, JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO), **extra)
    return e


def losses(workdir: pathlib.Path) -> dict[int, float]:
    rows = [json.loads(x) for x in (workdir / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in rows if "loss" in r}


def run(cmd: list[str], e: dict, timeout: int = 600) -> None:
    p = subprocess.run(cmd, env=e, capture_output=True, text=True, timeout=timeout)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]


# The tests that compare against this run (or the four-device run) share one worker under `pytest -n 2` (so each
# run is made once).
UNINTERRUPTED = pytest.mark.xdist_group("uninterrupted_run")


@pytest.fixture(scope="module")
def uninterrupted(corpus, tmp_path_factory) -> pathlib.Path:
    """The 6-step run the interrupted ones must reproduce (checkpoints at 2, 4, 6)."""
    full = tmp_path_factory.mktemp("full") / "w"
    run(command(corpus, full), env(1))
    return full


def start_and_wait_for_step(cmd: list[str], workdir: pathlib.Path, step: int, **popen) -> subprocess.Popen:
    proc = subprocess.Popen(cmd, env=env(1), **popen)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and proc.poll() is None:
        if (workdir / "metrics.jsonl").exists() and max(losses(workdir), default=0) >= step:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be interrupted"
    return proc


@UNINTERRUPTED
def test_kill_9_then_resume_matches_uninterrupted(corpus, uninterrupted, tmp_path):
    part = tmp_path / "part"
    # Kill once step 3 is logged: step 2 is checkpointed (possibly still being written asynchronously).
    proc = start_and_wait_for_step(command(corpus, part), part, 3, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = max(losses(part))
    assert killed_at < 6
    run(command(corpus, part), env(1))  # the same command resumes
    a, b = losses(uninterrupted), losses(part)
    assert sorted(a) == sorted(b) == list(range(1, 7))
    assert a == b  # bit-identical on CPU, including the steps recomputed after the kill


@UNINTERRUPTED
def test_sigterm_checkpoints_the_current_step_then_resume_matches(corpus, uninterrupted, tmp_path):
    part = tmp_path / "part"
    cmd = command(corpus, part, checkpoint_every_steps=100)  # no periodic checkpoint before the last step
    proc = start_and_wait_for_step(cmd, part, 2, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 128 + signal.SIGTERM, out[-2000:] + err[-3000:]
    stopped = max(losses(part))
    assert stopped < 6
    assert err.strip().splitlines()[-1] == (f"stopped at step {stopped}, checkpoint saved; re-run the same "
                                            f"command to resume"), err[-3000:]
    assert "Traceback" not in err
    assert sorted(int(p.name) for p in (part / "checkpoints").iterdir()) == [stopped]  # the signal's checkpoint

    # A different model is refused before anything is built or written; the checkpoint is untouched.
    p = subprocess.run(cmd + ["--config.model.n_filters=24"], env=env(1), capture_output=True, text=True,
                       timeout=600)
    assert p.returncode == 1 and "Traceback" not in p.stderr, p.stderr[-3000:]
    assert "model.n_filters: 16 -> 24" in p.stderr and "cannot resume" in p.stderr, p.stderr[-3000:]

    # The same command resumes from that step; a change that cannot alter the losses is listed and accepted.
    p = subprocess.run(cmd + ["--config.train.max_to_keep=5"], env=env(1), capture_output=True, text=True,
                       timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "resuming with a changed config: train.max_to_keep 3 -> 5" in p.stdout
    assert f"resumed from {part / 'checkpoints'} at step {stopped}" in p.stdout
    a, b = losses(uninterrupted), losses(part)
    assert sorted(a) == sorted(b) == list(range(1, 7))
    assert a == b  # bit-identical on CPU


def _mount_namespace() -> list[str] | None:
    """A command prefix giving a private mount namespace in which tmpfs can be mounted (root, or a user
    namespace), or None where neither works."""
    if shutil.which("unshare") is None:
        return None
    for prefix in (["unshare", "--mount"], ["unshare", "--mount", "--map-root-user"]):
        probe = subprocess.run(prefix + ["sh", "-c", "d=$(mktemp -d) && mount -t tmpfs -o size=64k tmpfs $d"],
                               capture_output=True)
        if probe.returncode == 0:
            return prefix
    return None


@UNINTERRUPTED
def test_disk_full_stops_with_one_line_and_resume_is_exact(corpus, uninterrupted, tmp_path):
    prefix = _mount_namespace()
    if prefix is None:
        pytest.skip("cannot mount a tmpfs here (needs root or unprivileged user namespaces)")
    # A tmpfs with room for the workdir up to its first checkpoint (step 2) but not for the second (step 4).
    ckpt_kib = sum(f.stat().st_blocks for f in (uninterrupted / "checkpoints" / "2").rglob("*")) // 2
    work = tmp_path / "fs"
    work.mkdir()
    cmd = " ".join(f"'{c}'" for c in command(corpus, work / "w"))
    script = f"""
mount -t tmpfs -o size={int(ckpt_kib * 1.5) + 64}k tmpfs {work}
{cmd} > {tmp_path}/full.out 2> {tmp_path}/full.err; echo $? > {tmp_path}/full.rc
ls -a {work}/w/checkpoints > {tmp_path}/ls.txt
mount -o remount,size=64m {work}   # space freed: the same command resumes
{cmd} > {tmp_path}/resume.out 2> {tmp_path}/resume.err; echo $? > {tmp_path}/resume.rc
cp {work}/w/metrics.jsonl {tmp_path}/metrics.jsonl
"""
    subprocess.run(prefix + ["sh", "-c", script], env=env(1), timeout=1200, check=True)
    read = lambda name: (tmp_path / name).read_text()
    err = read("full.err")
    assert read("full.rc").strip() == "1", err[-3000:]
    assert "Traceback" not in err and "RESOURCE_EXHAUSTED" not in err, err[-3000:]
    lines = [ln for ln in err.splitlines() if "checkpoint save failed" in ln]
    assert len(lines) == 1 and "No space left on device" in lines[0] and str(work / "w") in lines[0], err[-3000:]
    assert "previous checkpoint (step 2) is intact" in lines[0]
    assert read("ls.txt").split() == [".", "..", "2"]  # no partial step folder
    assert read("resume.rc").strip() == "0", read("resume.err")[-3000:]
    assert f"at step 2" in read("resume.out")
    a = losses(uninterrupted)
    b = {r["step"]: r["loss"] for r in map(json.loads, read("metrics.jsonl").splitlines()) if "loss" in r}
    assert sorted(b) == list(range(1, 7)) and a == b  # bit-identical on CPU


@pytest.fixture(scope="module")
def four_devices(corpus, tmp_path_factory) -> pathlib.Path:
    """The uninterrupted run's command on four devices of one process (the two-process run's reference too)."""
    four = tmp_path_factory.mktemp("four") / "w"
    run(command(corpus, four), env(4))
    return four


@UNINTERRUPTED
def test_four_devices_equal_one(uninterrupted, four_devices):
    a, b = losses(uninterrupted), losses(four_devices)
    assert sorted(a) == sorted(b) == list(range(1, 7))
    np.testing.assert_allclose([b[s] for s in sorted(b)], [a[s] for s in sorted(a)], rtol=1e-5)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@UNINTERRUPTED  # shares the four-device run with test_four_devices_equal_one
def test_two_processes_equal_one_process(corpus, four_devices, tmp_path):
    port = _free_port()
    # The four-device run's command, checkpointed and validated only at the end (the comparison reads the last
    # checkpoint; validation changes no parameter).
    cmd = command(corpus, tmp_path / "multi", checkpoint_every_steps=6, eval_every_steps=6)
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              env=env(2, JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}", JAX_NUM_PROCESSES="2",
                                      JAX_PROCESS_ID=str(i)))
             for i in range(2)]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], "\n".join(o[-3000:] for o in outs)
    _, single, _, s1 = load_params(four_devices)
    _, multi, _, s2 = load_params(tmp_path / "multi")
    assert s1 == s2 == 6
    for x, y in zip(jax.tree.leaves(single), jax.tree.leaves(multi), strict=True):
        np.testing.assert_allclose(y, x, rtol=1e-5, atol=1e-7)


@pytest.mark.slow  # ~1.5 min on 2 cores (two processes compiling); the single-process SIGTERM test runs by default
def test_sigterm_to_one_of_two_processes_stops_both_at_the_same_step(corpus, tmp_path):
    port = _free_port()
    work = tmp_path / "multi"
    # 12 steps logged every 2: a stop requested on process 0 is agreed at the next logging step.
    cmd = command(corpus, work, num_steps=12, log_every_steps=2, checkpoint_every_steps=100, eval_every_steps=100)
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=env(2, JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}", JAX_NUM_PROCESSES="2",
                                      JAX_PROCESS_ID=str(i)))
             for i in range(2)]
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and procs[0].poll() is None:
        if (work / "metrics.jsonl").exists() and max(losses(work), default=0) >= 2:
            break
        time.sleep(0.05)
    assert procs[0].poll() is None, "the run finished before it could be interrupted"
    procs[0].send_signal(signal.SIGTERM)  # process 1 gets no signal
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [128 + signal.SIGTERM] * 2, "\n".join(o[1][-3000:] for o in outs)
    last_lines = {o[1].strip().splitlines()[-1] for o in outs}
    assert len(last_lines) == 1, last_lines  # the same step on both
    stopped = int(last_lines.pop().split()[3].rstrip(","))
    assert stopped % 2 == 0 and stopped < 12
    assert sorted(int(p.name) for p in (work / "checkpoints").iterdir()) == [stopped]
