"""train_and_evaluate end to end on the tiny synthetic corpus: smoke steps, exact resume, NaN stop (without a
device-to-host transfer at ordinary steps), skipped all-below-threshold batches, compile-once evaluation."""

from __future__ import annotations

import json
import os
import pathlib
import re

import ml_collections
import numpy as np
import pytest

from mamba_jax.data.synthetic import SyntheticSpec, ensure_corpus
from mamba_jax.training import tasks
from mamba_jax.training.defaults import base_config
from mamba_jax.training.loop import NonFiniteLossError, train_and_evaluate

TINY = SyntheticSpec(n_train=4, n_valid=2, n_test=2, train_utts=3, eval_utts=2, tr_mixtures=12, cv_mixtures=2,
                     tt_mixtures=2, libri_train_utts=1, libri_eval_utts=1, min_seconds=0.5, max_seconds=1.0)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> pathlib.Path:
    return ensure_corpus(tmp_path_factory.mktemp("loop") / "corpus", progress=False, spec=TINY)


def tiny_config(root: pathlib.Path, **train) -> ml_collections.ConfigDict:
    c = base_config("separation")
    c.model = ml_collections.ConfigDict(dict(name="mamba_tasnet", scan_impl="sequential", n_filters=16, n_layer=1))
    c.data.root = str(root / "wsj0-2mix" / "2speakers")
    c.data.segment_seconds = 0.5
    c.optim.lr = 1e-3
    c.train.update(dict(num_steps=4, batch_size=1, log_every_steps=1, eval_every_steps=2, checkpoint_every_steps=2,
                        eval_batches=1, eval_pad_multiple=800))
    c.train.update(train)
    return c


def losses(workdir: pathlib.Path) -> dict[int, float]:
    rows = [json.loads(x) for x in (workdir / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in rows if "loss" in r}


# ---- global state: what a run installs it restores, whether it returns or raises -----------------------------
def _globals() -> dict:
    import logging
    import signal
    import sys

    return dict(hook=sys.unraisablehook, sigint=signal.getsignal(signal.SIGINT),
                sigterm=signal.getsignal(signal.SIGTERM),
                **{f"{n} filters": list(logging.getLogger(n).filters) for n in ("absl", "asyncio", "orbax")},
                **{f"{n} level": logging.getLogger(n).level for n in ("absl", "asyncio", "orbax")})


@pytest.fixture
def restores_globals():
    """Asserts that the test leaves ``sys.unraisablehook``, the SIGINT/SIGTERM handlers and the filters and
    levels of the loggers the checkpoint code touches as they were. The one process-wide filter
    (``drop_late_write_reports``, installed once after a failed save) is installed first, as a failed run would."""
    from mamba_jax.checkpoint import drop_late_write_reports

    drop_late_write_reports()
    before = _globals()
    yield
    assert _globals() == before


def test_resume_continues_exactly(corpus, tmp_path, restores_globals):
    full = tmp_path / "full"
    out = train_and_evaluate(tiny_config(corpus), full)
    assert np.isfinite(out["val_si_snri"]) and np.isfinite(out["val_sdri"])
    assert sorted(int(p.name) for p in (full / "checkpoints").iterdir() if p.name.isdigit()) == [2, 4]
    part = tmp_path / "part"
    train_and_evaluate(tiny_config(corpus, num_steps=2), part)
    # A record past the checkpoint, as a run killed after step 3 would leave, must be dropped on resume.
    with (part / "metrics.jsonl").open("a") as f:
        f.write(json.dumps({"step": 3, "loss": 123.0}) + "\n")
    train_and_evaluate(tiny_config(corpus), part)
    a, b = losses(full), losses(part)
    assert sorted(a) == sorted(b) == [1, 2, 3, 4]
    assert all(a[s] == b[s] for s in a), (a, b)  # bit-identical on CPU


def test_non_finite_loss_stops_with_the_step(corpus, tmp_path, restores_globals):
    cfg = tiny_config(corpus, num_steps=3, checkpoint_every_steps=1)
    cfg.optim.lr = 1e30
    cfg.optim.clip_norm = 0.0
    with pytest.raises(NonFiniteLossError, match=r"at step \d"):
        train_and_evaluate(cfg, tmp_path)


class _NanAt:
    """grain map on the training batches: the ``at``-th batch's mixture becomes NaN; records, as each batch is
    fetched (the start of a step), how many device-to-host transfers had happened so far."""

    def __init__(self, at: int, transfers: list[int], marks: list[int]):
        self.at, self.transfers, self.marks, self.n = at, transfers, marks, 0

    def __call__(self, batch: dict) -> dict:
        self.n += 1
        self.marks.append(self.transfers[0])
        if self.n == self.at:
            batch = dict(batch, mix=np.full_like(batch["mix"], np.nan))
        return batch


class _NanTask(tasks.SeparationTask):
    def __init__(self, config, corrupt: _NanAt):
        super().__init__(config)
        self.corrupt = corrupt

    def dataset(self, split, **kw):
        ds = super().dataset(split, **kw)
        return ds.map(self.corrupt) if split == "train" else ds


def test_nan_at_a_chosen_step_is_reported_at_the_next_sync_step_without_per_step_transfers(
        corpus, tmp_path, monkeypatch):
    from jax._src import array

    transfers = [0]  # every device-to-host read of a jax.Array (float(), np.asarray, device_get, .item())
    value, to_numpy = array.ArrayImpl._value, array.ArrayImpl.__array__

    def counted_value(self):
        transfers[0] += 1
        return value.fget(self)

    def counted_array(self, *a, **k):
        transfers[0] += 1
        return to_numpy(self, *a, **k)

    monkeypatch.setattr(array.ArrayImpl, "_value", property(counted_value))
    monkeypatch.setattr(array.ArrayImpl, "__array__", counted_array)
    # Sync steps (logging, checkpoint) every 3 steps, no evaluation before step 100; NaN batch at step 5.
    cfg = tiny_config(corpus, num_steps=8, log_every_steps=3, checkpoint_every_steps=3, eval_every_steps=100)
    marks: list[int] = []
    task = _NanTask(cfg, _NanAt(5, transfers, marks))
    with pytest.raises(NonFiniteLossError, match=r"at step 5 .*stopped at step 6\. The last good checkpoint is step 3"):
        train_and_evaluate(cfg, tmp_path, task=task)
    marks.append(transfers[0])
    per_step = {s: marks[s] - marks[s - 1] for s in range(1, len(marks))}  # transfers made during step s
    assert sorted(per_step) == [1, 2, 3, 4, 5, 6]  # stopped after step 6, the first sync step after the NaN
    assert per_step[3] > 0 and per_step[6] > 0  # the counter sees the reads of the sync steps
    assert [per_step[s] for s in (1, 2, 4, 5)] == [0, 0, 0, 0], per_step  # and nothing at the other steps
    assert sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit()) == [3]
    assert sorted(losses(tmp_path)) == [3]


