"""ConMamba with lengths: right padding never changes a valid output (inert_padding, the default), against
unpadded single calls; the original's padding-dependent encoder (inert_padding=False) is kept and differs."""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from mamba_jax.models.conmamba import ConMambaASR, ConMambaConfig

# odd and even lengths (the CNN's reflect padding reads frame L-2 when L is odd); the last row is unpadded
LENGTHS = (37, 22, 40)


@pytest.fixture(scope="module")
def model() -> ConMambaASR:
    cfg = ConMambaConfig(d_model=32, num_encoder_layers=1, num_decoder_layers=1, num_heads=2, d_ffn=32,
                         vocab_size=12, decoder="transformer", conv_kernel_size=7, max_len=64, scan_impl="sequential")
    m = ConMambaASR(cfg, rngs=nnx.Rngs(0))
    m.eval()
    return m


def _batch() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    feats = rng.standard_normal((len(LENGTHS), 40, 80)).astype(np.float32)
    for b, n in enumerate(LENGTHS):
        feats[b, n:] = 3.0 + rng.standard_normal((40 - n, 80))  # padding of garbage
    return feats, np.array(LENGTHS, np.int32)


def _frames(n: int) -> int:
    return -(-(-(-n // 2)) // 2)  # ceil(ceil(n/2)/2)


def test_padded_batch_equals_unpadded_calls(model):
    assert model.cfg.inert_padding  # the default
    feats, lengths = _batch()
    tokens = jnp.array([[1, 5, 7, 3]] * len(LENGTHS))
    call = nnx.jit(lambda m, *a: m(*a))
    out = call(model, jnp.asarray(feats), jnp.asarray(lengths), tokens)
    for b, n in enumerate(LENGTHS):
        ref = call(model, jnp.asarray(feats[b:b + 1, :n]), jnp.asarray([n]), tokens[:1])
        k = int(ref["enc_lengths"][0])
        assert k == int(out["enc_lengths"][b]) == _frames(n)
        np.testing.assert_allclose(out["ctc_logprobs"][b, :k], ref["ctc_logprobs"][0], atol=1e-5, rtol=1e-5)
        np.testing.assert_allclose(out["attn_logprobs"][b], ref["attn_logprobs"][0], atol=1e-5, rtol=1e-5)
    # the original's computation (inert_padding=False): padded rows depend on the padding, the unpadded row not
    original = model.cfg
    try:
        model.cfg = dataclasses.replace(original, inert_padding=False)
        orig = call(model, jnp.asarray(feats), jnp.asarray(lengths))["ctc_logprobs"]
    finally:
        model.cfg = original
    np.testing.assert_allclose(orig[2], out["ctc_logprobs"][2], atol=1e-5)
    k = _frames(LENGTHS[0])
    assert np.max(np.abs(np.asarray(orig[0, :k]) - np.asarray(out["ctc_logprobs"][0, :k]))) > 1e-2
