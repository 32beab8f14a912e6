"""Model zoo. Each model lives in its own module ``mamba_jax.models.<name>`` exposing

* ``build(model_cfg: ml_collections.ConfigDict, *, rngs: nnx.Rngs) -> nnx.Module``
* ``TASK``: ``"separation"`` or ``"asr"``

``model_cfg.name`` selects the module; the other fields are that model's hyperparameters.
"""

from __future__ import annotations

import dataclasses
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


def config_from(cls: type, model_cfg, *, model: str, ignore: tuple[str, ...] = ("name",)):
    """The frozen hyperparameter dataclass ``cls`` from ``config.model``: every field but ``ignore`` must be one
    of ``cls``'s (a misspelt or stale field is an error, never silently dropped); lists (a config restored from
    JSON) become tuples."""
    fields = {f.name for f in dataclasses.fields(cls)}
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in dict(model_cfg).items() if k not in ignore}
    unknown = set(kwargs) - fields
    if unknown:
        raise ValueError(f"{model}: unknown model fields {sorted(unknown)}")
    return cls(**kwargs)
