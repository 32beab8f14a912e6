"""Speed perturbation for the data pipeline (SpeechBrain ``SpeedPerturb``, speeds {95, 100, 105} %).

SpeechBrain resamples ``orig_freq -> orig_freq·speed/100`` and keeps treating the result as ``orig_freq``:
speed 95 gives 0.95x the samples (faster, higher pitch), 105 gives 1.05x (slower). Pure numpy/librosa (soxr),
host side, so the data pipeline can import it without JAX.
"""

from __future__ import annotations

from collections.abc import Sequence

import librosa
import numpy as np


def speed_perturb(wav: np.ndarray, speed_pct: int, sample_rate: int = 16000) -> np.ndarray:
    """``wav [..., T] -> [..., ~T·speed/100]`` (float32)."""
    if speed_pct == 100:
        return np.asarray(wav, np.float32)
    target = sample_rate * speed_pct // 100
    return librosa.resample(np.asarray(wav, np.float32), orig_sr=sample_rate, target_sr=target,
                            res_type="soxr_hq", axis=-1).astype(np.float32)


def random_speed_perturb(wav: np.ndarray, rng: np.random.Generator, speeds: Sequence[int] = (95, 100, 105),
                         sample_rate: int = 16000) -> tuple[np.ndarray, int]:
    """Picks one of ``speeds`` uniformly (``rng`` makes it a pure function of the seed) and applies it."""
    speed = int(speeds[int(rng.integers(len(speeds)))])
    return speed_perturb(wav, speed, sample_rate), speed
