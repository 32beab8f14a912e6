"""Shape legend and array aliases used across mamba-jax.

Every tensor inside the library is channels-last. One name, one meaning (jaxtyping names are case-sensitive
and may be several letters long):

    B   batch                        T   waveform samples             L   frames / sequence steps
    D   model width (d_model)        E   expanded width (d_inner = expand * D)
    N   SSM state size               K   convolution width            K1  K - 1 (a causal conv's state)
    S   sources (speakers)           H   attention heads              Dh  width of one head
    G   B/C groups of the scan       R   dt_rank                      F   frequency bins (STFT, mel)
    V   vocabulary                   U   target tokens (decoder steps)
    M   encoder filters (the learned encoder's channels, "N" in the Conv-TasNet paper)
    C   chunks of a dual-path model  Lc  frames per chunk             Lw  unfolded windows
    W   beam hypotheses              Kt  top-k candidates per hypothesis
    Ch  channels of a norm or unfold; Ci / Co a convolution's input / output channels
    Lq  query steps                  Lk  key steps                    Rp  / Hop  overlap-add pieces / hop
    *Sp / *So  a convolution's spatial dims in / out

A digit suffix names a size derived from another one (``L2``, ``L4``: frames after 2x / 4x subsampling,
``T2``: padded samples, ``D2``: twice the width); lower-case names are local to one function.

Annotations use jaxtyping, e.g. ``Float[Array, "B L D"]``. The test suite checks them at run time for
``mamba_jax.ops``, ``mamba_jax.layers`` and ``mamba_jax.models`` (jaxtyping's import hook with beartype,
``tests/conftest.py``): under ``jit`` a check runs once per trace. Functions that validate their own inputs with
user-facing errors (the models' ``__call__``, ``selective_scan``) are marked ``typing.no_type_check``.
"""

from __future__ import annotations

from typing import TypeAlias

import jax
import numpy as np
from jaxtyping import Array, Bool, Float, Int

PRNGKey: TypeAlias = jax.Array
ArrayLike: TypeAlias = jax.Array | np.ndarray

__all__ = ["Array", "ArrayLike", "Bool", "Float", "Int", "PRNGKey"]
