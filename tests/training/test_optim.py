"""Learning-rate schedules against the recipes' formulas, the plateau rule against torch's ReduceLROnPlateau
semantics, and the scheduled rate driving the optax update."""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
import optax
import pytest

from mamba_jax.training.defaults import base_config
from mamba_jax.training.optim import learning_rate, learning_rate_schedule, make_optimizer, observe_validation


def opt(**kw):
    c = base_config("separation").optim
    for k, v in kw.items():
        c[k] = v
    return c


def test_noam_matches_speechbrain_formula():
    s = learning_rate_schedule(opt(schedule="noam", lr=8e-4, warmup_steps=3750), total_steps=10**6)
    for n in (1, 100, 3749, 3750, 3751, 50000):  # lr for update n = peak * sqrt(w) * min(n^-.5, n w^-1.5)
        assert float(s(n - 1)) == pytest.approx(8e-4 * 3750 ** 0.5 * min(n ** -0.5, n * 3750 ** -1.5), rel=1e-5)
    assert float(s(3749)) == pytest.approx(8e-4, rel=1e-5)


def test_warmup_cosine_endpoints():
    s = learning_rate_schedule(opt(schedule="warmup_cosine", lr=1.5e-4, warmup_steps=100, min_lr_ratio=0.01),
                               total_steps=1100)
    assert float(s(0)) == pytest.approx(1.5e-6, rel=1e-5)
    assert float(s(99)) == pytest.approx(1.5e-4, rel=1e-5)
    assert float(s(599)) == pytest.approx(1.5e-4 * (0.01 + 0.99 * 0.5), rel=1e-5)  # half-way through the cosine
    assert float(s(1099)) == pytest.approx(1.5e-6, rel=1e-5)
    assert float(s(5000)) == pytest.approx(1.5e-6, rel=1e-5)  # past the end: the floor


def _torch_plateau(losses, patience, factor, threshold=1e-4):
    """torch.optim.lr_scheduler.ReduceLROnPlateau (mode min, threshold_mode rel, no cooldown), written out."""
    best, bad, scale, out = math.inf, 0, 1.0, []
    for v in losses:
        if v < best * (1 - threshold):
            best, bad = v, 0
        else:
            bad += 1
        if bad > patience:
            scale, bad = scale * factor, 0
        out.append(scale)
    return out


def test_plateau_follows_torch_and_lives_in_the_optimizer_state():
    o = opt(schedule="plateau", lr=1e-3, plateau_patience=2, plateau_factor=0.5)
    tx = make_optimizer(o, total_steps=10)
    params = {"w": jnp.ones(3)}
    state = tx.init(params)
    losses = [1.0, 0.9, 0.95, 0.95, 0.99, 0.8, 0.80001, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9]
    got = []
    for v in losses:
        state = observe_validation(o, state, v)
        _, state = tx.update({"w": jnp.ones(3)}, state, params)  # a training step between evaluations
        got.append(float(learning_rate(state)) / 1e-3)
    np.testing.assert_allclose(got, _torch_plateau(losses, 2, 0.5), rtol=1e-5)
    assert got[-1] == pytest.approx(0.125)  # the test can fail: three reductions happened


@pytest.mark.parametrize("name", ["adam", "adamw"])
def test_scheduled_lr_drives_the_update(name):
    o = opt(name=name, lr=0.1, clip_norm=0.0, weight_decay=0.0, schedule="warmup_cosine", warmup_steps=2)
    tx = make_optimizer(o, total_steps=100)
    params = {"w": jnp.ones(3)}
    state = tx.init(params)
    grads = {"w": jnp.array([1.0, -2.0, 3.0])}
    for n in range(3):
        upd, state = tx.update(grads, state, params)
        # Adam with a constant gradient: m/sqrt(v) = sign(g) at every step (bias-corrected), so -lr_n sign(g).
        frac = max(n + 1 - 2, 0) / 98  # linear warm-up over 2 updates, then the cosine over the other 98
        lr = 0.1 * min(1.0, (n + 1) / 2) * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * frac)))
        np.testing.assert_allclose(upd["w"], -lr * np.sign(grads["w"]), rtol=1e-4)
        assert float(learning_rate(state)) == pytest.approx(lr, rel=1e-5)


def test_clipping_and_accumulation():
    tx = make_optimizer(opt(lr=1.0, clip_norm=5.0, grad_accum=2), total_steps=10)
    params = {"w": jnp.zeros(2)}
    state = tx.init(params)
    upd1, state = tx.update({"w": jnp.array([30.0, 40.0])}, state, params)
    np.testing.assert_array_equal(upd1["w"], 0.0)  # first micro-step: no update yet
    upd2, state = tx.update({"w": jnp.array([30.0, 40.0])}, state, params)
    assert float(optax.tree.norm(upd2)) > 0
    assert math.isfinite(float(optax.tree.norm(upd2)))


def test_schedule_counts_updates_not_micro_steps():
    """With grad_accum k the schedule advances once per update (every k-th micro-step), as SpeechBrain steps its
    Noam scheduler only when the optimiser steps: update u gets the formula's lr at u."""
    k, w, peak = 4, 2, 0.1
    tx = make_optimizer(opt(name="adam", lr=peak, clip_norm=0.0, weight_decay=0.0, schedule="noam", warmup_steps=w,
                            grad_accum=k), total_steps=100)
    params = {"w": jnp.ones(3)}
    state = tx.init(params)
    grads = {"w": jnp.array([1.0, -2.0, 3.0])}
    for u in range(1, 4):
        for micro in range(k):
            upd, state = tx.update(grads, state, params)
            if micro < k - 1:
                np.testing.assert_array_equal(upd["w"], 0.0)
        # Adam with a constant gradient: m/sqrt(v) = sign(g) (bias-corrected), so the update is -lr_u sign(g).
        lr = peak * w ** 0.5 * min(u ** -0.5, u * w ** -1.5)
        np.testing.assert_allclose(upd["w"], -lr * np.sign(grads["w"]), rtol=1e-4)
        assert float(learning_rate(state)) == pytest.approx(lr, rel=1e-5)
