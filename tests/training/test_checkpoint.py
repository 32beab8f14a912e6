"""Weights-only checkpoints: save_params -> load_params/load_model, trainer workdirs, named errors."""

from __future__ import annotations

import numpy as np
import pytest
from flax import nnx

from configs.sepmamba_causal_s import get_config
from mamba_jax.checkpoint import (find_tokenizer, load_model, load_params, model_from_params, read_config,
                                  save_params)
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
    call = nnx.jit(lambda m, x: m(x))  # one program: the saved and every loaded model share their graph
    for path in (d, d / "checkpoints", d / "checkpoints" / "7"):
        loaded, config = load_model(path)
        assert config.model.to_dict() == cfg.model.to_dict()
        np.testing.assert_array_equal(np.asarray(call(loaded, x)), np.asarray(call(model, x)))
    assert load_params(d)[3] == 7 and read_config(d)[1] == 7


def _first_leaf(tree: dict) -> tuple[dict, str]:
    """The dict holding ``tree``'s first leaf (sorted keys) and that leaf's key."""
    node = tree
    while isinstance(node, dict):
        k = sorted(node)[0]
        parent, node = node, node[k]
    return parent, k


@pytest.mark.parametrize("kind", ["missing", "unexpected", "shape"])
def test_load_model_names_the_parameter_and_the_folder(saved, tmp_path, kind):
    """A checkpoint whose tree differs from the model's is refused before any restore, naming the leaf."""
    d, model, cfg = saved
    _, p, r = nnx.split(model, nnx.Param, ...)
    params = nnx.to_pure_dict(p)
    parent, k = _first_leaf(params["decoder"])
    if kind == "missing":
        del parent[k]
        expected = f"missing params/decoder/{k} "
    elif kind == "unexpected":
        parent["extra"] = np.zeros((2, 5), np.float32)
        expected = "unexpected params/decoder/extra (2, 5)"
    else:
        parent[k] = np.zeros((3, 3), np.float32)
        expected = f"params/decoder/{k}: shape (3, 3) != expected"
    bad = save_params(tmp_path, params, nnx.to_pure_dict(r), cfg, step=1)
    with pytest.raises(ValueError) as err:
        load_model(tmp_path)
    assert expected in str(err.value) and str(bad / "state") in str(err.value), str(err.value)
    assert "1 problem)" in str(err.value)


def test_errors_name_the_problem(saved, tmp_path):
    d, _, cfg = saved
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_params(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="no checkpoint found"):
        load_params(tmp_path)
    config, params, rest, _ = load_params(d)
    parent, k = _first_leaf(params)
    parent[k] = np.zeros((3, 3), np.float32)
    with pytest.raises(ValueError, match="the given weights: .*shape \\(3, 3\\)"):
        model_from_params(config, params, rest)
    with pytest.raises(FileNotFoundError, match="no tokenizer"):
        find_tokenizer(d, config)
