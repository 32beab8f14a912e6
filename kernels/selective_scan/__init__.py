"""Fused Pallas (Triton backend) selective scan for Mamba-1, with a Pallas backward kernel.

Recurrence (per batch row, channel e, state n; mamba_ssm ``selective_scan_fn`` semantics, channels-last)::

    delta_t = softplus(delta_t + delta_bias)                       (both optional)
    h_t     = exp(delta_t * A[e, n]) * h_{t-1} + delta_t * B_t[n] * u_t,     h_{-1} = initial_state or 0
    out_t   = (sum_n C_t[n] * h_t + D[e] * u_t) * silu(z_t)        (D and the gate optional)

See ``ops.selective_scan`` for the arguments and ``README.md`` for the design. Imports only jax.
"""

from .config import BlockConfig
from .ops import selective_scan

__all__ = ["BlockConfig", "selective_scan"]
