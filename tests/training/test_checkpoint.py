"""Weights-only checkpoints: save_params -> load_params/load_model, trainer workdirs, named errors."""

from __future__ import annotations

import numpy as np
import pytest
from flax import nnx

from configs.sepmamba_causal_s import get_config
from mamba_jax.checkpoint import find_tokenizer, load_model, load_params, model_from_params, save_params
from mamba_jax.models import build_model


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    cfg = get_config("smoke")
    model = build_model(cfg.model, rngs=nnx.Rngs(3))
    _, p, r = nnx.split(model, nnx.Param, ...)
    d = tmp_path_factory.mktemp("params")
    save_params(d, nnx.to_pure_dict(p), nnx.to_pure_dict(r), cfg, step=7)
    return d, model, cfg


def test_load_model_reproduces_outputs(saved):
    d, model, cfg = saved
    x = np.random.default_rng(0).standard_normal((1, 801)).astype(np.float32)
    for path in (d, d / "checkpoints", d / "checkpoints" / "7"):
        loaded, config = load_model(path)
        assert config.model.to_dict() == cfg.model.to_dict()
        np.testing.assert_array_equal(np.asarray(loaded(x)), np.asarray(model(x)))
    assert load_params(d)[3] == 7


def test_errors_name_the_problem(saved, tmp_path):
    d, _, cfg = saved
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_params(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="no checkpoint found"):
        load_params(tmp_path)
    config, params, rest, _ = load_params(d)
    leaf_path = []
    node = params
    while isinstance(node, dict):
        k = sorted(node)[0]
        leaf_path.append(k)
        parent, node = node, node[k]
    parent[leaf_path[-1]] = np.zeros((3, 3), np.float32)
    with pytest.raises(ValueError, match="shape \\(3, 3\\)"):
        model_from_params(config, params, rest)
    with pytest.raises(FileNotFoundError, match="no tokenizer"):
        find_tokenizer(d, config)
