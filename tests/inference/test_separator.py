"""Separator: plain call == model, length buckets share one compilation, overlap-add join vs a float64 reference,
permutation alignment on signals with known swaps, resampling, checkpoints, error messages."""

from __future__ import annotations

import itertools
import pathlib

import jax
import librosa
import numpy as np
import pytest
from flax import nnx

from mamba_jax.config import load_config
from mamba_jax.inference import Separator, align_permutation
from mamba_jax.inference.separator import apply_model, crossfade, join_window, window_starts
from mamba_jax.models import build_model

CONFIGS = pathlib.Path(__file__).resolve().parents[2] / "configs"
RATE = 8000


@pytest.fixture(scope="module")
def setup():
    # The causal smoke SepMamba, as in test_streaming.py: one set of eagerly compiled init ops for both files.
    config = load_config(f"{CONFIGS / 'sepmamba_causal_s.py'}:smoke")
    model = build_model(config.model, rngs=nnx.Rngs(7))
    call = jax.jit(lambda x: model(x))
    return model, config, lambda x: np.asarray(call(np.asarray(x, np.float32)[None]))[0]  # [T] -> [S, T]


def _noise(n, seed=0):
    return (0.3 * np.random.default_rng(seed).standard_normal(n)).astype(np.float32)


# ---- alignment and join on numpy signals ----------------------------------------------------------------------
@pytest.mark.parametrize("s", [2, 3, 4])
def test_align_permutation_recovers_every_known_permutation(s):
    rng = np.random.default_rng(s)
    ref = rng.standard_normal((s, 400))
    for perm in itertools.permutations(range(s)):
        gains = rng.uniform(0.1, 10.0, s)[:, None]  # scale must not matter (normalised correlation)
        est = (ref + 0.3 * rng.standard_normal(ref.shape))[list(perm)] * gains  # est[i] ~ ref[perm[i]]
        p = align_permutation(ref, est)  # est[p[k]] ~ ref[k]
        assert [perm[i] for i in p] == list(range(s)), (perm, p)


def test_align_permutation_silence_is_identity():
    np.testing.assert_array_equal(align_permutation(np.zeros((3, 50)), np.zeros((3, 50))), [0, 1, 2])


def test_join_window_undoes_swapped_windows():
    """Windows of known sources, each with its own permutation: the join restores the sources exactly."""
    rng = np.random.default_rng(0)
    truth = rng.standard_normal((3, 2300)).astype(np.float32)
    chunk, hop = 800, 600
    starts = window_starts(truth.shape[1], chunk, hop)
    assert starts == [0, 600, 1200, 1500]
    perms = [(0, 1, 2), (2, 0, 1), (1, 0, 2), (0, 2, 1)]
    out, prev = np.zeros_like(truth), None
    for s, perm in zip(starts, perms, strict=True):
        join_window(out, truth[list(perm), s:s + chunk], s, prev)
        prev = s + chunk
    # the first window fixes the order: sources come out as truth[perms[0]] = truth
    np.testing.assert_allclose(out, truth, atol=1e-6)


def test_crossfade_is_complementary_and_smooth():
    r = crossfade(200)
    np.testing.assert_allclose(r[::-1], 1.0 - r, atol=1e-6)  # fade-out of the previous window mirrors the fade-in
    assert np.all(np.diff(r) > 0) and 0 < r[0] < 1e-3 and r[-1] > 1 - 1e-3


# ---- with a real model ------------------------------------------------------------------------------------------
def test_short_input_equals_plain_call(setup):
    model, config, plain = setup
    x = _noise(700)
    exact = Separator(model, config, chunk_seconds=0.1, hop_seconds=0.075, bucket_seconds=None)
    np.testing.assert_allclose(exact.separate(x, RATE), plain(x), atol=1e-6, rtol=0)
    bucketed = Separator(model, config, chunk_seconds=0.1, hop_seconds=0.075, bucket_seconds=0.1)
    assert bucketed.padded_length(700) == 800
    # the padding up to the bucket is inert: even the causal model's last look-ahead samples are exact
    np.testing.assert_allclose(bucketed.separate(x, RATE), plain(x), atol=1e-6, rtol=0)
    whole = bucketed.with_chunking(None)
    assert whole.chunk is None and bucketed.chunk == 800
    np.testing.assert_allclose(whole.separate(_noise(2300, 2), RATE), plain(_noise(2300, 2)), atol=1e-5, rtol=0)


def test_lengths_in_one_bucket_share_one_compilation(setup):
    model, config, _ = setup
    sep = Separator(model, config, bucket_seconds=0.05)  # buckets of 400 samples
    n0 = apply_model._cache_size()  # shared by all Separators: count what these calls add
    assert sep.separate(_noise(1250), RATE).shape == (2, 1250)
    n1 = apply_model._cache_size()
    assert sep.separate(_noise(1590, 1), RATE).shape == (2, 1590)  # same bucket (1600): no new compilation
    assert n1 == n0 + 1 and apply_model._cache_size() == n1


def _reference_overlap_add(windows, starts, length, chunk):
    """float64 join written from the spec: brute-force permutation by summed normalised correlation on the overlap,
    then out = (1 - r) prev + r new with r = sin^2(pi/2 (i + 1/2) / overlap)."""
    out = np.zeros((windows[0].shape[0], length))
    end = None
    for s, w in zip(starts, windows, strict=True):
        w = w.astype(np.float64)
        if end is None:
            out[:, :chunk] = w
        else:
            ov = end - s
            a = out[:, s:end]

            def score(p, a=a, b=w[:, :ov]):
                return sum(np.dot(a[i], b[j]) / (np.linalg.norm(a[i]) * np.linalg.norm(b[j]))
                           for i, j in enumerate(p))

            w = w[list(max(itertools.permutations(range(w.shape[0])), key=score))]
            r = np.sin(0.5 * np.pi * (np.arange(ov) + 0.5) / ov) ** 2
            out[:, s:end] = (1 - r) * a + r * w[:, :ov]
            out[:, end:s + chunk] = w[:, ov:]
        end = s + chunk
    return out


