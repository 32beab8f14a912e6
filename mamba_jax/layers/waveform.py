"""Input checks and length bookkeeping shared by the separation models (``[B, T]`` in, ``[B, S, T]`` out).

Rank and length are static, so they are checked at trace time and always raise ``ValueError``. Finiteness
depends on the values; ``check_finite`` chooses how it is checked:

* ``"eager"`` (default): when the waveform is a concrete array (an eager call, outside ``jit``), a NaN or
  inf raises ``ValueError`` before any compute. Inside ``jit``/``grad`` tracing the values are unknown and
  **nothing is checked** (no cost in the training step; the trainer's NaN-loss stop is the guard there).
* ``"callback"``: additionally, under tracing, a ``jax.debug.callback`` raises on the host at run time
  (it surfaces as a ``JaxRuntimeError`` whose text contains the message). It costs one device-to-host sync
  per call, which is why it is opt-in.
* ``"off"``: no finiteness check.
"""

from __future__ import annotations

from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np

from mamba_jax.typing import Array, Float

CheckFinite = Literal["eager", "callback", "off"]


def _nonfinite_error(model: str) -> ValueError:
    return ValueError(f"{model}: input waveform contains NaN or inf values")


def check_waveform(mix: jax.Array | np.ndarray, *, model: str, min_len: int, check_finite: CheckFinite = "eager"
                   ) -> None:
    """Raises ``ValueError`` for a non-``[B, T]`` input, ``T < min_len``, or (see module doc) NaN/inf."""
    if check_finite not in ("eager", "callback", "off"):
        raise ValueError(f"check_finite must be 'eager', 'callback' or 'off', got {check_finite!r}")
    if getattr(mix, "ndim", None) != 2:
        raise ValueError(f"{model}: expected a waveform batch of shape [B, T], got shape "
                         f"{getattr(mix, 'shape', type(mix))}")
    if mix.shape[1] < min_len:
        raise ValueError(f"{model}: input has T={mix.shape[1]} samples, the minimum for this model is {min_len}")
    if not jnp.issubdtype(mix.dtype, jnp.floating):
        raise ValueError(f"{model}: expected a floating-point waveform, got dtype {mix.dtype}")
    if check_finite == "off":
        return
    if not isinstance(mix, jax.core.Tracer):
        if not np.all(np.isfinite(np.asarray(mix))):
            raise _nonfinite_error(model)
    elif check_finite == "callback":
        def _raise(ok):
            if not bool(ok):
                raise _nonfinite_error(model)

        jax.debug.callback(_raise, jnp.all(jnp.isfinite(mix)))


def fit_length(y: Float[Array, "..."], length: int, axis: int = -1) -> Float[Array, "..."]:
    """Crops, or zero-pads on the right, ``axis`` of ``y`` to ``length`` (SpeechBrain ``compute_forward``: the
    decoder output back to the input length). A numpy array stays numpy (host side), anything else is jnp."""
    xp = np if isinstance(y, np.ndarray) else jnp
    axis = axis % y.ndim
    cur = y.shape[axis]
    if cur >= length:
        return y[(slice(None),) * axis + (slice(0, length),)]
    return xp.pad(y, [(0, 0)] * axis + [(0, length - cur)] + [(0, 0)] * (y.ndim - axis - 1))
