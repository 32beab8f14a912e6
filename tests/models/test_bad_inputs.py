"""Every separation model rejects bad waveforms with a clear ValueError (rank, too short, NaN/inf, constant)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from mamba_jax.models import dpmamba, mamba_tasnet, sepmamba, spmamba

MODELS = {
    "mamba_tasnet": lambda: mamba_tasnet.MambaTasNet(mamba_tasnet.MambaTasNetConfig(n_filters=8, n_layer=1),
                                                     rngs=nnx.Rngs(0)),
    "dpmamba": lambda: dpmamba.DPMamba(dpmamba.DPMambaConfig(n_filters=8, n_dp=1, chunk_size=10), rngs=nnx.Rngs(0)),
    "sepmamba": lambda: sepmamba.SepMamba(sepmamba.SepMambaConfig(dim=4, num_blocks=1), rngs=nnx.Rngs(0)),
    "spmamba": lambda: spmamba.SPMamba(spmamba.SPMambaConfig(n_fft=32, hop=8, n_layers=1, emb_dim=4, emb_ks=4,
                                                             attn_n_head=2, attn_approx_qk_dim=16),
                                       rngs=nnx.Rngs(0)),
}
MIN_LEN = {"mamba_tasnet": 16, "dpmamba": 16, "sepmamba": 106, "spmamba": 24}


@pytest.fixture(scope="module", params=sorted(MODELS))
def model_and_name(request):
    return MODELS[request.param](), request.param


def test_min_length_is_accepted_and_shape(model_and_name):
    model, name = model_and_name
    assert model.min_length == MIN_LEN[name]
    x = jax.random.normal(jax.random.key(0), (1, MIN_LEN[name]))
    y = nnx.jit(lambda m, x: m(x))(model, x)  # compiled: the eager value checks are test_errors' part
    assert y.shape == (1, 2, MIN_LEN[name])
    assert bool(jnp.all(jnp.isfinite(y)))


def test_errors(model_and_name):
    model, name = model_and_name
    n = MIN_LEN[name] + 3
    with pytest.raises(ValueError, match=r"shape \[B, T\]"):
        model(jnp.ones((n,)))
    with pytest.raises(ValueError, match=r"shape \[B, T\]"):
        model(jnp.ones((1, 1, n)))
    with pytest.raises(ValueError, match="minimum"):
        model(jnp.ones((1, MIN_LEN[name] - 1)))
    bad = np.random.default_rng(0).standard_normal((2, n)).astype(np.float32)
    bad[1, 3] = np.nan
    with pytest.raises(ValueError, match="NaN or inf"):
        model(jnp.asarray(bad))
    bad[1, 3] = np.inf
    with pytest.raises(ValueError, match="NaN or inf"):
        model(bad)
    with pytest.raises(ValueError, match="floating"):
        model(jnp.ones((1, n), jnp.int32))


def test_spmamba_constant_input():
    with pytest.raises(ValueError, match="constant"):
        MODELS["spmamba"]()(jnp.zeros((1, 64)))


def test_nan_under_jit_with_callback_mode():
    """Under jit the default mode cannot see values; check_finite='callback' raises at run time."""
    cfg = mamba_tasnet.MambaTasNetConfig(n_filters=8, n_layer=1, check_finite="callback")
    model = mamba_tasnet.MambaTasNet(cfg, rngs=nnx.Rngs(0))
    graphdef, state = nnx.split(model)
    fwd = jax.jit(lambda s, x: nnx.merge(graphdef, s)(x))
    assert fwd(state, jnp.ones((1, 40))).shape == (1, 2, 40)
    with pytest.raises(Exception, match="NaN or inf"):
        jax.block_until_ready(fwd(state, jnp.full((1, 40), jnp.nan)))
