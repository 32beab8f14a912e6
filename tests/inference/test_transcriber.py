"""Transcriber: checkpoint + tokenizer -> text, equal to decode_batch on independently computed features."""

from __future__ import annotations

import dataclasses
import functools
import warnings

import jax
import jax.numpy as jnp
import librosa
import numpy as np
import pytest
from flax import nnx
from inference_helpers import save_smoke_checkpoint, speechlike, transcripts

from configs.conmamba_ctc_large import get_config as ctc_config
from mamba_jax.checkpoint import load_model
from mamba_jax.decoding import beam_search_config_from, decode_batch
from mamba_jax.inference.transcriber import Transcriber
from mamba_jax.layers.fbank import fbank, fbank_config_from
from mamba_jax.tokenizer import Tokenizer, train_tokenizer

RATE = 16000


def _wave(seconds: float, seed: int, rate: int = RATE) -> np.ndarray:
    return speechlike(seconds, seed, rate)


@pytest.fixture(scope="module")
def s2s(asr_checkpoint):
    return asr_checkpoint


@functools.lru_cache(maxsize=4)
def _loaded(model_dir: str):
    model, _ = load_model(model_dir)
    model.eval()
    return model


# fbank compiled once per batch shape (eagerly, each of its ops would compile on its own for every new length).
_fbank = jax.jit(fbank, static_argnums=1)


def _reference(config, model_dir, waves: list[np.ndarray], method: str, beam_size: int | None = None):
    """Independent path: fbank of the zero-padded batch, normalised in float64 NumPy with the saved statistics,
    then decode_batch and the tokenizer."""
    model = _loaded(str(model_dir))
    fcfg = fbank_config_from(config.features)
    t = max(w.size for w in waves)
    batch = np.stack([np.pad(w, (0, t - w.size)) for w in waves])
    feats = np.asarray(_fbank(batch, fcfg), np.float64)
    frames = np.array([1 + w.size // fcfg.hop_length for w in waves])
    mean = np.asarray(model.normalizer.glob_mean[...], np.float64)
    std = np.asarray(model.normalizer.glob_std[...], np.float64)
    norm = ((feats - mean) / std).astype(np.float32)
    search = beam_search_config_from(config.decoding, config.tokenizer)
    if beam_size is not None:
        search = dataclasses.replace(search, beam_size=beam_size)
    ids = decode_batch(model, jnp.asarray(norm), jnp.asarray(frames), search, method=method)
    tok = Tokenizer(str(model_dir / "tokenizer" / "tokenizer.model"))
    return norm, [tok.decode(i) for i in ids], ids


def test_transcribe_equals_decode_batch(s2s):
    d, config, _ = s2s
    asr = Transcriber.from_checkpoint(d)
    assert asr.default_method == "joint" and asr.sample_rate == RATE
    wave = _wave(1.2, seed=0)
    norm, _, _ = _reference(config, d, [wave], "ctc_greedy")
    feats, frames = asr.features(wave[None], np.array([wave.size]))
    np.testing.assert_allclose(np.asarray(feats), norm, atol=2e-4)
    assert int(frames[0]) == 1 + wave.size // 160
    for method, beam in (("ctc_greedy", None), ("ctc_beam", 3), ("joint", None)):
        _, ref, ids = _reference(config, d, [wave], method, beam)
        got = asr.transcribe(wave, RATE, method=method, beam_size=beam)
        assert isinstance(got, str)
        assert got == ref[0], method
    assert len(_reference(config, d, [wave], "ctc_greedy")[2][0]) > 0  # the random model emits tokens: the comparison is not of empty strings
    assert asr.transcribe(wave, RATE) == _reference(config, d, [wave], "joint")[1][0]  # config default


def test_resampling_notice_and_result(s2s):
    d, _, _ = s2s
    asr = Transcriber.from_checkpoint(d)
    wave44 = _wave(1.2, seed=2, rate=44100)
    with pytest.warns(UserWarning, match="44100 Hz -> 16000 Hz"):
        got = asr.transcribe(wave44, 44100, method="ctc_greedy")
    wave16 = librosa.resample(wave44, orig_sr=44100, target_sr=16000, res_type="soxr_hq")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no notice at the model's own rate
        assert got == asr.transcribe(wave16, RATE, method="ctc_greedy")


def test_batch_log_probs_equal_single_calls(s2s):
    """Issue 16: a bucketed batch of three lengths gives each utterance the CTC log-probabilities and the text
    of its own unpadded call (independent path: unpadded fbank, NumPy normalisation, the model's encoder)."""
    d, config, _ = s2s
    asr = Transcriber.from_checkpoint(d)
    waves = [_wave(0.55, seed=5), _wave(1.3, seed=6), _wave(0.8, seed=7)]
    got = asr.log_probs(waves, RATE)
    model = _loaded(str(d))

    @nnx.jit
    def ctc(m, x, n):  # the model's own encoder and CTC head, compiled once per length
        enc, enc_len = m.encode(x, n)
        return m.ctc_logprobs(enc), enc_len

    for w, g in zip(waves, got):
        norm, _, _ = _reference(config, d, [w], "ctc_greedy")
        logprobs, enc_len = ctc(model, jnp.asarray(norm), jnp.asarray([norm.shape[1]]))
        ref = np.asarray(logprobs)[0]
        assert g.shape == ref.shape and int(enc_len[0]) == ref.shape[0]
        np.testing.assert_allclose(g, ref, atol=1e-4, rtol=1e-4)
    texts = asr.transcribe_batch(waves, RATE, method="ctc_greedy")
    assert texts == [_reference(config, d, [w], "ctc_greedy")[1][0] for w in waves]
    padded = np.stack([np.pad(w, (0, waves[1].size - w.size)) for w in waves])
    assert asr.transcribe_batch(padded, RATE, lengths=[w.size for w in waves], method="ctc_greedy") == texts


@pytest.mark.slow  # builds a second model (~10 s CPU of eager init)
def test_ctc_only_model(tmp_path):
    config = ctc_config("smoke")
    save_smoke_checkpoint(tmp_path, config, seed=5, tokenizer_kind="char")
    asr = Transcriber.from_checkpoint(tmp_path)
    assert asr.default_method == "ctc_beam"
    wave = _wave(0.6, seed=0)
    assert asr.transcribe(wave, RATE) == _reference(config, tmp_path, [wave], "ctc_beam")[1][0]
    with pytest.raises(ValueError, match="CTC-only"):
        asr.transcribe(wave, RATE, method="joint")


def test_bad_inputs(s2s, tmp_path):
    d, config, model = s2s
    asr = Transcriber(model, config, d / "tokenizer" / "tokenizer.model")
    with pytest.raises(ValueError, match="method must be one of"):
        asr.transcribe(_wave(0.5, 0), RATE, method="greedy")
    with pytest.raises(ValueError, match="empty waveform"):
        asr.transcribe(np.zeros(0, np.float32), RATE)
    with pytest.raises(ValueError, match="NaN"):
        asr.transcribe(np.full(1000, np.nan, np.float32), RATE)
    with pytest.raises(FileNotFoundError, match="no tokenizer"):
        import shutil

        shutil.copytree(d / "checkpoints", tmp_path / "checkpoints")
        Transcriber.from_checkpoint(tmp_path)
    small = train_tokenizer(transcripts(), str(tmp_path / "tok20"), kind="unigram", vocab_size=35)
    with pytest.raises(ValueError, match="has 35 pieces but model.vocab_size=40"):
        Transcriber(model, config, small)
