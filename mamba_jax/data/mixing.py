"""Mixing arithmetic: active speech level, gains, speed perturbation and the two DM recipes.

Randomness is always passed in as a ``numpy.random.Generator``; :func:`item_rng` derives it from
``(seed, epoch, index, stream)`` alone, so any item of any epoch can be regenerated exactly (resume,
multi-process, multi-worker all agree).

Recipes (docs/data.md, docs/mamba_tasnet.md, docs/sepmamba.md):

* **SpeechBrain / Mamba-TasNet** (:func:`mix_speechbrain`): two *distinct speakers* drawn without
  replacement with probability proportional to their utterance counts, one uniform file each; both
  cropped at random offsets to the shorter length (and to ``segment`` if given); gains
  ``g1 ~ N(-27.43, 2.57)`` dB, ``g2 = g1 + N(-2.51, 2.66)`` dB, each clipped to [-45, 0], applied
  relative to mean|x|; sources and mixture scaled so that the largest peak is 0.9; then (training)
  per-source speed perturbation, truncation to the shortest, mixture re-summed.
* **SepMamba** (:func:`mix_sepmamba`): two uniform files from the whole pool (same speaker or even
  same file possible); each cropped at a random offset to ``segment`` (4 s) or zero-padded on the
  right; scaled by ``1/sqrt(activlev)`` and by ``U(-2.5, 0)`` / ``U(0, 2.5)`` dB; per-source speed
  perturbation, truncation to the shortest; everything divided by ``max(1, peak)/0.9``; exact zeros
  replaced by one random value in [-1e-9, 1e-9] per signal.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence

import numpy as np

from mamba_jax.data.audio import resample

__all__ = [
    "DMResult",
    "SB_GAIN1",
    "SB_GAIN_DIFF",
    "SPEEDS",
    "active_level",
    "draw_speakers",
    "item_rng",
    "mix_sepmamba",
    "mix_speechbrain",
    "rescale_avg_db",
    "speed_perturb",
    "speed_perturb_sources",
]

SB_GAIN1 = (-27.43, 2.57)       # mean, std of the first source's gain in dB (SB dynamic_mixing.py)
SB_GAIN_DIFF = (-2.51, 2.66)    # mean, std of (g2 - g1) in dB
SB_GAIN_CLIP = (-45.0, 0.0)
SEPMAMBA_GAIN_DB = ((-2.5, 0.0), (0.0, 2.5))  # U(lo, hi) dB for source 1 and 2
SPEEDS = (95, 100, 105)         # percent; SB SpeedPerturb: output length = T * speed / 100
PEAK = 0.9

# Stream tags keep the draws of different purposes independent for the same (seed, epoch, index).
STREAM_MIX, STREAM_SPEED, STREAM_CROP, STREAM_ORDER = 1, 2, 3, 4


def item_rng(seed: int, epoch: int, index: int, stream: int = STREAM_MIX) -> np.random.Generator:
    """Generator that is a pure function of ``(seed, epoch, index, stream)`` (PCG64 SeedSequence)."""
    return np.random.default_rng(np.random.SeedSequence([seed & 0xFFFFFFFF, epoch, index, stream]))


def active_level(x: np.ndarray, sample_rate: int, *, margin_db: float = 15.9,
                 time_const: float = 0.03, hangover: float = 0.2, n_bits: int = 16) -> float:
    """ITU-T P.56 (method B) style active speech level of ``x [T]`` as a *power* (mean square).

    Follows the P.56 structure: the envelope is |x| smoothed twice by a one-pole filter with time
    constant 0.03 s; for each of ``n_bits`` thresholds ``c_j = 2**(j - n_bits + 1)`` a sample is
    active if the envelope reached ``c_j`` within the last 0.2 s (hangover); the active level at
    threshold j is ``A_j = sum(x**2) / count_j``; the result is the level where
    ``10 log10 A_j - 20 log10 c_j`` falls to the 15.9 dB margin, linearly interpolated in dB
    between the two thresholds that bracket it. Approximation: the ITU reference (sv56demo)
    interpolates the same quantities slightly differently, so values can differ by a fraction of
    a dB; for mixing at 0-5 dB relative levels this is immaterial. Falls back to the mean square
    when no threshold brackets the margin (e.g. stationary noise).
    """
    x = np.asarray(x, np.float64)
    n = x.shape[0]
    sq = float(np.square(x).sum())  # not np.dot: waking BLAS threads costs ~10 ms on a busy host
    if n == 0 or sq == 0.0:
        return 0.0
    # Imported here: scipy.signal and scipy.ndimage take ~0.8 s to import, which every training and CLI process
    # paid at start-up; only the SepMamba dynamic-mixing recipe and the synthetic-corpus build call this.
    from scipy.ndimage import maximum_filter1d
    from scipy.signal import lfilter

    g = math.exp(-1.0 / (sample_rate * time_const))
    env = lfilter([1.0 - g], [1.0, -g], lfilter([1.0 - g], [1.0, -g], np.abs(x)))
    hang = int(math.ceil(hangover * sample_rate))
    thresholds = 2.0 ** (np.arange(n_bits) - n_bits + 1)              # [J]
    # active_j(t) = any(env[t - hang .. t] >= c_j) = (trailing max of env over hang+1) >= c_j
    size = hang + 1
    lag = (size - 1) // 2
    centred = maximum_filter1d(env, size=size, mode="constant", cval=0.0)
    trailing = np.empty_like(env)
    head = min(lag, n)
    trailing[:head] = np.maximum.accumulate(env[:head])
    trailing[head:] = centred[: n - head]
    counts = n - np.searchsorted(np.sort(trailing), thresholds, side="left")  # [J]
    with np.errstate(divide="ignore"):
        a_db = np.where(counts > 0, 10.0 * np.log10(sq / np.maximum(counts, 1)), -np.inf)
    c_db = 20.0 * np.log10(thresholds)
    delta = a_db - c_db
    for j in range(1, n_bits):
        if counts[j] == 0:
            break
        if delta[j] <= margin_db <= delta[j - 1]:
            w = (delta[j - 1] - margin_db) / (delta[j - 1] - delta[j])
            return float(10.0 ** ((a_db[j - 1] + w * (a_db[j] - a_db[j - 1])) / 10.0))
    return sq / n


def rescale_avg_db(x: np.ndarray, level_db: float) -> np.ndarray:
    """SpeechBrain ``rescale(amp_type="avg", scale="dB")``: ``x * 10**(level/20) / mean|x|``."""
    avg = float(np.mean(np.abs(x)))
    return (x * (10.0 ** (level_db / 20.0) / max(avg, 1e-14))).astype(np.float32)


def speed_perturb(x: np.ndarray, speed: int) -> np.ndarray:
    """Resample ``[T] -> [ceil(T * speed / 100)]`` (SB SpeedPerturb: new rate = rate * speed/100)."""
    if speed == 100:
        return x
    return resample(x, 100, int(speed))


def speed_perturb_sources(sources: Sequence[np.ndarray], rng: np.random.Generator,
                          speeds: Sequence[int] = SPEEDS) -> tuple[list[np.ndarray], list[int]]:
    """Independent speed per source, then truncate all to the shortest. Returns (sources, speeds)."""
    chosen = [int(s) for s in rng.choice(np.asarray(speeds), size=len(sources))]
    out = [speed_perturb(s, sp) for s, sp in zip(sources, chosen)]
    t = min(len(s) for s in out)
    return [s[:t] for s in out], chosen


@dataclasses.dataclass(frozen=True)
class DMResult:
    """One dynamically mixed example.

    Attributes:
      mix: ``float32 [T]``; sources: ``float32 [S, T]``; files: pool indices used;
      gains_db: the recipe's drawn gains; speeds: per-source speed (percent, 100 when off).
    """
    mix: np.ndarray
    sources: np.ndarray
    files: tuple[int, ...]
    gains_db: tuple[float, ...]
    speeds: tuple[int, ...]


def draw_speakers(rng: np.random.Generator, weights: np.ndarray, k: int = 2) -> np.ndarray:
    """``k`` distinct speaker indices, without replacement, ``p ∝ weights`` (np.random.choice)."""
    p = np.asarray(weights, np.float64)
    return rng.choice(len(p), size=k, replace=False, p=p / p.sum())


def _random_crop(x: np.ndarray, length: int, rng: np.random.Generator) -> np.ndarray:
    start = int(rng.integers(0, len(x) - length + 1))
    return x[start:start + length]


def _sb_gains(rng: np.random.Generator, k: int) -> list[float]:
    g1 = float(np.clip(rng.normal(*SB_GAIN1), *SB_GAIN_CLIP))
    gains = [g1]
    for _ in range(1, k):
        gains.append(float(np.clip(g1 + rng.normal(*SB_GAIN_DIFF), *SB_GAIN_CLIP)))
    return gains


def mix_speechbrain(
    rng: np.random.Generator,
    speaker_files: Sequence[Sequence[int]],
    load: Callable[[int], np.ndarray],
    *,
    num_sources: int = 2,
    segment: int | None = None,
    speed_rng: np.random.Generator | None = None,
) -> DMResult:
    """SpeechBrain WSJ0Mix dynamic mixing for one item.

    Args:
      rng: the item's generator (see :func:`item_rng`).
      speaker_files: per speaker, the pool indices of its files (weights = their counts).
      load: pool index -> ``float32 [T_i]`` at the target rate.
      num_sources: S.
      segment: optional cap on the length in samples (SB ``training_signal_len``).
      speed_rng: when given, apply per-source speed perturbation {95, 100, 105}% with it.

    Returns:
      :class:`DMResult` with ``mix [T]`` and ``sources [S, T]``.
    """
    counts = np.array([len(f) for f in speaker_files], np.float64)
    spk = draw_speakers(rng, counts, num_sources)
    files = [int(speaker_files[s][int(rng.integers(len(speaker_files[s])))]) for s in spk]
    wavs = [load(f) for f in files]
    t = min(len(w) for w in wavs)
    if segment is not None:
        t = min(t, int(segment))
    wavs = [_random_crop(w, t, rng) for w in wavs]
    gains = _sb_gains(rng, num_sources)
    srcs = [rescale_avg_db(w, g) for w, g in zip(wavs, gains)]
    mix = np.sum(srcs, axis=0)
    peak = max(float(np.max(np.abs(mix))), *(float(np.max(np.abs(s))) for s in srcs))
    scale = PEAK / max(peak, 1e-14)
    srcs = [s * scale for s in srcs]
    speeds = [100] * num_sources
    if speed_rng is not None:
        srcs, speeds = speed_perturb_sources(srcs, speed_rng)
    sources = np.stack(srcs).astype(np.float32)
    return DMResult(sources.sum(0), sources, tuple(files), tuple(gains), tuple(speeds))


def _fill_zeros(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    value = np.float32(rng.uniform(-1e-9, 1e-9))
    return np.where(x == 0.0, value, x).astype(np.float32)


def mix_sepmamba(
    rng: np.random.Generator,
    pool_size: int,
    load: Callable[[int], np.ndarray],
    *,
    sample_rate: int,
    num_sources: int = 2,
    segment: int | None = None,
    speed_rng: np.random.Generator | None = None,
) -> DMResult:
    """SepMamba ``Mixer`` dynamic mixing for one item (see the module docstring).

    ``segment`` (samples, 4 s in SepMamba) crops longer files at a random offset and zero-pads
    shorter ones on the right; ``None`` keeps full files and pads to the longest. The active level
    is measured on the cropped segment before padding.
    """
    files = [int(f) for f in rng.integers(0, pool_size, size=num_sources)]
    wavs = [load(f) for f in files]
    target = int(segment) if segment is not None else max(len(w) for w in wavs)
    gains = [float(rng.uniform(*SEPMAMBA_GAIN_DB[min(i, 1)])) for i in range(num_sources)]
    srcs = []
    for w, g in zip(wavs, gains):
        w = _random_crop(w, target, rng) if len(w) > target else w
        lev = active_level(w, sample_rate)
        w = w / math.sqrt(max(lev, 1e-20)) * 10.0 ** (g / 20.0)
        srcs.append(np.pad(w, (0, target - len(w))).astype(np.float32))
    speeds = [100] * num_sources
    if speed_rng is not None:
        srcs, speeds = speed_perturb_sources(srcs, speed_rng)
    sources = np.stack(srcs)
    mix = sources.sum(0)
    peak = max(float(np.max(np.abs(mix))), float(np.max(np.abs(sources))))
    scale = PEAK / max(1.0, peak)
    sources, mix = sources * scale, mix * scale
    sources = np.stack([_fill_zeros(s, rng) for s in sources])
    mix = _fill_zeros(mix, rng)
    return DMResult(mix, sources, tuple(files), tuple(gains), tuple(speeds))
