"""Shape legend and array aliases used across mamba-jax.

Every tensor inside the library is channels-last. The letters:

    B  batch                 T  waveform samples        L  frames / sequence steps
    D  model width (d_model) E  expanded width (d_inner = expand * D)
    N  SSM state size        K  convolution width       S  sources (speakers)
    H  attention heads       G  B/C groups of the selective scan   R  dt_rank
    F  frequency bins        V  vocabulary

Annotations use jaxtyping, e.g. ``Float[Array, "B L D"]``; they document shapes and are not
checked at run time (no jaxtyping import hook is installed).
"""

from __future__ import annotations

from typing import TypeAlias

import jax
import numpy as np
from jaxtyping import Array, Bool, Float, Int

PRNGKey: TypeAlias = jax.Array
ArrayLike: TypeAlias = jax.Array | np.ndarray

__all__ = ["Array", "ArrayLike", "Bool", "Float", "Int", "PRNGKey"]
