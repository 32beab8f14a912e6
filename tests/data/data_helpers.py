"""Helpers shared by the data tests (a uniquely named module: tests/ has no packages)."""

from __future__ import annotations

import pathlib

import numpy as np
import soundfile as sf

from mamba_jax.data.synthetic import SyntheticSpec

TINY_SPEC = SyntheticSpec(n_train=4, n_valid=2, n_test=2, train_utts=4, eval_utts=3,
                          tr_mixtures=12, cv_mixtures=4, tt_mixtures=5, libri_train_utts=2,
                          libri_eval_utts=2)


def write_pcm16(path: pathlib.Path, x: np.ndarray, sr: int) -> np.ndarray:
    """Write ``x`` as PCM_16 and return what a float32 reader must get back (q / 32768)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    q = np.clip(np.round(np.asarray(x) * 32768.0), -32768, 32767).astype(np.int16)
    sf.write(str(path), q, sr, subtype="PCM_16")
    return q.astype(np.float32) / 32768.0


def tone(n: int, freq: float, sr: int, amp: float = 0.3) -> np.ndarray:
    return amp * np.sin(2 * np.pi * freq * np.arange(n) / sr)
