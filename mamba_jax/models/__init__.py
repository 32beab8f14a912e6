"""Model zoo. Each model lives in its own module ``mamba_jax.models.<name>`` exposing

* ``build(model_cfg: ml_collections.ConfigDict, *, rngs: nnx.Rngs) -> nnx.Module``
* ``TASK``: ``"separation"`` or ``"asr"``

``model_cfg.name`` selects the module; the other fields are that model's hyperparameters.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from flax import nnx


def model_module(name: str) -> ModuleType:
    try:
        module = importlib.import_module(f"mamba_jax.models.{name}")
    except ModuleNotFoundError as err:
        raise ValueError(f"unknown model {name!r}: no module mamba_jax.models.{name}") from err
    if not hasattr(module, "build"):  # a shared module (models/tasnet.py), not a model
        raise ValueError(f"unknown model {name!r}: mamba_jax.models.{name} is not a model (no build())")
    return module


def build_model(model_cfg, *, rngs: nnx.Rngs) -> nnx.Module:
    """Builds the model that ``model_cfg.name`` names (see the module docstring)."""
    return model_module(model_cfg.name).build(model_cfg, rngs=rngs)
