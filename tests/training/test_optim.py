"""Learning-rate schedules against the recipes' formulas, and the optimiser's lr injection."""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
import optax
import pytest

from mamba_jax.training.defaults import base_config
from mamba_jax.training.optim import LrSchedule, make_optimizer, set_learning_rate


def opt(**kw):
    c = base_config("separation").optim
    for k, v in kw.items():
        c[k] = v
    return c


def test_noam_matches_speechbrain_formula():
    o = opt(schedule="noam", lr=8e-4, warmup_steps=3750)
    s = LrSchedule(o, total_steps=10**6)
    for n in (1, 100, 3749, 3750, 3751, 50000):  # lr for update n = peak * sqrt(w) * min(n^-.5, n w^-1.5)
        assert s.lr(n - 1) == pytest.approx(8e-4 * 3750 ** 0.5 * min(n ** -0.5, n * 3750 ** -1.5))
    assert s.lr(3749) == pytest.approx(8e-4)


def test_warmup_cosine_endpoints():
    o = opt(schedule="warmup_cosine", lr=1.5e-4, warmup_steps=100, min_lr_ratio=0.01)
    s = LrSchedule(o, total_steps=1100)
    assert s.lr(0) == pytest.approx(1.5e-6)
    assert s.lr(99) == pytest.approx(1.5e-4)
    assert s.lr(599) == pytest.approx(1.5e-4 * (0.01 + 0.99 * 0.5))  # half-way through the cosine
    assert s.lr(1099) == pytest.approx(1.5e-6)


def test_plateau_halves_after_patience_and_round_trips():
    s = LrSchedule(opt(schedule="plateau", lr=1e-3, plateau_patience=2, plateau_factor=0.5), total_steps=10)
    for v in (1.0, 0.9, 0.95, 0.95):  # two evaluations without improvement: not yet
        s.observe(v)
    assert s.lr(0) == pytest.approx(1e-3)
    s.observe(0.99)  # the third: halve
    assert s.lr(0) == pytest.approx(5e-4)
    t = LrSchedule(s.opt, total_steps=10)
    t.load_state_dict(s.state_dict())
    assert (t.scale, t.best, t.bad_evals) == (s.scale, s.best, s.bad_evals)


@pytest.mark.parametrize("name", ["adam", "adamw"])
def test_injected_lr_drives_the_update(name):
    tx = make_optimizer(opt(name=name, lr=1.0, clip_norm=0.0, weight_decay=0.0))
    params = {"w": jnp.ones(3)}
    state = tx.init(params)
    grads = {"w": jnp.array([1.0, -2.0, 3.0])}
    for lr in (0.1, 0.01):
        upd, _ = tx.update(grads, set_learning_rate(state, jnp.float32(lr)), params)
        # First Adam step: m/sqrt(v) = sign(g) (bias-corrected), so the update is -lr * sign(g).
        np.testing.assert_allclose(upd["w"], -lr * np.sign(grads["w"]), rtol=1e-4)


def test_clipping_and_accumulation():
    tx = make_optimizer(opt(lr=1.0, clip_norm=5.0, grad_accum=2))
    params = {"w": jnp.zeros(2)}
    state = set_learning_rate(tx.init(params), jnp.float32(1.0))
    upd1, state = tx.update({"w": jnp.array([30.0, 40.0])}, state, params)
    np.testing.assert_array_equal(upd1["w"], 0.0)  # first micro-step: no update yet
    upd2, state = tx.update({"w": jnp.array([30.0, 40.0])}, state, params)
    assert float(optax.tree.norm(upd2)) > 0
    assert math.isfinite(float(optax.tree.norm(upd2)))
