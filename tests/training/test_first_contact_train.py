"""A new user's training mishaps (issue 30): a truncated file in the latest checkpoint (item 4), two trainers on one
workdir (6), a run killed before its first checkpoint (8), a workdir that is a file or read-only and a bad
``init_from`` (10), out-of-range config values (11), orbax's restore warnings (12).

One tiny Mamba-TasNet run (checkpoints at steps 2 and 4) is trained once in this process and copied with
``shutil.copytree`` for each test that resumes it; damage is done to the real orbax files on disk. ``train.py``
runs as typed in a subprocess where the item is about the command (exit status, one error line, a second
process, Ctrl-C); those subprocesses stop before any compilation (a few CPU-seconds each).
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from mamba_jax.checkpoint import CheckpointReadError, load_model, load_params
from mamba_jax.config import load_config
from mamba_jax.data.synthetic import SyntheticSpec, ensure_corpus
from mamba_jax.training.loop import train_and_evaluate
from mamba_jax.training.resume import InitFromError

pytestmark = pytest.mark.xdist_group("first_contact_train")  # one worker builds the trained fixture once

REPO = pathlib.Path(__file__).parents[2]
TINY = SyntheticSpec(n_train=4, n_valid=2, n_test=2, train_utts=3, eval_utts=2, tr_mixtures=12, cv_mixtures=2,
                     tt_mixtures=2, libri_train_utts=1, libri_eval_utts=1, min_seconds=0.5, max_seconds=1.0)
# The config of tests/training/test_loop.py's runs (their compiled programs are in the run's compilation cache),
# as a config file so that train.py can resume the same workdir; ``:ARG`` is the corpus root.
CONFIG_FILE = '''
import ml_collections
from mamba_jax.training.defaults import base_config


def get_config(root):
    c = base_config("separation")
    c.model = ml_collections.ConfigDict(dict(name="mamba_tasnet", scan_impl="sequential", n_filters=16, n_layer=1))
    c.data.root = root + "/wsj0-2mix/2speakers"
    c.data.segment_seconds = 0.5
    c.optim.lr = 1e-3
    c.train.update(dict(num_steps=4, batch_size=1, log_every_steps=1, eval_every_steps=2, checkpoint_every_steps=2,
                        eval_batches=1, eval_pad_multiple=800))
    c.lock()
    return c
'''
STALE_ROWS = [{"step": s, "loss": 123.0} for s in (1, 2, 3)]


def rows(workdir: pathlib.Path) -> list[dict]:
    return [json.loads(x) for x in (workdir / "metrics.jsonl").read_text().splitlines()]


def losses(workdir: pathlib.Path) -> dict[int, float]:
    out = {}
    for r in rows(workdir):
        if "loss" in r:
            assert r["step"] not in out, f"step {r['step']} logged twice"
            out[r["step"]] = r["loss"]
    return out


def steps_on_disk(workdir: pathlib.Path) -> list[str]:
    return sorted(p.name for p in (workdir / "checkpoints").iterdir())


@pytest.fixture(scope="module")
def spec(tmp_path_factory) -> str:
    """``<config file>:<corpus root>`` of the tiny run."""
    root = tmp_path_factory.mktemp("fc_train")
    corpus = ensure_corpus(root / "corpus", progress=False, spec=TINY)
    (root / "cfg").mkdir()
    (root / "cfg" / "tiny_run.py").write_text(CONFIG_FILE)
    return f"{root / 'cfg' / 'tiny_run.py'}:{corpus}"


def config(spec: str, **train):
    c = load_config(spec)
    c.train.update(train)
    return c


@pytest.fixture(scope="module")
def trained(spec, tmp_path_factory) -> pathlib.Path:
    """The 4-step run, in a workdir where a run killed before its first checkpoint left metric rows and an
    event file (item 8)."""
    work = tmp_path_factory.mktemp("trained") / "w"
    (work / "tensorboard").mkdir(parents=True)
    (work / "tensorboard" / "events.out.tfevents.1.killed").write_bytes(b"stale")
    (work / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in STALE_ROWS) + '{"step": 4, "lo')
    train_and_evaluate(config(spec), work)
    return work


def copy(trained: pathlib.Path, tmp_path: pathlib.Path) -> pathlib.Path:
    return pathlib.Path(shutil.copytree(trained, tmp_path / "w"))


def cut(file: pathlib.Path) -> None:
    """Truncates ``file`` to half its size, as an interrupted copy or a crash of the file system leaves it."""
    os.truncate(file, file.stat().st_size // 2)


def train_py(*args: str) -> list[str]:
    return [sys.executable, str(REPO / "train.py"), *args]


def env() -> dict:
    return {**os.environ, "JAX_PLATFORMS": "cpu"}


def run(cmd: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, env=env(), cwd=REPO, timeout=600)


def error_lines(stderr: str) -> list[str]:
    assert "Traceback" not in stderr, stderr
    return [ln for ln in stderr.splitlines() if ln.startswith("error:")]


# ---- item 8: a run without a checkpoint starts clean ----------------------------------------------------------
def test_a_run_without_checkpoint_drops_the_rows_and_events_of_a_killed_one(trained):
    assert sorted(losses(trained)) == [1, 2, 3, 4]  # each step once, none of the killed run's
    assert all(r.get("loss") != 123.0 for r in rows(trained))
    assert [p.name for p in (trained / "tensorboard").iterdir() if p.name.endswith(".killed")] == []
    assert len(list((trained / "tensorboard").iterdir())) == 1


# ---- item 4: walk back from a checkpoint that cannot be read --------------------------------------------------
def test_truncated_array_file_resumes_exactly_from_the_previous_step(trained, spec, tmp_path, capsys):
    work = copy(trained, tmp_path)
    for f in (work / "checkpoints" / "4" / "state" / "ocdbt.process_0" / "d").iterdir():
        cut(f)
    train_and_evaluate(config(spec), work)
    out, err = capsys.readouterr()
    warnings = [ln for ln in err.splitlines() if ln.startswith("warning:")]
    assert len(warnings) == 1 and "checkpoint step 4" in warnings[0] and "state: array data" in warnings[0] and \
        "resuming from step 2" in warnings[0], err
    assert f"resumed from {work / 'checkpoints'} at step 2" in out
    assert steps_on_disk(work) == ["2", "4", "4.unreadable"]
    a, b = losses(trained), losses(work)
    assert sorted(b) == [1, 2, 3, 4] and a == b  # steps 3 and 4 again, bit-identical: data order, optimiser, rng
    _, p_a, _, _ = load_params(trained)
    _, p_b, _, step = load_params(work)
    assert step == 4
    for x, y in zip(jax_leaves(p_a), jax_leaves(p_b), strict=True):
        np.testing.assert_array_equal(x, y)


def jax_leaves(tree) -> list:
    import jax

    return jax.tree.leaves(tree)


@pytest.mark.parametrize("damaged", ["data_iter/process_0-of-1.json", "config/metadata", "state/_METADATA",
                                     "_CHECKPOINT_METADATA"])
def test_truncated_metadata_file_passes_over_its_step(trained, spec, tmp_path, capsys, damaged):
    work = copy(trained, tmp_path)
    cut(work / "checkpoints" / "4" / damaged)
    # Inference: the latest readable step's weights, with one warning naming the step and the file.
    model, _ = load_model(work)
    err = capsys.readouterr().err
    assert err.count("warning:") == 1 and "checkpoint step 4" in err and damaged in err, err
    _, p2, _, _ = load_params(work / "checkpoints" / "2")
    _, p_loaded, _, _ = load_params(work)
    for x, y in zip(jax_leaves(p2), jax_leaves(p_loaded), strict=True):
        np.testing.assert_array_equal(x, y)
    # Training: resumes from step 2 (num_steps 2: nothing left to train, so only the resume runs).
    train_and_evaluate(config(spec, num_steps=2), work)
    out, err = capsys.readouterr()
    warnings = [ln for ln in err.splitlines() if ln.startswith("warning:")]
    assert len(warnings) == 1 and "checkpoint step 4" in warnings[0] and damaged in warnings[0], err
    assert f"resumed from {work / 'checkpoints'} at step 2" in out
    assert steps_on_disk(work) == ["2", "4.unreadable"]


def test_no_readable_checkpoint_is_one_line_naming_the_workdir(trained, spec, tmp_path):
    work = copy(trained, tmp_path)
    for step in ("2", "4"):
        cut(work / "checkpoints" / step / "state" / "_METADATA")
    with pytest.raises(CheckpointReadError) as e:
        train_and_evaluate(config(spec), work)
    msg = str(e.value)
    assert "\n" not in msg and f"cannot resume {work}" in msg and "step 4:" in msg and "step 2:" in msg
    assert steps_on_disk(work) == ["2", "4"]  # nothing set aside when there is nothing to resume from


# ---- item 12: a resume says so once, without orbax's warnings ------------------------------------------------
def test_resume_prints_one_line_and_no_orbax_warnings(trained, spec, tmp_path, capsys, caplog):
    work = copy(trained, tmp_path)
    train_and_evaluate(config(spec), work)  # all 4 steps done: restores, then returns
    out, err = capsys.readouterr()
    assert f"resumed from {work / 'checkpoints'} at step 4" in out
    noise = [r.getMessage() for r in caplog.records if "could not be restored" in r.getMessage()]
    assert noise == [] and "could not be restored" not in err
    import logging

    assert all(not f.__class__.__name__.startswith("_Drop") for f in logging.getLogger("absl").filters)


# ---- item 6: one trainer per workdir -------------------------------------------------------------------------
HOLD = ("import sys, time\nfrom mamba_jax.training.workdir import WorkdirLock\n"
        "with WorkdirLock(sys.argv[1]):\n    print('held', flush=True)\n    time.sleep(600)\n")


def test_a_second_trainer_is_refused_and_the_lock_dies_with_its_holder(trained, spec, tmp_path):
    work = copy(trained, tmp_path)
    before = (work / "metrics.jsonl").read_text()
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(work)], stdout=subprocess.PIPE, text=True, env=env())
    try:
        assert holder.stdout.readline().strip() == "held"
        p = run(train_py("--config", spec, "--workdir", str(work), "--config.train.num_steps=6"))
        assert p.returncode == 1, p.stderr
        [line] = error_lines(p.stderr)
        assert f"workdir {work} is in use by another training run (pid {holder.pid} on " in line
        assert (work / "metrics.jsonl").read_text() == before and steps_on_disk(work) == ["2", "4"]
    finally:
        holder.kill()  # kill -9: the kernel releases the lock
        holder.wait()
    again = subprocess.run([sys.executable, "-c", HOLD.replace("time.sleep(600)", "pass"), str(work)],
                           capture_output=True, text=True, env=env(), timeout=120)
    assert again.returncode == 0 and again.stdout.strip() == "held", again.stderr


# ---- item 8: what Ctrl-C twice says ---------------------------------------------------------------------------
def _ctrl_c_twice(cmd: list[str], work: pathlib.Path) -> subprocess.CompletedProcess:
    """Starts ``cmd``, waits until it holds the workdir's lock (the loop is imported, nothing trained yet), then
    presses Ctrl-C until it exits: the first asks for a stop after the current step, a second one stops at once
    (one may be lost inside a garbage-collection callback of JAX's, hence more than two)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env(), cwd=REPO)
    err: list[str] = []
    reader = threading.Thread(target=lambda: err.extend(proc.stderr), daemon=True)
    reader.start()
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None and not (work / ".lock").exists():
        time.sleep(0.02)
    # until its error line is out: a Ctrl-C after it would interrupt the exit itself
    while time.monotonic() < deadline and proc.poll() is None and not any(ln.startswith("error:") for ln in err):
        proc.send_signal(signal.SIGINT)
        time.sleep(0.1)
    proc.wait(timeout=300)
    reader.join(timeout=60)
    return subprocess.CompletedProcess(cmd, proc.returncode, "", "".join(err))


def last_line(stderr: str) -> str:
    return stderr.strip().splitlines()[-1]


def test_ctrl_c_twice_before_the_first_checkpoint_says_step_0(spec, tmp_path):
    work = tmp_path / "w"
    p = _ctrl_c_twice(train_py("--config", spec, "--workdir", str(work)), work)
    assert p.returncode == 130, p.stderr
    line = last_line(p.stderr)
    assert line == ("error: interrupted (Ctrl-C) before the first checkpoint was written; re-running the same "
                    "command starts from step 0"), p.stderr
    assert not (work / "checkpoints").exists() or not any((work / "checkpoints").iterdir())


@pytest.mark.slow  # ~5 CPU-s; the message's other branch runs by default (the choice is one condition)
def test_ctrl_c_twice_after_a_checkpoint_says_which_step(trained, spec, tmp_path):
    work = copy(trained, tmp_path)
    (work / ".lock").unlink()  # _ctrl_c_twice waits for the run to take it
    p = _ctrl_c_twice(train_py("--config", spec, "--workdir", str(work), "--config.train.num_steps=8"), work)
    assert p.returncode == 130, p.stderr
    assert last_line(p.stderr) == ("error: interrupted (Ctrl-C); re-running the same command resumes from step 4 "
                                   "(the last checkpoint)"), p.stderr


# ---- items 10, 11: one line per bad setting, before the workdir is touched ------------------------------------
def test_bad_values_and_a_file_workdir_are_one_line_each(tmp_path):
    (tmp_path / "notes.txt").write_text("a file")
    p = run(train_py("--config", "configs/mambatasnet_xs.py:smoke", "--workdir", str(tmp_path / "notes.txt"),
                     "--config.train.num_steps=-5", "--config.optim.lr=-1", "--config.train.batch_size=0",
                     "--config.optim.warmup_steps=-3", "--config.data.segment_seconds=0"))
    assert p.returncode == 2
    lines = error_lines(p.stderr)
    assert len(lines) == 6, p.stderr
    for expected in ("--config.train.num_steps=-5: must be an integer > 0", "--config.optim.lr=-1.0: must be >= 0",
                     "--config.train.batch_size=0: must be an integer >= 1", "--config.optim.warmup_steps=-3",
                     "--config.data.segment_seconds=0.0", f"--workdir {tmp_path / 'notes.txt'} is a file"):
        assert any(expected in ln for ln in lines), (expected, lines)
    assert (tmp_path / "notes.txt").read_text() == "a file"


def test_every_config_is_valid_and_each_rule_names_its_field():
    from mamba_jax.training.validate import config_problems

    for file in sorted((REPO / "configs").glob("[a-z]*.py")):
        for arg in ("", ":smoke"):
            assert config_problems(load_config(f"{file}{arg}")) == [], file
    c = load_config("configs/conmamba_small.py:smoke")
    bad = {("optim", "grad_accum"): 0, ("optim", "b2"): 1.0, ("features", "hop_length_ms"): 0.0,
           ("recipe", "num_buckets"): 0, ("decoding", "beam_size"): 0, ("model", "d_model"): 0,
           ("model", "dropout"): 1.0, ("augment", "time_drop_count"): (5, 1), ("train", "eval_batches"): 0}
    for (block, field), value in bad.items():
        c[block][field] = value
    problems = config_problems(c)
    assert sorted(p.split("=")[0] for p in problems) == sorted(f"{b}.{f}" for b, f in bad)


def test_unknown_field_lists_the_fields_of_its_block(tmp_path):
    p = run(train_py("--config", "configs/mambatasnet_xs.py:smoke", "--workdir", str(tmp_path / "w"),
                     "--config.train.num_step=3"))
    assert p.returncode == 2
    [line] = error_lines(p.stderr)
    assert "did you mean --config.train.num_steps?" in line and "the fields of config.train: batch_size," in line
    assert "helpfull" not in line and not (tmp_path / "w").exists()


def test_init_from_a_missing_path_or_another_model_is_one_line(trained, tmp_path):
    missing = tmp_path / "no_such_run"
    p = run(train_py("--config", "configs/sepmamba_s.py:smoke", "--workdir", str(tmp_path / "w"),
                     f"--config.train.init_from={missing}"))
    assert p.returncode == 2
    [line] = error_lines(p.stderr)
    assert f"train.init_from={missing}: no such file or folder" in line and "data.root" not in line
    assert not (tmp_path / "w").exists()
    c = load_config("configs/sepmamba_s.py:smoke")
    c.train.init_from = str(trained)
    with pytest.raises(InitFromError, match=r"is a 'mamba_tasnet' separation model; this config trains a "
                                            r"'sepmamba' separation model") as e:
        train_and_evaluate(c, tmp_path / "w2")
    assert "\n" not in str(e.value) and not (tmp_path / "w2").exists()


def _mount_namespace() -> list[str] | None:
    """A command prefix giving a private mount namespace (root, or a user namespace), or None."""
    if shutil.which("unshare") is None:
        return None
    for prefix in (["unshare", "--mount"], ["unshare", "--mount", "--map-root-user"]):
        probe = subprocess.run(prefix + ["sh", "-c", "d=$(mktemp -d) && mount -t tmpfs -o ro tmpfs $d"],
                               capture_output=True)
        if probe.returncode == 0:
            return prefix
    return None


@pytest.mark.slow  # ~5 CPU-s (a train.py that gets as far as the workdir); the file-as-workdir case runs by default
def test_read_only_workdir_is_one_line(tmp_path):
    prefix = _mount_namespace()
    if prefix is None:
        pytest.skip("cannot mount a tmpfs here (needs root or unprivileged user namespaces)")
    ro = tmp_path / "ro"
    ro.mkdir()
    cmd = " ".join(f"'{c}'" for c in train_py("--config", "configs/mambatasnet_xs.py:smoke", "--workdir",
                                                  str(ro / "w")))
    script = f"mount -t tmpfs -o ro tmpfs {ro} && {cmd}"
    p = subprocess.run(prefix + ["sh", "-c", script], capture_output=True, text=True, env=env(), cwd=REPO,
                       timeout=600)
    assert p.returncode == 1, p.stderr
    [line] = error_lines(p.stderr)
    assert line == f"error: workdir {ro / 'w'}: Read-only file system", line


@pytest.mark.slow  # ~4 CPU-s; a side fix: the lock file and orbax's empty checkpoints/ no longer stay behind
def test_a_missing_corpus_leaves_no_workdir_behind(tmp_path):
    p = run(train_py("--config", "configs/mambatasnet_xs.py:smoke", "--workdir", str(tmp_path / "w"),
                     f"--config.data.root={tmp_path / 'no_corpus'}"))
    assert p.returncode == 1
    [line] = error_lines(p.stderr)
    assert "missing corpus folder" in line and not (tmp_path / "w").exists()
