"""Torch-layout convs, separation norms, STFT and the MT reset, against float64 NumPy / librosa references."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import librosa
import numpy as np
import pytest
from flax import nnx

from mamba_jax.layers.sep_norm import ChannelFreqLayerNorm, GroupNorm1, PReLU
from mamba_jax.layers.stft import istft, stft
from mamba_jax.layers.torch_conv import Conv1d, Conv2d, ConvTranspose1d, ConvTranspose2d
from mamba_jax.models import dpmamba as dp
from mamba_jax.models import mamba_tasnet as mt
from mamba_jax.models.tasnet import mt_reset


def _np(x):
    return np.asarray(x, np.float64)


def _conv_t1d_ref(x, w, b, s, p):
    """torch ConvTranspose1d by its definition: y[j*s + k - p, o] += x[j, i] w[i, o, k]."""
    l, _ = x.shape
    _, c_out, k = w.shape
    full = np.zeros(((l - 1) * s + k, c_out))
    for j in range(l):
        for kk in range(k):
            full[j * s + kk] += x[j] @ w[:, :, kk]
    out = full[p: full.shape[0] - p]
    return out + (0 if b is None else b)


@pytest.mark.parametrize("k,s,p", [(16, 8, 0), (16, 2, 0), (8, 1, 0), (3, 1, 1), (5, 3, 2)])
def test_conv_transpose1d(k, s, p):
    m = ConvTranspose1d(5, 3, k, stride=s, padding=p, rngs=nnx.Rngs(0))
    x = np.random.default_rng(0).standard_normal((2, 7, 5)).astype(np.float32)
    y = _np(m(jnp.asarray(x)))
    for bi in range(2):
        ref = _conv_t1d_ref(_np(x[bi]), _np(m.weight[...]), _np(m.bias[...]), s, p)
        np.testing.assert_allclose(y[bi], ref, rtol=1e-5, atol=1e-5)
    # torch default init bound uses fan_in = out_channels * k for a transposed conv
    assert float(jnp.max(jnp.abs(m.weight[...]))) <= 1 / np.sqrt(3 * k)


def test_conv1d_and_2d():
    rng = np.random.default_rng(1)
    c1 = Conv1d(3, 4, 16, stride=2, rngs=nnx.Rngs(0))
    x = rng.standard_normal((1, 40, 3)).astype(np.float32)
    w, b = _np(c1.weight[...]), _np(c1.bias[...])
    ref = np.stack([np.einsum("ki,oik->o", _np(x[0, 2 * t: 2 * t + 16]), w) + b for t in range(13)])
    np.testing.assert_allclose(_np(c1(jnp.asarray(x)))[0], ref, rtol=1e-5, atol=1e-5)

    c2 = Conv2d(2, 3, 3, padding=1, rngs=nnx.Rngs(0))
    d2 = ConvTranspose2d(3, 2, 3, padding=1, rngs=nnx.Rngs(1))
    x2 = rng.standard_normal((1, 5, 6, 2)).astype(np.float32)
    xp = np.pad(_np(x2[0]), ((1, 1), (1, 1), (0, 0)))
    w2 = _np(c2.weight[...])
    ref2 = np.zeros((5, 6, 3))
    for h in range(5):
        for v in range(6):
            ref2[h, v] = np.einsum("abi,oiab->o", xp[h: h + 3, v: v + 3], w2) + _np(c2.bias[...])
    np.testing.assert_allclose(_np(c2(jnp.asarray(x2)))[0], ref2, rtol=1e-5, atol=1e-5)
    # stride-1 transposed conv with padding p == conv with the flipped, in/out-swapped kernel
    wt = _np(d2.weight[...])  # [in, out, 3, 3]
    y = _np(d2(jnp.asarray(ref2[None].astype(np.float32))))[0]
    rp = np.pad(ref2, ((1, 1), (1, 1), (0, 0)))
    ref3 = np.zeros((5, 6, 2))
    for h in range(5):
        for v in range(6):
            ref3[h, v] = np.einsum("abi,ioab->o", rp[h: h + 3, v: v + 3], wt[:, :, ::-1, ::-1]) + _np(d2.bias[...])
    np.testing.assert_allclose(y, ref3, rtol=1e-4, atol=1e-4)


def test_norms_and_prelu():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 4, 5, 3)).astype(np.float32) * 3 + 1
    g = GroupNorm1(3, eps=1e-8)
    xd = _np(x)
    mu = xd.mean((1, 2, 3), keepdims=True)
    ref = (xd - mu) / np.sqrt(((xd - mu) ** 2).mean((1, 2, 3), keepdims=True) + 1e-8)
    np.testing.assert_allclose(_np(g(jnp.asarray(x))), ref, rtol=1e-5, atol=1e-5)
    cf = ChannelFreqLayerNorm(3, 5, eps=1e-5)
    cf.gamma[...] = jnp.asarray(rng.standard_normal((3, 5)), jnp.float32)
    mu = xd.mean((2, 3), keepdims=True)
    ref = (xd - mu) / np.sqrt(((xd - mu) ** 2).mean((2, 3), keepdims=True) + 1e-5) * _np(cf.gamma[...]).T
    np.testing.assert_allclose(_np(cf(jnp.asarray(x))), ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(_np(PReLU()(jnp.array([-2.0, 3.0]))), [-0.5, 3.0])


@pytest.mark.parametrize("n_fft,hop,t", [(256, 64, 1001), (512, 128, 900), (64, 16, 301)])
def test_stft_matches_librosa(n_fft, hop, t):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, t)).astype(np.float32)
    spec = np.asarray(stft(jnp.asarray(x), n_fft, hop))
    ref = np.stack([librosa.stft(v, n_fft=n_fft, hop_length=hop, window="hann", center=True,
                                 pad_mode="reflect").T for v in x])
    np.testing.assert_allclose(spec, ref, atol=2e-4 * np.abs(ref).max())
    # iSTFT of an arbitrary (inconsistent) spectrum, including imaginary DC/Nyquist parts, as librosa
    noisy = ref + rng.standard_normal(ref.shape) + 1j * rng.standard_normal(ref.shape)
    y = np.asarray(istft(jnp.asarray(noisy.astype(np.complex64)), n_fft, hop, t))
    yref = np.stack([librosa.istft(s.T, hop_length=hop, window="hann", center=True, length=t) for s in noisy])
    np.testing.assert_allclose(y, yref, atol=1e-4 * np.abs(yref).max())
    np.testing.assert_allclose(np.asarray(istft(jnp.asarray(spec), n_fft, hop, t)), x, atol=1e-4)


def test_stft_istft_with_lengths_match_librosa_on_unpadded_rows():
    """Right-padded rows with lengths: frames of row b equal librosa's on its unpadded samples (reflected at its
    own end), and the iSTFT of those frames equals librosa's with ``length = n``, zero after."""
    n_fft, hop, t = 64, 16, 301
    rng = np.random.default_rng(4)
    lengths = [301, 150, 71]
    x = rng.standard_normal((3, t)).astype(np.float32)  # the padding holds noise: it must not matter
    spec = np.asarray(stft(jnp.asarray(x), n_fft, hop, jnp.asarray(lengths)))
    noisy = spec + rng.standard_normal(spec.shape) + 1j * rng.standard_normal(spec.shape)
    y = np.asarray(istft(jnp.asarray(noisy.astype(np.complex64)), n_fft, hop, t, jnp.asarray(lengths)))
    for b, n in enumerate(lengths):
        ref = librosa.stft(x[b, :n], n_fft=n_fft, hop_length=hop, window="hann", center=True, pad_mode="reflect").T
        assert ref.shape[0] == 1 + n // hop
        np.testing.assert_allclose(spec[b, :ref.shape[0]], ref, atol=2e-4 * np.abs(ref).max())
        yref = librosa.istft(noisy[b, :ref.shape[0]].T, hop_length=hop, window="hann", center=True, length=n)
        np.testing.assert_allclose(y[b, :n], yref, atol=1e-4 * np.abs(yref).max())
        assert not y[b, n:].any()


