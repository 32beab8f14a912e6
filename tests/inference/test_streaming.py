"""Streaming causal SepMamba: chunked output == the offline causal model on the whole signal, any chunk size."""

from __future__ import annotations

import pathlib

import jax
import numpy as np
import pytest
from flax import nnx

from mamba_jax.config import load_config
from mamba_jax.inference import Separator
from mamba_jax.models import build_model
from mamba_jax.models.sepmamba import causal_lookahead

CONFIGS = pathlib.Path(__file__).resolve().parents[2] / "configs"


@pytest.fixture(scope="module")
def causal():
    config = load_config(f"{CONFIGS / 'sepmamba_causal_s.py'}:smoke")
    model = build_model(config.model, rngs=nnx.Rngs(3))
    offline = jax.jit(lambda x: model(x))  # the reference: one offline call on the whole signal
    return Separator(model, config), lambda x: np.asarray(offline(x[None]))[0]


def _stream(sep, x, sizes):
    """Feeds ``x`` in chunks of the given sizes (cycled), then flushes; returns the concatenated output."""
    stream, outs, i, k = sep.stream(), [], 0, 0
    while i < x.size:
        n = sizes[k % len(sizes)]
        outs.append(stream.process(x[i:i + n]))
        i, k = i + n, k + 1
    outs.append(stream.flush())
    assert all(o.shape[0] == sep.num_sources for o in outs)
    return np.concatenate(outs, axis=1)


@pytest.fixture(scope="module")
def signal(causal):
    """0.15 s at 8 kHz, its unpadded offline output, and ``Separator.separate`` with the default settings
    (0.5 s buckets: the signal is padded to 4000 samples and run with its length)."""
    sep, offline = causal
    x = np.random.default_rng(0).standard_normal(1203).astype(np.float32) * 0.3
    default = Separator(sep.model, sep.config)
    assert default.padded_length(x.size) == 4000
    return x, offline(x), default.separate(x, 8000)


def test_default_separator_equals_offline(signal):
    _, want, default = signal
    np.testing.assert_allclose(default, want, atol=1e-5, rtol=0)  # the causal tail too (issue 16)


@pytest.mark.parametrize("chunk", [1, 37, 97, 160, 5000])  # 1 sample, odd sizes, and more than the whole input
def test_stream_equals_offline(causal, signal, chunk):
    sep, _ = causal
    x, want, default = signal
    got = _stream(sep, x, [chunk])
    assert got.shape == want.shape == default.shape == (2, 1203)
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
    np.testing.assert_allclose(got, default, atol=1e-5, rtol=0)


@pytest.mark.parametrize("length", [106, 115])  # the minimum, and a tail of 1 sample past a whole group
def test_stream_irregular_chunks_short_signals(causal, length):
    sep, offline = causal
    rng = np.random.default_rng(length)
    x = rng.standard_normal(length).astype(np.float32)
    sizes = [int(v) for v in rng.integers(0, 13, 40)]  # empty chunks included
    np.testing.assert_allclose(_stream(sep, x, sizes), offline(x), atol=1e-5, rtol=0)


def test_stream_latency_is_the_lookahead(causal):
    """Output sample t is returned as soon as input sample 8 (t // 8) + 105 has arrived, not later."""
    sep, _ = causal
    la = causal_lookahead(sep.model.cfg)
    stream = sep.stream()
    x = np.random.default_rng(1).standard_normal(300).astype(np.float32)
    emitted = 0
    for n in range(1, x.size + 1):
        emitted += stream.process(x[n - 1:n]).shape[1]
        # samples t with 8 (t // 8) + la <= n - 1, i.e. whole groups of 8 whose first sample's look-ahead arrived
        want = 8 * max(0, (n - 1 - la) // 8 + 1)
        assert emitted == want, (n, emitted, want)
    assert stream.lookahead_samples == la == 105


def test_stream_errors(causal):
    sep, _ = causal
    stream = sep.stream()
    with pytest.raises(ValueError, match="mono"):
        stream.process(np.zeros((2, 10), np.float32))
    with pytest.raises(ValueError, match="NaN"):
        stream.process(np.array([0.0, np.nan], np.float32))
    stream.process(np.zeros(50, np.float32))
    with pytest.raises(ValueError, match="50 samples.*at least 106"):
        stream.flush()
    stream = sep.stream()
    stream.process(np.zeros(203, np.float32))
    stream.flush()
    with pytest.raises(RuntimeError, match="after flush"):
        stream.process(np.zeros(8, np.float32))


def test_stream_needs_causal_model():
    config = load_config(f"{CONFIGS / 'sepmamba_s.py'}:smoke")
    abstract = nnx.eval_shape(lambda: build_model(config.model, rngs=nnx.Rngs(0)))  # no weights needed
    sep = Separator(abstract, config)
    with pytest.raises(ValueError, match="causal SepMamba.*non-causal"):
        sep.stream()