def test_overlap_add_long_input_matches_reference(setup):
    model, config, plain = setup
    chunk, hop, n = 800, 600, 2300
    x = _noise(n, 3)
    sep = Separator(model, config, chunk_seconds=chunk / RATE, hop_seconds=hop / RATE, batch_size=4)
    got = sep.separate(x, RATE)
    starts = [0, 600, 1200, 1500]
    want = _reference_overlap_add([plain(x[s:s + chunk]) for s in starts], starts, n, chunk)
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)


def test_separate_batch_rows_and_lengths(setup):
    model, config, _ = setup
    sep = Separator(model, config, chunk_seconds=0.1, hop_seconds=0.075, bucket_seconds=0.1)
    short, long = _noise(700, 4), _noise(2300, 5)
    batch = np.stack([np.pad(short, (0, 1600)), long])
    got = sep.separate_batch(batch, lengths=[700, 2300])
    assert got.shape == (2, 2, 2300)
    np.testing.assert_allclose(got[0, :, :700], sep.separate(short, RATE), atol=1e-6, rtol=0)
    assert not got[0, :, 700:].any()  # zero beyond the row's length
    np.testing.assert_allclose(got[1], sep.separate(long, RATE), atol=1e-6, rtol=0)


def test_resampling_path(setup):
    model, config, plain = setup
    sep = Separator(model, config, bucket_seconds=None)
    x16 = _noise(1399, 6)  # 700 samples at 8 kHz
    with pytest.warns(UserWarning, match="16000 Hz resampled to the model's 8000 Hz"):
        got = sep.separate(x16, 16000)
    assert got.shape == (2, 1399) and got.dtype == np.float32
    x8 = librosa.resample(x16, orig_sr=16000, target_sr=8000, res_type="soxr_hq")
    back = librosa.resample(plain(x8), orig_sr=8000, target_sr=16000, res_type="soxr_hq", axis=-1)
    want = librosa.util.fix_length(back, size=1399, axis=-1)
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)


def test_from_checkpoint_matches_from_model(setup, tmp_path):
    from mamba_jax.checkpoint import save_params

    model, config, plain = setup
    _, params, rest = nnx.split(model, nnx.Param, ...)
    save_params(tmp_path, nnx.to_pure_dict(params), nnx.to_pure_dict(rest), config)
    sep = Separator.from_checkpoint(tmp_path, scan_impl="sequential", bucket_seconds=None)
    assert (sep.sample_rate, sep.num_sources) == (8000, 2)
    x = _noise(700, 8)
    np.testing.assert_allclose(sep.separate(x, RATE), plain(x), atol=1e-6, rtol=0)


def test_errors(setup):
    model, config, _ = setup
    sep = Separator(model, config)
    with pytest.raises(ValueError, match="cannot tell channels from time"):
        sep.separate(np.zeros((20, 800), np.float32), RATE)
    with pytest.raises(ValueError, match="empty"):
        sep.separate(np.zeros(0, np.float32), RATE)
    with pytest.raises(ValueError, match="NaN or infinite"):
        sep.separate(np.array([0.0, np.inf] * 100, np.float32), RATE)
    with pytest.raises(ValueError, match="float samples.*int16/int32 PCM"):
        sep.separate(np.zeros(800, np.uint8), RATE)
    with pytest.raises(ValueError, match="lengths must hold 1 values in \\[1, 800\\]"):
        sep.separate_batch(np.zeros((1, 800), np.float32), lengths=[900])
    with pytest.raises(ValueError, match="windows overlap"):
        Separator(model, config, chunk_seconds=1.0, hop_seconds=1.0)
    with pytest.raises(ValueError, match="minimum input of 106"):
        Separator(model, config, chunk_seconds=0.01)
    asr = load_config(f"{CONFIGS / 'conmamba_small.py'}:smoke")
    with pytest.raises(ValueError, match="task 'asr'.*use Transcriber"):
        Separator(None, asr)


def test_default_window_is_the_models():
    """Without a choice from the caller, SPMamba separates its 4 s training crops one per device call (its
    frame attention grows with the square of the window: 20 s x 4 needed ~25 GB on CPU); the other models 20 s
    windows, 4 per call. The caller's window, batch or None (whole signals) wins."""
    def abstract(name: str):
        config = load_config(str(CONFIGS / name))
        return nnx.eval_shape(lambda: build_model(config.model, rngs=nnx.Rngs(0))), config  # no weights needed

    spm, spm_config = abstract("spmamba.py")
    sep = Separator(spm, spm_config)
    assert (sep.chunk, sep.hop, sep.batch_size) == (4 * RATE, int(3.2 * RATE), 1)
    sepm, sepm_config = abstract("sepmamba_s.py")
    sep = Separator(sepm, sepm_config)
    assert (sep.chunk, sep.hop, sep.batch_size) == (20 * RATE, 16 * RATE, 4)
    sep = Separator(spm, spm_config, chunk_seconds=10.0, batch_size=2)
    assert (sep.chunk, sep.batch_size) == (10 * RATE, 2)
    assert Separator(spm, spm_config, chunk_seconds=None).chunk is None
    with pytest.raises(ValueError, match="chunk_seconds must be a number of seconds, None or 'model'"):
        Separator(spm, spm_config, chunk_seconds="auto")