def test_all_below_threshold_batches_skip_the_update_and_are_counted(corpus, tmp_path):
    import jax
    from flax import nnx

    from mamba_jax.checkpoint import load_params
    from mamba_jax.models import build_model

    cfg = tiny_config(corpus, num_steps=2, checkpoint_every_steps=2, eval_every_steps=2)
    cfg.loss.threshold_db = 1e4  # every example's loss is below: no example kept
    train_and_evaluate(cfg, tmp_path)
    rows = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [(r["step"], r["n_kept"], r["skipped_batches"]) for r in rows if "loss" in r] == [(1, 0, 1), (2, 0, 2)]
    _, params, _, _ = load_params(tmp_path)
    fresh = nnx.to_pure_dict(nnx.split(build_model(cfg.model, rngs=nnx.Rngs(params=0, dropout=1)), nnx.Param, ...)[1])
    for x, y in zip(jax.tree.leaves(fresh), jax.tree.leaves(params), strict=True):
        # The initial weights, untouched (an update would move them by ~lr = 1e-3; eager vs jitted init: 1 ulp).
        np.testing.assert_allclose(y, np.asarray(x), rtol=1e-6, atol=1e-7)


def test_evaluation_compiles_once_across_three_evaluations(corpus, tmp_path, monkeypatch):
    import jax

    compiles: list[str] = []
    phase = ["train"]
    jax.monitoring.register_event_duration_secs_listener(
        lambda event, _secs, **kw: compiles.append(phase[0]) if event == "/jax/core/compile/backend_compile_duration"
        else None)
    evaluate = tasks.SeparationTask.evaluate
    calls = [0]

    def counted(self, model, **kw):
        calls[0] += 1
        phase[0] = f"eval{calls[0]}"
        try:
            return evaluate(self, model, **kw)
        finally:
            phase[0] = "train"

    monkeypatch.setattr(tasks.SeparationTask, "evaluate", counted)
    cfg = tiny_config(corpus, num_steps=3, eval_every_steps=1, checkpoint_every_steps=3)
    cfg.model.n_filters = 12  # a model no other test compiled in this process
    train_and_evaluate(cfg, tmp_path)
    assert calls[0] == 3
    assert compiles.count("eval1") >= 1  # the first evaluation compiles the forward (the counter works)
    assert compiles.count("eval2") == compiles.count("eval3") == 0, compiles


def test_init_from_fine_tunes_from_checkpoint_weights(corpus, tmp_path, monkeypatch):
    import jax
    import optax

    from mamba_jax.checkpoint import load_params
    from mamba_jax.training.resume import ConfigMismatchError

    src = tmp_path / "src"
    with monkeypatch.context() as m:  # the source as mamba-jax wrote it before 2026-11-30: moments per array
        m.setattr(optax, "flatten", lambda tx: tx)
        train_and_evaluate(tiny_config(corpus, num_steps=2), src)
    where = re.escape(str(src))
    with pytest.raises(ConfigMismatchError, match=rf"cannot resume {where}: .* another layout .*init_from={where}"):
        train_and_evaluate(tiny_config(corpus, num_steps=3), src)  # resuming that layout: refused, with the way out
    dst = tmp_path / "dst"
    cfg = tiny_config(corpus, num_steps=1, init_from=str(src), checkpoint_every_steps=1, eval_every_steps=1)
    cfg.optim.lr = 0.0  # one step that cannot move the weights: they must be the source's
    train_and_evaluate(cfg, dst)
    _, a, _, _ = load_params(src)
    _, b, _, step = load_params(dst)
    assert step == 1
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(x, y)
    bad = tiny_config(corpus, num_steps=1, init_from=str(src))
    bad.model.n_filters = 24
    with pytest.raises(ValueError, match="shape"):
        train_and_evaluate(bad, tmp_path / "bad")


def test_a_run_whose_save_fails_restores_global_hooks(corpus, tmp_path, monkeypatch, restores_globals):
    import errno

    import orbax.checkpoint as ocp

    from mamba_jax.checkpoint import CheckpointSaveError

    def full_disk(self, step, *a, **k):  # the first save fails as on a full disk (the same run as above)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(ocp.CheckpointManager, "save", full_disk)
    with pytest.raises(CheckpointSaveError, match="step 2 .*No space left on device.*Free some space"):
        train_and_evaluate(tiny_config(corpus), tmp_path)
