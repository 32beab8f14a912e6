"""Mamba / BiMamba-v2 mixers and stacks against a float64 numpy model of mamba_ssm's forward pass."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from mamba_jax.layers.blocks import MambaStack
from mamba_jax.layers.mamba import BiMambaV2, Mamba, MambaConfig
from tests.scan_reference import numpy_scan


def n_params(module) -> int:
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(nnx.state(module, nnx.Param)))


def p(module, name):
    return np.asarray(getattr(module, name)[...], np.float64)


def np_inner(x, z, conv, x_proj, dt_proj, a_log, d_skip, rank, n):
    """silu(causal conv) -> x_proj -> dt_proj -> the float64 scan with z gating (tests/scan_reference.py)."""
    b, l, e = x.shape
    w = np.asarray(conv.weight[...], np.float64)  # [K, E]
    k = w.shape[0]
    xp = np.concatenate([np.zeros((b, k - 1, e)), x], axis=1)
    xc = sum(w[i] * xp[:, i:i + l] for i in range(k)) + np.asarray(conv.bias[...], np.float64)
    xc = xc / (1 + np.exp(-xc))
    dbl = xc @ np.asarray(x_proj.kernel[...], np.float64)
    dt = dbl[..., :rank] @ np.asarray(dt_proj.kernel[...], np.float64)
    bs, cs = dbl[..., rank:rank + n], dbl[..., rank + n:]
    a = -np.exp(np.asarray(a_log[...], np.float64))
    return numpy_scan(xc, dt, a, bs, cs, D=d_skip[...], z=z, delta_bias=dt_proj.bias[...], softplus=True)[0]


def np_mixer(m, x, bidirectional):
    cfg = m.cfg
    xz = x @ np.asarray(m.in_proj.kernel[...], np.float64)
    xi, z = xz[..., :cfg.d_inner], xz[..., cfg.d_inner:]
    y = np_inner(xi, z, m.conv1d, m.x_proj, m.dt_proj, m.A_log, m.D, cfg.rank, cfg.d_state)
    if bidirectional:
        yb = np_inner(xi[:, ::-1], z[:, ::-1], m.conv1d_b, m.x_proj_b, m.dt_proj_b, m.A_b_log, m.D_b, cfg.rank,
                      cfg.d_state)[:, ::-1]
        y = 0.5 * y + 0.5 * yb
    return y @ np.asarray(m.out_proj.kernel[...], np.float64)


@pytest.mark.parametrize("cls", [Mamba, BiMambaV2])
def test_mixer_matches_numpy_model(cls):
    cfg = MambaConfig(d_model=24)
    m = cls(cfg, rngs=nnx.Rngs(0), scan_impl="sequential")
    x = jax.random.normal(jax.random.key(1), (2, 19, 24))
    ref = np_mixer(m, np.asarray(x, np.float64), cls is BiMambaV2)
    got = np.asarray(m(x), np.float64)
    assert np.max(np.abs(got - ref)) / np.max(np.abs(ref)) < 1e-5


@pytest.mark.parametrize("d", [24, 128, 144, 256, 512])
def test_parameter_counts(d):
    r = math.ceil(d / 16)
    di = 2 * d
    formula = 2 * d * di + 5 * di + di * (r + 32) + r * di + di + 16 * di + di + di * d  # docs/mamba.md
    cfg = MambaConfig(d_model=d)
    abstract = nnx.eval_shape(lambda: Mamba(cfg, rngs=nnx.Rngs(0)))
    assert n_params(abstract) == formula
    v2 = nnx.eval_shape(lambda: BiMambaV2(cfg, rngs=nnx.Rngs(0)))
    assert n_params(v2) == 6 * d * d + 8 * d * r + 220 * d  # docs/mamba.md


def test_initialisation_follows_mamba_ssm():
    cfg = MambaConfig(d_model=64)
    m = Mamba(cfg, n_layer=4, rngs=nnx.Rngs(0))
    np.testing.assert_allclose(p(m, "A_log"), np.log(np.tile(np.arange(1, 17), (128, 1))), rtol=1e-6)
    np.testing.assert_array_equal(p(m, "D"), 1.0)
    dt = np.log1p(np.exp(np.asarray(m.dt_proj.bias[...], np.float64)))
    assert dt.min() >= 1e-3 * 0.999 and dt.max() <= 0.1 * 1.001
    assert np.log(dt).std() > 0.5  # log-uniform over two decades, not a constant
    assert np.abs(np.asarray(m.dt_proj.kernel[...])).max() <= cfg.rank ** -0.5
    out_bound = 1 / math.sqrt(128) / math.sqrt(4)
    w = np.abs(np.asarray(m.out_proj.kernel[...]))
    assert w.max() <= out_bound and w.max() > 0.9 * out_bound


@pytest.mark.parametrize("cls", [Mamba, MambaStack])
def test_causality_exact_zero_gradient(cls):
    cfg = MambaConfig(d_model=16)
    m = Mamba(cfg, rngs=nnx.Rngs(0)) if cls is Mamba else MambaStack(cfg, 2, norm="layer", rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(0), (1, 12, 16))
    w = jax.random.normal(jax.random.key(1), (16,))  # a projection: a sum over a LayerNorm output is constant
    jac = jax.jit(jax.jacrev(lambda v: m(v)[0] @ w))(x)[:, 0]  # [T_out, T_in, D]
    mag = np.abs(np.asarray(jac)).sum(-1)
    future = np.triu(np.ones((12, 12), bool), k=1)  # s > t
    assert np.all(mag[future] == 0.0)
    assert np.all(mag[~future] > 0.0)


def test_step_and_chunked_calls_equal_full_call():
    cfg = MambaConfig(d_model=16)
    stack = MambaStack(cfg, 3, norm="rms", rngs=nnx.Rngs(2))
    x = jax.random.normal(jax.random.key(3), (2, 23, 16))
    full = jax.jit(lambda v: stack(v))(x)
    step = jax.jit(lambda xt, st: stack.step(xt, st))
    chunk = jax.jit(lambda v, st: stack.call_with_state(v, st))
    states, ys = stack.init_state(2), []
    for t in range(x.shape[1]):
        y, states = step(x[:, t], states)
        ys.append(y)
    np.testing.assert_allclose(jnp.stack(ys, 1), full, atol=1e-5, rtol=1e-5)
    states, pieces, start = stack.init_state(2), [], 0
    for size in (1, 7, 2, 13):
        y, states = chunk(x[:, start:start + size], states)
        pieces.append(y)
        start += size
    np.testing.assert_allclose(jnp.concatenate(pieces, 1), full, atol=1e-5, rtol=1e-5)


def test_bidirectional_mixer_refuses_streaming():
    m = BiMambaV2(MambaConfig(d_model=8), rngs=nnx.Rngs(0))
    assert not any(hasattr(m, name) for name in ("init_state", "call_with_state", "step"))
    stack = MambaStack(MambaConfig(d_model=8), 1, mixer="bimamba_v2", rngs=nnx.Rngs(0))
    with pytest.raises(TypeError, match="bidirectional"):
        stack.init_state(1)


def test_reverse_padded_reverses_within_each_length():
    from mamba_jax.ops.padding import reverse_padded

    x = np.arange(4 * 6 * 2).reshape(4, 6, 2)
    lengths = np.array([6, 3, 1, 0])
    got = np.asarray(reverse_padded(jnp.asarray(x), jnp.asarray(lengths)))
    for b, n in enumerate(lengths):
        np.testing.assert_array_equal(got[b, :n], x[b, :n][::-1])
        np.testing.assert_array_equal(got[b, n:], x[b, n:])
    on_last = np.asarray(reverse_padded(jnp.asarray(x.transpose(0, 2, 1)), jnp.asarray(lengths), axis=-1))
    np.testing.assert_array_equal(on_last, got.transpose(0, 2, 1))
    np.testing.assert_array_equal(reverse_padded(jnp.asarray(x), None), x[:, ::-1])


_LENGTH_MODULES = {
    "mamba": lambda cfg: Mamba(cfg, rngs=nnx.Rngs(0)),
    "bimamba_v2": lambda cfg: BiMambaV2(cfg, rngs=nnx.Rngs(0)),
    "stack_v2": lambda cfg: MambaStack(cfg, 2, mixer="bimamba_v2", norm="layer", rngs=nnx.Rngs(0)),
}


@pytest.mark.parametrize("kind", sorted(_LENGTH_MODULES))
def test_lengths_make_right_padding_inert(kind):
    """Each row of a right-padded batch (padding of any content) equals the unpadded call on its valid part;
    padded outputs are zero."""
    cfg = MambaConfig(d_model=8)
    m = _LENGTH_MODULES[kind](cfg)
    lengths = [13, 5, 1]
    rows = [jax.random.normal(jax.random.key(10 + i), (1, n, 8)) for i, n in enumerate(lengths)]
    junk = 3.0 * jax.random.normal(jax.random.key(9), (3, 13, 8))
    valid = np.arange(13)[None, :, None] < np.asarray(lengths)[:, None, None]
    x = jnp.where(valid, jnp.concatenate([jnp.pad(r, ((0, 0), (0, 13 - r.shape[1]), (0, 0))) for r in rows]), junk)
    got = np.asarray(jax.jit(lambda v, n: m(v, n))(x, jnp.asarray(lengths, jnp.int32)))
    plain_call = jax.jit(lambda v: m(v))
    for b, (row, n) in enumerate(zip(rows, lengths, strict=True)):
        ref = np.asarray(plain_call(row))[0]
        assert np.max(np.abs(got[b, :n] - ref)) <= 1e-5 * np.max(np.abs(ref)), (kind, n)
        assert np.all(got[b, n:] == 0.0)
    # Without lengths the padding leaks into the valid part of a bidirectional module (the test can fail).
    if kind != "mamba":
        plain = np.asarray(plain_call(x))
        assert np.max(np.abs(plain[1, :5] - np.asarray(plain_call(rows[1]))[0])) > 1e-3
