"""Fbank vs an independent numpy reproduction of SpeechBrain's Fbank (docs/conmamba.md), on speech-like audio."""

from __future__ import annotations

import numpy as np
import pytest

from mamba_jax.layers.fbank import FbankConfig, fbank, num_frames


def vowel_like(seconds: float = 2.0, sr: int = 16000, seed: int = 0) -> np.ndarray:
    """Glottal-pulse-like harmonics (f0 with vibrato) through formant resonances, syllable envelope, noise,
    and a silent gap, so the top_db floor is active."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    f0 = 120 + 15 * np.sin(2 * np.pi * 3 * t)
    phase = 2 * np.pi * np.cumsum(f0) / sr
    formants = [(700, 130), (1220, 70), (2600, 160), (3300, 250)]
    sig = np.zeros_like(t)
    for h in range(1, 60):
        fh = h * f0
        amp = (1.0 / h) * sum(1.0 / (1.0 + ((fh - f) / bw) ** 2) for f, bw in formants)
        sig += np.where(fh < sr / 2, amp, 0.0) * np.sin(h * phase)
    env = 0.5 * (1 - np.cos(2 * np.pi * 2.5 * t)) ** 1.5
    sig = sig * env + 0.01 * rng.standard_normal(len(t))
    sig[int(0.45 * sr):int(0.7 * sr)] = 1e-4 * rng.standard_normal(int(0.7 * sr) - int(0.45 * sr))
    return (0.3 * sig / np.abs(sig).max()).astype(np.float32)


def numpy_sb_fbank(wav: np.ndarray, n_fft: int, win: int, hop: int = 160, n_mels: int = 80, sr: int = 16000):
    """float64 reference written from docs/conmamba.md: torch.stft(center, constant pad, periodic hamming centred in
    n_fft) -> |X|^2 -> SB triangles -> 10 log10(max(., 1e-10)) -> clamp at max - 80."""
    x = np.concatenate([np.zeros(n_fft // 2), wav.astype(np.float64), np.zeros(n_fft // 2)])
    n_frames = 1 + len(wav) // hop
    window = np.zeros(n_fft)
    off = (n_fft - win) // 2
    window[off:off + win] = np.hamming(win + 1)[:-1]  # periodic Hamming
    spec = np.empty((n_frames, n_fft // 2 + 1))
    for i in range(n_frames):
        spec[i] = np.abs(np.fft.rfft(x[i * hop:i * hop + n_fft] * window)) ** 2
    mel_pts = np.linspace(0.0, 2595 * np.log10(1 + (sr / 2) / 700), n_mels + 2)
    hz = 700 * (10 ** (mel_pts / 2595) - 1)
    freqs = np.linspace(0, sr // 2, n_fft // 2 + 1)
    fb = np.zeros((n_fft // 2 + 1, n_mels))
    for m in range(n_mels):
        left, centre = hz[m], hz[m + 1]
        half = centre - left
        for k, f in enumerate(freqs):
            fb[k, m] = max(0.0, 1.0 - abs(f - centre) / half)
    db = 10 * np.log10(np.maximum(spec @ fb, 1e-10))
    return np.maximum(db, db.max() - 80.0)


@pytest.mark.parametrize("n_fft,win_ms", [(400, 25.0), (512, 32.0), (512, 25.0)])
def test_fbank_matches_numpy_speechbrain(n_fft, win_ms):
    wav = vowel_like()
    cfg = FbankConfig(n_fft=n_fft, win_length_ms=win_ms)
    ours = np.asarray(fbank(wav[None], cfg))[0]
    ref = numpy_sb_fbank(wav, n_fft, cfg.win_length)
    assert ours.shape == ref.shape == (num_frames(len(wav), cfg), 80)
    diff = np.abs(ours - ref)
    assert diff.mean() < 0.01, diff.mean()
    assert ref.max() - ref.min() == pytest.approx(80.0, abs=1e-3)  # the top_db floor is exercised


def test_fbank_batch_is_per_utterance():
    a, b = vowel_like(1.0, seed=1), 0.1 * vowel_like(1.0, seed=2)
    out = np.asarray(fbank(np.stack([a, b])))
    np.testing.assert_allclose(out[0], np.asarray(fbank(a[None]))[0], atol=1e-4)
    np.testing.assert_allclose(out[1], np.asarray(fbank(b[None]))[0], atol=1e-4)


def test_fbank_lengths_make_padding_inert():
    """With lengths, each row's valid frames equal the unpadded call's, whatever the padding holds; a loud end
    (a frame past the true end still overlaps it) would move the top_db floor of the padded row otherwise."""
    cfg = FbankConfig(n_fft=512, win_length_ms=25.0)
    a = vowel_like(0.8, seed=3)
    b = 0.05 * vowel_like(1.0, seed=4)
    b[-40:] = 0.9 * np.sign(np.sin(np.arange(40)))  # a loud click in the last 40 samples
    n = [a.size, b.size - 7]  # b's length is not a multiple of the hop
    batch = np.full((2, 20000), 0.5, np.float32)  # padding of garbage, not zeros
    batch[0, :n[0]], batch[1, :n[1]] = a, b[:n[1]]
    out = np.asarray(fbank(batch, cfg, np.array(n)))
    for row, x in enumerate((a, b[:n[1]])):
        ref = numpy_sb_fbank(x, 512, cfg.win_length)  # the independent reference on the unpadded row
        k = num_frames(x.size, cfg)
        assert ref.shape[0] == k
        np.testing.assert_allclose(out[row, :k], np.asarray(fbank(x[None], cfg))[0], atol=1e-4)
        assert np.abs(out[row, :k] - ref).mean() < 0.01
    zero_padded = batch.copy()
    zero_padded[1, n[1]:] = 0.0
    k = num_frames(n[1], cfg)
    assert np.abs(np.asarray(fbank(zero_padded, cfg))[1, :k] - out[1, :k]).max() > 1.0  # SB's floor moved
