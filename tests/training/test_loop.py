"""train_and_evaluate end to end on the tiny synthetic corpus: smoke steps, exact resume, NaN stop."""

from __future__ import annotations

import json
import pathlib

import ml_collections
import numpy as np
import pytest

from mamba_jax.data.synthetic import SyntheticSpec, ensure_corpus
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


def test_resume_continues_exactly(corpus, tmp_path):
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


def test_non_finite_loss_stops_with_the_step(corpus, tmp_path):
    cfg = tiny_config(corpus, num_steps=3, checkpoint_every_steps=1)
    cfg.optim.lr = 1e30
    cfg.optim.clip_norm = 0.0
    with pytest.raises(NonFiniteLossError, match=r"at step \d"):
        train_and_evaluate(cfg, tmp_path)


def test_init_from_fine_tunes_from_checkpoint_weights(corpus, tmp_path):
    import jax

    from mamba_jax.training.checkpoint import load_params

    src = tmp_path / "src"
    train_and_evaluate(tiny_config(corpus, num_steps=2), src)
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
