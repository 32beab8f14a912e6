"""The linear-recurrence primitive (kernels/selective_scan/linrec.py): values in interpret mode against a float64
numpy loop, forward and reverse, and its private-API Triton lowering (one tt.scan, the reverse flag set)."""

from __future__ import annotations

import importlib.util
import os
import sys

import jax
import numpy as np
import pytest
from jax.experimental import pallas as pl

from mamba_jax_kernels.selective_scan.linrec import linear_recurrence

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _kernel(a_ref, b_ref, p_ref, h_ref, *, axis, reverse):
    p, h = linear_recurrence(a_ref[...], b_ref[...], axis=axis, reverse=reverse)
    p_ref[...] = p
    h_ref[...] = h


def _call(a, b, axis, reverse, interpret=True):
    import functools

    s = jax.ShapeDtypeStruct(a.shape, a.dtype)
    return pl.pallas_call(functools.partial(_kernel, axis=axis, reverse=reverse), out_shape=[s, s],
                          interpret=interpret)(a, b)


def _numpy(a, b, axis, reverse):
    a, b = np.moveaxis(np.float64(a), axis, 0), np.moveaxis(np.float64(b), axis, 0)
    order = range(len(a) - 1, -1, -1) if reverse else range(len(a))
    h, p = np.zeros_like(a[0]), np.ones_like(a[0])
    hs, ps = np.empty_like(a), np.empty_like(a)
    for t in order:
        h, p = a[t] * h + b[t], p * a[t]
        hs[t], ps[t] = h, p
    return np.moveaxis(ps, 0, axis), np.moveaxis(hs, 0, axis)


@pytest.mark.parametrize("axis", [0, 1])
@pytest.mark.parametrize("reverse", [False, True])
def test_matches_float64_loop_in_interpret_mode(axis, reverse):
    rng = np.random.default_rng(axis + 2 * reverse)
    a = rng.uniform(0.3, 1.1, (8, 4, 16)).astype(np.float32)
    b = rng.standard_normal((8, 4, 16)).astype(np.float32)
    p, h = _call(a, b, axis, reverse)
    want_p, want_h = _numpy(a, b, axis, reverse)
    np.testing.assert_allclose(p, want_p, rtol=2e-6, atol=1e-6)
    np.testing.assert_allclose(h, want_h, rtol=2e-6, atol=1e-6)


def test_triton_lowering_is_one_tt_scan_with_the_reverse_flag():
    """Private jax API (jax/_src/pallas/triton/lowering.py) written against jax 0.11.2: recheck on upgrade."""
    assert jax.__version__ == "0.11.2", "linrec.py's Triton rule is pinned to jax 0.11.2; recheck it and this pin"
    spec = importlib.util.spec_from_file_location("kernel_report", os.path.join(REPO, "bench", "kernel_report.py"))
    kr = importlib.util.module_from_spec(spec)
    sys.modules["kernel_report"] = kr
    spec.loader.exec_module(kr)
    a = jax.ShapeDtypeStruct((8, 4, 16), np.float32)
    for reverse in (False, True):
        (k,) = kr.capture(lambda a, b, r=reverse: _call(a, b, 0, r, interpret=False), a, a)
        assert k.ttir.count('"tt.scan"') + k.ttir.count("tt.scan ") >= 1, k.ttir
        scan_line = next(line for line in k.ttir.splitlines() if "tt.scan" in line and "return" not in line)
        assert ("reverse = true" in scan_line) == reverse, scan_line
        assert "axis = 0" in scan_line, scan_line
