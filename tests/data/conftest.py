"""Fixtures for the data tests: tiny corpora written in the real layouts with soundfile."""

from __future__ import annotations

import pathlib

import numpy as np
import pytest
from data_helpers import TINY_SPEC, tone, write_pcm16

from mamba_jax.data.synthetic import ensure_corpus


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory) -> pathlib.Path:
    """A tiny synthetic corpus (8 speakers; ~2 s to build) in the real layouts."""
    return ensure_corpus(tmp_path_factory.mktemp("synthetic") / "corpus", progress=False,
                         spec=TINY_SPEC)


@pytest.fixture
def wsj0mix_tree(tmp_path):
    """wsj0-2mix ``wav8k/min/{tr,tt}`` with known signals; returns (root, {name: (mix, s1, s2)})."""
    root = tmp_path / "wsj0-mix"
    names = {
        "tr": ["40na010x_1.9857_01xo031a_-1.9857", "01aa0101_5.2094e-07_40nc0203_-5.2094e-07",
               "22ga010a_0.3_05oc020b_-0.3"],
        "tt": ["050a0501_2.1_440c0202_-2.1"],
    }
    truth = {}
    rng = np.random.default_rng(0)
    for split, ns in names.items():
        for k, n in enumerate(ns):
            t = 800 + 100 * k
            s1 = tone(t, 200 + 50 * k, 8000) * (0.5 + rng.random())
            s2 = tone(t, 700 + 30 * k, 8000, 0.2)
            d = root / "2speakers" / "wav8k" / "min" / split
            truth[n] = tuple(write_pcm16(d / sub / f"{n}.wav", x, 8000)
                             for sub, x in (("mix", s1 + s2), ("s1", s1), ("s2", s2)))
    return root, names, truth
