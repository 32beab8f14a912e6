"""SpeechBrain ``lobes.features.Fbank`` in JAX (docs/conmamba.md, step 1).

For a waveform ``wav [B, T]`` at 16 kHz::

    frames = stft(wav, n_fft, hop, hamming(win_length, periodic) zero-padded to n_fft at the centre,
                  center=True with constant (zero) padding of n_fft//2)           # [B, L, n_fft//2+1]
    power  = |X|^2                                                                # spectral_magnitude(power=1)
    mel    = power @ M                      # M: SB triangles, HTK-mel centres f_min..f_max, half-width =
                                            #    the spacing to the left neighbour (symmetric)
    db     = 10·log10(max(mel, 1e-10))
    out    = max(db, max_{L,F}(db) - top_db)                                      # per utterance

``L = 1 + T // hop``. Unlike librosa's mel filters (``htk=True, norm=None``), SB's triangles are symmetric
around each centre, which changes values by ~0.1 dB (docs/conmamba.md); hence our own construction.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from mamba_jax.typing import Array, ArrayLike, Float, Int


@dataclasses.dataclass(frozen=True)
class FbankConfig:
    """Defaults: SpeechBrain's (n_fft 400 / 25 ms); ConMamba-L S2S uses n_fft 512 / 32 ms, CTC 512 / 25 ms."""

    sample_rate: int = 16000
    n_fft: int = 400
    win_length_ms: float = 25.0
    hop_length_ms: float = 10.0
    n_mels: int = 80
    f_min: float = 0.0
    f_max: float | None = None  # None: sample_rate / 2
    top_db: float | None = 80.0
    amin: float = 1e-10

    @property
    def win_length(self) -> int:
        return int(round(self.sample_rate / 1000.0 * self.win_length_ms))

    @property
    def hop_length(self) -> int:
        return int(round(self.sample_rate / 1000.0 * self.hop_length_ms))


def _hz_to_mel(f):
    return 2595.0 * np.log10(1.0 + f / 700.0)


def _mel_to_hz(m):
    return 700.0 * (10.0 ** (m / 2595.0) - 1.0)


@functools.lru_cache(maxsize=16)
def sb_mel_matrix(sample_rate: int, n_fft: int, n_mels: int, f_min: float, f_max: float) -> np.ndarray:
    """``[n_fft//2+1, n_mels]`` float32: ``max(0, 1 - |f - c_m| / band_m)``, ``band_m = c_m - c_{m-1}``."""
    hz = _mel_to_hz(np.linspace(_hz_to_mel(f_min), _hz_to_mel(f_max), n_mels + 2))
    band = np.diff(hz)[:-1]  # spacing to the left neighbour of each centre
    centre = hz[1:-1]
    freqs = np.linspace(0, sample_rate // 2, n_fft // 2 + 1)
    slope = (freqs[:, None] - centre[None, :]) / band[None, :]
    return np.maximum(0.0, np.minimum(slope + 1.0, 1.0 - slope)).astype(np.float32)


def _window(cfg: FbankConfig) -> np.ndarray:
    """torch ``hamming_window(win, periodic=True)`` zero-padded to n_fft, centred as torch.stft does."""
    win = cfg.win_length
    w = 0.54 - 0.46 * np.cos(2 * np.pi * np.arange(win) / win)
    left = (cfg.n_fft - win) // 2
    out = np.zeros(cfg.n_fft)
    out[left:left + win] = w
    return out.astype(np.float32)


def num_frames(num_samples: int | Int[ArrayLike, "B"], cfg: FbankConfig):
    """Frames for ``num_samples`` samples (center=True): ``1 + T // hop``."""
    return 1 + num_samples // cfg.hop_length


def fbank(wav: Float[ArrayLike, "B T"], cfg: FbankConfig = FbankConfig(), lengths: Int[ArrayLike, "B"] | None = None
          ) -> Float[Array, "B L F"]:
    """Log-mel filterbank in dB, float32 (see the module docstring).

    ``lengths`` (samples per row): the first ``num_frames(lengths)`` frames of each row equal the unpadded
    call's whatever the padding holds (samples past the length are zeroed, the top_db floor is taken over the
    valid frames). Without it the top_db floor uses the whole padded row, as SpeechBrain does on a padded batch
    (a frame past the true end still overlaps the last samples, so this can differ)."""
    wav = jnp.asarray(wav, jnp.float32)
    if lengths is not None:
        wav = jnp.where(jnp.arange(wav.shape[-1])[None, :] < lengths[:, None], wav, 0.0)
    n_fft, hop = cfg.n_fft, cfg.hop_length
    x = jnp.pad(wav, ((0, 0), (n_fft // 2, n_fft // 2)))  # center=True, constant pad
    n = 1 + wav.shape[-1] // hop
    idx = np.arange(n)[:, None] * hop + np.arange(n_fft)[None, :]  # [L, n_fft]
    frames = x[:, idx] * jnp.asarray(_window(cfg))  # [B, L, n_fft]
    spec = jnp.fft.rfft(frames, axis=-1)  # [B, L, n_fft//2+1]
    power = jnp.square(spec.real) + jnp.square(spec.imag)
    f_max = cfg.f_max if cfg.f_max is not None else cfg.sample_rate / 2
    mel = jnp.matmul(power, jnp.asarray(sb_mel_matrix(cfg.sample_rate, n_fft, cfg.n_mels, cfg.f_min, f_max)),
                     precision=jax.lax.Precision.HIGHEST)  # [B, L, F]
    db = 10.0 * jnp.log10(jnp.maximum(mel, cfg.amin))
    if cfg.top_db is not None:
        valid = db if lengths is None else jnp.where(
            (jnp.arange(n)[None, :] < num_frames(lengths, cfg)[:, None])[..., None], db, -jnp.inf)
        db = jnp.maximum(db, jnp.max(valid, axis=(-2, -1), keepdims=True) - cfg.top_db)
    return db


def fbank_config_from(features_cfg) -> FbankConfig:
    """``FbankConfig`` from a config's ``features`` block (sample_rate, n_fft, win/hop_length_ms, n_mels, top_db)."""
    return FbankConfig(sample_rate=features_cfg.sample_rate, n_fft=features_cfg.n_fft,
                       win_length_ms=features_cfg.win_length_ms, hop_length_ms=features_cfg.hop_length_ms,
                       n_mels=features_cfg.n_mels, top_db=features_cfg.top_db)
