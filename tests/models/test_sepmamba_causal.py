"""Causal SepMamba: exact zero gradient beyond the documented look-ahead, non-zero at the boundary."""

from __future__ import annotations

import jax
import numpy as np
from flax import nnx

from mamba_jax.models import sepmamba as sm


def test_causal_lookahead_is_exact():
    cfg = sm.SepMambaConfig(dim=8, num_blocks=1, causal=True, scan_impl="sequential")
    model = sm.SepMamba(cfg, rngs=nnx.Rngs(0))
    t = 251
    x = jax.random.normal(jax.random.key(0), (1, t))
    graphdef, state = nnx.split(model)

    @jax.jit
    def jac(x):  # d out[0, :, t_out].sum(sources) / d x[t_in]  -> [T_out, T_in]
        return jax.jacrev(lambda x: nnx.merge(graphdef, state)(x)[0].sum(0))(x)[:, 0, :]

    nz = np.abs(np.asarray(jac(x))) > 0
    la = sm.causal_lookahead(cfg)
    assert la == 105
    t_out, t_in = np.meshgrid(np.arange(t), np.arange(t), indexing="ij")
    assert not np.any(nz & (t_in > t_out + la)), "gradient from beyond the look-ahead"
    valid = sm.valid_length(cfg, t)
    boundary = [s for s in range(0, valid, 8) if s + la < t]
    attained = [bool(nz[s, s + la]) for s in boundary]
    # ReLUs can switch a path off at some positions; the bound must be reached, and at most positions
    assert boundary and any(attained) and np.mean(attained) > 0.8, "look-ahead bound not attained"
    assert max(int(np.nonzero(nz[s])[0].max()) - s for s in range(t) if nz[s].any()) == la
    # and the model does look ahead: some output depends on a later input
    assert np.any(nz & (t_in > t_out))


def test_lengths():
    cfg = sm.PRESETS["s"]
    assert sm.min_length(cfg) == 106
    for t in (106, 107, 1000, 1001):
        assert sm.valid_length(cfg, t) in (t, t - 1)
