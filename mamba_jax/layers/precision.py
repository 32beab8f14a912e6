"""The precision policy: parameters, norms, the scan and its state are fp32; a config may ask for bf16 matmul
inputs (``train.precision``, copied into ``model.dtype``)."""

from __future__ import annotations

import jax.numpy as jnp

_DTYPES = {"fp32": None, "float32": None, "bf16": jnp.bfloat16, "bfloat16": jnp.bfloat16}


def compute_dtype(name: str):
    """``None`` (fp32, the layers' default) or ``jnp.bfloat16`` for a config's precision name."""
    if name not in _DTYPES:
        raise ValueError(f"precision/dtype must be one of {sorted(_DTYPES)}, got {name!r}")
    return _DTYPES[name]
