"""selective_scan's pure-JAX paths against an independent float64 numpy recurrence."""

from __future__ import annotations

import itertools
import re
import zlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from mamba_jax.ops.selective_scan import selective_scan
from tests.scan_reference import numpy_scan

IMPLS = ("sequential", "associative")


def make_inputs(seed, b, l, e, n, groups=None, dtype=jnp.float32):
    ks = jax.random.split(jax.random.key(seed), 9)
    bc_shape = (b, l, n) if groups is None else (b, l, groups, n)
    return dict(
        u=jax.random.normal(ks[0], (b, l, e), dtype),
        delta=(0.5 * jax.random.normal(ks[1], (b, l, e))).astype(dtype),
        A=-jnp.exp(0.5 * jax.random.normal(ks[2], (e, n))).astype(dtype),
        B=jax.random.normal(ks[3], bc_shape, dtype),
        C=jax.random.normal(ks[4], bc_shape, dtype),
        D=jax.random.normal(ks[5], (e,), dtype),
        z=jax.random.normal(ks[6], (b, l, e), dtype),
        delta_bias=(0.3 * jax.random.normal(ks[7], (e,))).astype(dtype),
        initial_state=jax.random.normal(ks[8], (b, e, n), dtype),
    )


# (b, l, e, n, groups): L = 1, L not a multiple of any chunk, E = 72, N in {1, 16}, grouped B/C.
SHAPES = [(1, 1, 8, 16, None), (2, 37, 72, 16, None), (1, 133, 16, 1, None), (2, 50, 72, 16, 3), (1, 19, 24, 4, 2)]
OPTIONS = [
    dict(),
    dict(z=True),
    dict(D=True, delta_bias=True, softplus=True),
    dict(z=True, D=True, delta_bias=True, softplus=True, initial_state=True),
]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("opts", OPTIONS, ids=lambda o: "-".join(sorted(o)) or "plain")
def test_matches_float64_recurrence(impl, shape, opts):
    b, l, e, n, g = shape
    x = make_inputs(zlib.crc32(repr((shape, sorted(opts))).encode()) % 1000, b, l, e, n, g)  # same in every process
    kw = {k: x[k] for k in ("D", "z", "delta_bias", "initial_state") if opts.get(k)}
    y, h = selective_scan(x["u"], x["delta"], x["A"], x["B"], x["C"], delta_softplus=opts.get("softplus", False),
                          return_last_state=True, impl=impl, chunk_size=16, **kw)
    y_ref, h_ref = numpy_scan(x["u"], x["delta"], x["A"], x["B"], x["C"], D=kw.get("D"), z=kw.get("z"),
                              delta_bias=kw.get("delta_bias"), softplus=opts.get("softplus", False),
                              initial_state=kw.get("initial_state"))
    assert y.dtype == jnp.float32 and h.dtype == jnp.float32
    assert y.shape == (b, l, e) and h.shape == (b, e, n)
    for got, ref in ((y, y_ref), (h, h_ref)):
        rel = np.max(np.abs(np.asarray(got, np.float64) - ref)) / np.max(np.abs(ref))
        assert rel < 1e-5, rel


def test_implementations_agree_with_each_other():
    x = make_inputs(3, 2, 300, 32, 16)
    kw = dict(D=x["D"], z=x["z"], delta_bias=x["delta_bias"], delta_softplus=True, return_last_state=True)
    outs = [selective_scan(x["u"], x["delta"], x["A"], x["B"], x["C"], impl=impl, chunk_size=c, **kw)
            for impl, c in itertools.product(IMPLS, (7, 64, 1000))]
    for y, h in outs[1:]:
        np.testing.assert_allclose(y, outs[0][0], rtol=2e-5, atol=2e-5)
        np.testing.assert_allclose(h, outs[0][1], rtol=2e-5, atol=2e-5)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("groups", [None, 2])
def test_gradients_of_every_input_float64(impl, groups):
    """Reverse-mode gradients of all inputs (initial state included) against float64 finite differences, over two
    batch rows (the gradients of A, D and delta_bias sum over them)."""
    with jax.enable_x64(True):
        x = make_inputs(7, 2, 11, 4, 3, groups, dtype=jnp.float64)  # batch 2: dA sums over rows
        names = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias", "initial_state")

        def f(*args):
            kw = dict(zip(names, args))
            y, h = selective_scan(kw.pop("u"), kw.pop("delta"), kw.pop("A"), kw.pop("B"), kw.pop("C"),
                                  delta_softplus=True, return_last_state=True, impl=impl, chunk_size=4, **kw)
            return jnp.sum(jnp.sin(y)) + jnp.sum(jnp.cos(h))  # a cotangent on both outputs

        check_grads(jax.jit(f), tuple(x[k] for k in names), order=1, modes=["rev"], atol=1e-6, rtol=1e-6)


def test_bf16_inputs_accumulate_in_fp32():
    x = make_inputs(5, 1, 64, 16, 16)
    args = [x[k].astype(jnp.bfloat16) for k in ("u", "delta")] + [x["A"]] + [x[k].astype(jnp.bfloat16)
                                                                         for k in ("B", "C")]
    y, h = selective_scan(*args, D=x["D"], return_last_state=True, impl="sequential")
    assert y.dtype == jnp.bfloat16 and h.dtype == jnp.float32
    y_ref, h_ref = numpy_scan(*[np.asarray(a, np.float64) for a in args], D=x["D"])
    np.testing.assert_allclose(np.asarray(h, np.float64), h_ref, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(np.asarray(y, np.float64), y_ref, rtol=2e-2, atol=2e-2)  # bf16 output rounding


def test_sequential_memory_has_no_full_state_tensor():
    """The backward pass of 'sequential' keeps chunk-boundary states, never a [B, L, E, N] buffer."""
    b, l, e, n = 1, 4096, 64, 16
    x = make_inputs(0, b, l, e, n)

    def loss(u):
        return jnp.sum(selective_scan(u, x["delta"], x["A"], x["B"], x["C"], impl="sequential", chunk_size=64))

    hlo = jax.jit(jax.grad(loss)).lower(x["u"]).compile().as_text()
    sizes = [int(np.prod([int(d) for d in dims.split(",")])) for dims in re.findall(r"f32\[([\d,]+)\]", hlo)]
    # Inputs are [B, L, E] (1/N of the full tensor); boundary states [L/64, B, E, N] and one chunk's residuals
    # are 1/64 of it. Without rematerialisation the stacked per-chunk residuals would be the full size.
    assert max(sizes) <= b * l * e * n // 8, max(sizes)


def test_bad_shapes_raise():
    x = make_inputs(0, 1, 8, 4, 2)
    with pytest.raises(ValueError, match="A must be"):
        selective_scan(x["u"], x["delta"], x["A"][:3], x["B"], x["C"])
    with pytest.raises(ValueError, match="impl"):
        selective_scan(x["u"], x["delta"], x["A"], x["B"], x["C"], impl="cuda")
    with pytest.raises(ValueError, match="G dividing"):
        selective_scan(x["u"], x["delta"], x["A"], x["B"][:, :, None].repeat(3, 2), x["C"][:, :, None].repeat(3, 2))