def test_group_norm_mask_equals_unpadded_statistics():
    gn = GroupNorm1(4)
    gn.weight[...] = jnp.asarray([1.0, 2.0, 0.5, -1.0])
    x = np.random.default_rng(5).standard_normal((2, 9, 4)).astype(np.float32)
    mask = np.arange(9)[None, :] < np.array([[9], [5]])
    got = np.asarray(gn(jnp.asarray(x), jnp.asarray(mask)))
    np.testing.assert_allclose(got[1, :5], np.asarray(gn(jnp.asarray(x[1:, :5])))[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got[0], np.asarray(gn(jnp.asarray(x[:1])))[0], rtol=1e-5, atol=1e-6)


def test_segment_overlap_add_matches_speechbrain_layout():
    def seg_ref(x, k):  # x [N, L] (torch layout) -> [N, K, S], gap
        n, l = x.shape
        p = k // 2
        gap = k - (p + l % k) % k
        x = np.concatenate([np.zeros((n, p)), x, np.zeros((n, gap + p))], 1)
        a, b = x[:, :-p].reshape(n, -1, k), x[:, p:].reshape(n, -1, k)
        return np.concatenate([a, b], 2).reshape(n, -1, k).transpose(0, 2, 1), gap

    for length in (1, 5, 7, 10, 23):
        x = np.random.default_rng(length).standard_normal((3, length))
        ref, gap = seg_ref(x, 6)
        y, gap2 = dp.segment(jnp.asarray(x.T)[None], 6)
        assert gap2 == gap
        np.testing.assert_allclose(np.asarray(y[0]).transpose(2, 1, 0), ref, atol=1e-6)
        np.testing.assert_allclose(np.asarray(dp.overlap_add(y, gap2)[0]).T, 2 * x, atol=1e-5)


def test_mt_reset_changes_dt_bias_and_out_proj_only():
    cfg = mt.MambaTasNetConfig(n_filters=32, n_layer=4)
    model = mt.MambaTasNet(cfg, rngs=nnx.Rngs(0))
    mixer = model.masknet.mamba_net.layers[0].mixer
    a_log = np.asarray(mixer.A_log[...])
    dt = jax.nn.softplus(mixer.dt_proj.bias[...])
    assert float(dt.min()) >= 1e-4 - 1e-7 and float(dt.max()) <= 0.1 + 1e-6
    assert float(jnp.abs(mixer.out_proj.kernel[...]).max()) <= 1 / np.sqrt(64) / 2 + 1e-7
    mt_reset(model, nnx.Rngs(1))
    for sfx in ("", "_b"):
        bias = getattr(mixer, f"dt_proj{sfx}").bias[...]  # torch Linear default: U(+-1/sqrt(dt_rank = 2))
        assert float(jnp.abs(bias).max()) <= 1 / np.sqrt(2)
        assert float(jax.nn.softplus(bias).min()) > 0.3  # the constructor's dt never exceeds 0.1
    assert float(jnp.abs(mixer.out_proj.kernel[...]).max()) > 1 / np.sqrt(64) / 2
    np.testing.assert_array_equal(np.asarray(mixer.A_log[...]), a_log)
