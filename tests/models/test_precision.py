"""The precision policy on every model family: ``train.precision='bf16'`` reaches the model (``model.dtype``),
the Mamba mixers' matmuls take bf16 inputs, parameters stay fp32, outputs are fp32 and close to the fp32
model's (same weights)."""

from __future__ import annotations

import importlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from mamba_jax.models import build_model

FAMILIES = ["mambatasnet_xs", "dpmamba_xs", "sepmamba_s", "spmamba", "conmamba_small"]


def _inputs(config):
    rng = np.random.default_rng(0)
    if config.task == "asr":
        return (jnp.asarray(rng.standard_normal((1, 40, config.model.n_mels)), jnp.float32),
                jnp.asarray([40], jnp.int32))
    return (jnp.asarray(rng.standard_normal((1, 1601)), jnp.float32),)


def _jitted(model, call):
    """``(f, state)`` with ``f(state, *args) == call(model, *args)``, jitted (eval mode: no dropout)."""
    model.eval()
    graphdef, state = nnx.split(model)
    return jax.jit(lambda st, *a: call(nnx.merge(graphdef, st), *a)), state


def _dot_dtypes(f, *args) -> set[str]:
    """Result dtypes of every dot_general in ``f``'s jaxpr (nested jaxprs included)."""
    jaxpr = str(jax.make_jaxpr(f)(*args))
    return {line.split("dot_general")[0].split(":")[-1].strip().split("[")[0]
            for line in jaxpr.splitlines() if "dot_general" in line}


@pytest.mark.parametrize("name", FAMILIES)
def test_bf16_compute_fp32_params(name):
    cfg32 = importlib.import_module(f"configs.{name}").get_config("smoke")
    cfg16 = importlib.import_module(f"configs.{name}").get_config("smoke")
    cfg16.unlock()
    cfg16.train.precision = "bf16"
    assert cfg16.model.dtype == "bf16" and cfg32.model.dtype == "fp32"  # the config reference
    m32 = build_model(cfg32.model, rngs=nnx.Rngs(0))
    m16 = build_model(cfg16.model, rngs=nnx.Rngs(0))
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(nnx.state(m16, nnx.Param)))
    args = _inputs(cfg32)
    call = (lambda m, *a: m(*a)["ctc_logprobs"]) if cfg32.task == "asr" else (lambda m, *a: m(*a))
    (f32, s32), (f16, s16) = _jitted(m32, call), _jitted(m16, call)
    out32, out16 = f32(s32, *args), f16(s16, *args)
    assert out16.dtype == jnp.float32
    assert "bf16" in _dot_dtypes(f16, s16, *args)
    assert "bf16" not in _dot_dtypes(f32, s32, *args)
    rel = float(jnp.linalg.norm(out16 - out32) / jnp.linalg.norm(out32))
    assert rel < 0.05, rel
