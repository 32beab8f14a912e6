"""Shared builders for the inference tests: speech-like test signals, smoke checkpoints with a tokenizer."""

from __future__ import annotations

import pathlib

import jax.numpy as jnp
import numpy as np
from flax import nnx

from mamba_jax.checkpoint import save_params
from mamba_jax.data.text import ALPHABET, make_sentence
from mamba_jax.models import build_model
from mamba_jax.tokenizer import train_tokenizer


def speechlike(seconds: float, seed: int, rate: int) -> np.ndarray:
    """Harmonic tones with a moving pitch and a syllable-rate envelope plus noise, float32 ``[T]``."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    f0 = 100 + (30 * seed) % 80 + 40 * np.sin(2 * np.pi * 1.5 * t)
    phase = 2 * np.pi * np.cumsum(f0) / rate
    x = sum(np.sin(k * phase) / k for k in range(1, 8)) * (0.2 + np.sin(2 * np.pi * (2 + seed % 3) * t) ** 2)
    return (0.2 * x + 0.01 * rng.standard_normal(t.size)).astype(np.float32)


def transcripts(n: int = 300) -> list[str]:
    """Synthetic sentences as the synthetic LibriSpeech writes them (extended words, the alphabet covered)."""
    rng = np.random.default_rng(0)
    out, missing = [], set(ALPHABET)
    for _ in range(n):
        out.append(make_sentence(rng, int(rng.integers(4, 12)), extended=True, cover=missing))
        missing -= set(out[-1])
    return out


def save_smoke_checkpoint(workdir: pathlib.Path, config, seed: int, *, tokenizer_kind: str | None = None):
    """A fresh model of ``config`` saved with ``save_params`` in ``workdir`` (ASR: non-trivial normalisation
    statistics and a tokenizer trained on ``transcripts()`` in ``<workdir>/tokenizer``). Returns the model."""
    model = build_model(config.model, rngs=nnx.Rngs(seed))
    if hasattr(model, "normalizer"):
        rng = np.random.default_rng(seed)
        model.normalizer.glob_mean[...] = jnp.asarray(rng.uniform(-60, -20, 80), jnp.float32)
        model.normalizer.glob_std[...] = jnp.asarray(rng.uniform(5, 20, 80), jnp.float32)
    _, p, r = nnx.split(model, nnx.Param, ...)
    save_params(workdir, nnx.to_pure_dict(p), nnx.to_pure_dict(r), config, step=3)
    if tokenizer_kind is not None:
        train_tokenizer(transcripts(), str(workdir / "tokenizer"), kind=tokenizer_kind,
                        vocab_size=config.model.vocab_size)
    return model
