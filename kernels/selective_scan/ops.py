"""Public entry point of the Pallas selective scan: shape normalisation and the custom_vjp."""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp

from kernels.selective_scan import kernel as K
from kernels.selective_scan.config import BlockConfig

f32 = jnp.float32


@dataclasses.dataclass(frozen=True)
class _Static:
    """Everything the custom_vjp treats as static (hashable)."""

    softplus: bool
    bd: int
    chunk: int
    num_warps_fwd: int
    num_warps_bwd: int
    num_stages: int | None
    interpret: bool


def _pow2_divisor(x: int, cap: int) -> int:
    """Largest power of two that divides x and is <= cap."""
    p = 1
    while p * 2 <= cap and x % (p * 2) == 0:
        p *= 2
    return p


def _fwd_call(s: _Static, u, delta, A, B, C, D, bias, h0, z, save_states):
    return K.scan_fwd(u, delta, A, B, C, D, bias, h0, z, bd=s.bd, chunk=s.chunk, softplus=s.softplus,
                      save_states=save_states, num_warps=s.num_warps_fwd, num_stages=s.num_stages,
                      interpret=s.interpret)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _scan(s: _Static, u, delta, A, B, C, D, bias, h0, z):
    """Normalised scan: B, C [B, L, G, N]; D, bias [E] fp32; h0 [B, E, N] fp32; z array or None."""
    out, last = _fwd_call(s, u, delta, A, B, C, D, bias, h0, z, save_states=False)
    return out, last


def _scan_fwd(s, u, delta, A, B, C, D, bias, h0, z):
    out, last, hs = _fwd_call(s, u, delta, A, B, C, D, bias, h0, z, save_states=True)
    return (out, last), (u, delta, A, B, C, D, bias, h0, z, hs)


def _scan_bwd(s, res, cts):
    u, delta, A, B, C, D, bias, h0, z, hs = res
    dout, dlast = cts
    du, ddelta, dz, db_p, dc_p, da_p, dd_p, dbias_p, dh0 = K.scan_bwd(
        u, delta, A, B, C, D, bias, hs, z, dout.astype(u.dtype), dlast.astype(f32),
        bd=s.bd, chunk=s.chunk, softplus=s.softplus, num_warps=s.num_warps_bwd, num_stages=s.num_stages,
        interpret=s.interpret)
    bsz, length, g, n = B.shape
    nblk = db_p.shape[1]

    def reduce_groups(p):  # [B, E/BD, L, N] -> [B, L, G, N]: sum the channel blocks of each group
        p = p.reshape(bsz, g, nblk // g, length, n).sum(axis=2)
        return jnp.transpose(p, (0, 2, 1, 3))

    dB = reduce_groups(db_p).astype(B.dtype)
    dC = reduce_groups(dc_p).astype(C.dtype)
    dA = da_p.sum(axis=0).astype(A.dtype)
    dD = dd_p.sum(axis=0).astype(D.dtype)
    dbias = dbias_p.sum(axis=0).astype(bias.dtype)
    return du, ddelta, dA, dB, dC, dD, dbias, dh0.astype(h0.dtype), dz


_scan.defvjp(_scan_fwd, _scan_bwd)


def selective_scan(
    u: jax.Array,
    delta: jax.Array,
    A: jax.Array,
    B: jax.Array,
    C: jax.Array,
    D: jax.Array | None = None,
    z: jax.Array | None = None,
    delta_bias: jax.Array | None = None,
    delta_softplus: bool = False,
    return_last_state: bool = False,
    initial_state: jax.Array | None = None,
    *,
    interpret: bool | None = None,
    block_config: BlockConfig | None = None,
) -> jax.Array | tuple[jax.Array, jax.Array]:
    """Mamba-1 selective scan (mamba_ssm ``selective_scan_fn`` semantics), channels-last, fused in Pallas.

    For every batch row, channel e in [0, E) and state n in [0, N)::

        delta_t = softplus(delta_t + delta_bias)         (bias and softplus optional)
        h_t     = exp(delta_t * A) * h_{t-1} + delta_t * B_t * u_t        h_{-1} = initial_state or 0
        y_t     = sum_n C_t * h_t + D * u_t
        out_t   = y_t * silu(z_t)                         (gating optional)

    Args:
      u, delta: [B, L, E], fp32 or bf16 (or fp16).
      A: [E, N] fp32, already negative.
      B, C: [B, L, N], or grouped [B, L, G, N] where channel e uses group e // (E / G).
      D, delta_bias: [E] or None.
      z: [B, L, E] or None (the silu gate).
      delta_softplus: apply softplus after the bias (identity above 20, as mamba_ssm).
      return_last_state: also return h_{L-1}.
      initial_state: [B, E, N] or None (zeros); differentiable.
      interpret: run the kernels in Pallas interpret mode; None means "unless the default backend is a GPU".
      block_config: tiling; None means ``BlockConfig()``.

    Returns:
      out [B, L, E] in u.dtype, and with ``return_last_state`` the fp32 last state [B, E, N]. The state and all
      accumulation are fp32. Gradients flow to every array argument, and the cotangent of the last state is
      honoured. Memory: neither direction materialises a [B, L, E, N] tensor; the forward saves states every
      ``block_config.chunk`` steps ([B, L/chunk, E, N] fp32) for the backward pass.
    """
    cfg = block_config or BlockConfig()
    if interpret is None:
        interpret = jax.default_backend() != "gpu"
    bsz, length, e = u.shape
    n = A.shape[1]
    grouped = B.ndim == 4
    Bg = B if grouped else B[:, :, None, :]  # [B, L, G, N]
    Cg = C if grouped else C[:, :, None, :]  # [B, L, G, N]
    g = Bg.shape[2]
    if e % g:
        raise ValueError(f"selective_scan: E={e} is not a multiple of the number of groups G={g}")
    D_ = jnp.zeros((e,), f32) if D is None else D
    bias_ = jnp.zeros((e,), f32) if delta_bias is None else delta_bias
    h0 = jnp.zeros((bsz, e, n), f32) if initial_state is None else initial_state
    A_ = A

    # Triton loads must be a power of two in size: pad the state dimension with inert states
    # (A = 0, B = C = 0, h0 = 0 keep them at zero and out of y). N is 16 in every Mamba model.
    n_pad = 1 << max(n - 1, 0).bit_length()
    if n_pad != n:
        pad_last = lambda x: jnp.pad(x, [(0, 0)] * (x.ndim - 1) + [(0, n_pad - n)])
        A_, Bg, Cg, h0 = map(pad_last, (A_, Bg, Cg, h0))

    s = _Static(
        softplus=bool(delta_softplus),
        bd=_pow2_divisor(e // g, cfg.block_d),
        chunk=max(1, min(cfg.chunk, length)),
        num_warps_fwd=cfg.num_warps_fwd,
        num_warps_bwd=cfg.num_warps_bwd,
        num_stages=cfg.num_stages,
        interpret=bool(interpret),
    )
    out, last = _scan(s, u, delta, A_, Bg, Cg, D_, bias_, h0, z)
    if not return_last_state:
        return out
    return out, last[..., :n]
