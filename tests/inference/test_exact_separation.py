"""Issue 16 acceptance: bucketed, batched ``Separator`` calls equal one unpadded model call per signal, for every
separation family (right padding is inert given the lengths), to 1e-5 relative."""

from __future__ import annotations

import pathlib

import jax
import numpy as np
import pytest
from flax import nnx

from mamba_jax.config import load_config
from mamba_jax.inference import Separator
from mamba_jax.models import build_model

CONFIGS = pathlib.Path(__file__).resolve().parents[2] / "configs"
RATE = 8000
BUCKET = 160  # samples: a small bucket keeps the compiled shapes small; 161 is just past its boundary
FAMILIES = ["mambatasnet_xs", "dpmamba_xs", "sepmamba_s", "sepmamba_causal_s", "spmamba"]


@pytest.fixture(scope="module", params=FAMILIES)
def family(request):
    config = load_config(f"{CONFIGS / request.param}.py:smoke")
    model = build_model(config.model, rngs=nnx.Rngs(0))
    sep = Separator(model, config, bucket_seconds=BUCKET / RATE)
    unpadded = jax.jit(lambda x: model(x))  # the reference: the model on exactly the signal, no padding
    lengths = [model.min_length, model.min_length + 37, BUCKET + 1]  # minimum, odd, just past a bucket
    assert lengths[1] % 2 == 1 and lengths[1] <= BUCKET < lengths[2]
    rng = np.random.default_rng(len(request.param))
    signals = [(0.3 * rng.standard_normal(n)).astype(np.float32) for n in lengths]
    refs = [np.asarray(unpadded(x[None]))[0] for x in signals]
    return request.param, sep, signals, refs


def _rel(got, want):
    return float(np.max(np.abs(got - want)) / np.max(np.abs(want)))


def test_separate_equals_unpadded_call(family):
    name, sep, signals, refs = family
    for x, ref in zip(signals, refs, strict=True):
        assert sep.padded_length(x.size) > x.size  # the call really pads
        got = sep.separate(x, RATE)
        err = _rel(got, ref)
        print(f"{name} n={x.size} padded to {sep.padded_length(x.size)}: max rel error {err:.1e}")
        assert got.shape == ref.shape and err <= 1e-5, (name, x.size, err)


def test_batch_of_three_equals_single_calls(family):
    """The three signals in ONE device call (one 320-sample bucket, rows padded to 4) equal three single calls."""
    name, sep, signals, refs = family
    wide = Separator(sep.model, sep.config, bucket_seconds=2 * BUCKET / RATE, batch_size=4)  # SPMamba's default: 1
    assert {wide.padded_length(x.size) for x in signals} == {2 * BUCKET}
    t = max(x.size for x in signals)
    batch = np.zeros((3, t), np.float32)
    for i, x in enumerate(signals):
        batch[i, :x.size] = x
    got = wide.separate_batch(batch, lengths=[x.size for x in signals])
    for i, (x, ref) in enumerate(zip(signals, refs, strict=True)):
        single = sep.separate(x, RATE)
        assert _rel(got[i, :, :x.size], single) <= 1e-5 and _rel(got[i, :, :x.size], ref) <= 1e-5, (name, x.size)
        assert not got[i, :, x.size:].any()
