"""Parameter counts of the five ConMamba configs equal docs/conmamba.md's "computed" numbers (eval_shape only)."""

from __future__ import annotations

import importlib

import pytest
from flax import nnx

from mamba_jax.models import build_model
from mamba_jax.models.conmamba import param_count

EXPECTED = {
    "conmamba_large": 115_187_888,
    "conmambamamba_large": 122_917_040,
    "conmamba_small": 14_075_520,
    "conmambamamba_small": 14_570_880,
    "conmamba_ctc_large": 31_555_519,
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_param_count(name):
    cfg = importlib.import_module(f"configs.{name}").get_config()
    model = nnx.eval_shape(lambda: build_model(cfg.model, rngs=nnx.Rngs(0)))
    assert param_count(model) == EXPECTED[name]


def test_breakdown_large():
    """docs/conmamba.md breakdown for L: CNN 25,504; encoder 81,918,976; Transformer decoder 25,225,216."""
    cfg = importlib.import_module("configs.conmamba_large").get_config()
    m = nnx.eval_shape(lambda: build_model(cfg.model, rngs=nnx.Rngs(0)))
    assert param_count(m.CNN) == 25_504
    assert param_count(m.encoder_layers) + param_count(m.encoder_norm) == 81_918_976
    assert param_count(m.encoder_layers[0]) == 6_826_496
    assert param_count(m.decoder) == 25_225_216
    assert param_count(m.embedding) == 2_560_000
    assert param_count(m.seq_lin) == param_count(m.ctc_lin) == 2_565_000
