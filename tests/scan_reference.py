"""The float64 selective-scan recurrence every scan test compares against (ops, kernel and layer tests).

Written independently of the library, with plain numpy loops over time: ``dt = softplus(delta + bias)``;
``h_t = exp(dt_t A) h_{t-1} + dt_t u_t B_t``; ``y_t = C_t . h_t + D u_t``; ``out = y silu(z)``. Channel ``e``
reads group ``e // (E / G)`` of ``B`` and ``C``. Import it as ``from tests.scan_reference import numpy_scan``
(the suite runs from the repository root with ``python -m pytest``).
"""

from __future__ import annotations

import numpy as np


def numpy_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None, initial_state=None, softplus=False):
    """``(out [B, L, E], h_last [B, E, N])`` in float64 for the inputs of ``selective_scan`` (any dtype)."""
    f = lambda x: None if x is None else np.asarray(x, np.float64)
    u, delta, A, B, C, D, z, delta_bias, h = map(f, (u, delta, A, B, C, D, z, delta_bias, initial_state))
    b, l, e = u.shape
    if B.ndim == 3:
        B, C = B[:, :, None, :], C[:, :, None, :]
    group = np.arange(e) // (e // B.shape[2])
    Be, Ce = B[:, :, group, :], C[:, :, group, :]  # [B, L, E, N]
    dt = delta if delta_bias is None else delta + delta_bias
    if softplus:
        dt = np.logaddexp(0.0, dt)
    h = np.zeros((b, e, A.shape[1])) if h is None else h.copy()
    y = np.empty((b, l, e))
    for t in range(l):
        h = np.exp(dt[:, t, :, None] * A) * h + (dt[:, t] * u[:, t])[:, :, None] * Be[:, t]
        y[:, t] = np.einsum("ben,ben->be", h, Ce[:, t])
    if D is not None:
        y = y + D * u
    if z is not None:
        y = y * z / (1.0 + np.exp(-z))
    return y, h
