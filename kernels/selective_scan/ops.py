"""Public entry point of the Pallas selective scan: shape normalisation and the custom_vjp."""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp

from . import kernel as K
from .activations import softplus
from .config import BlockConfig
from .linrec import combine

f32 = jnp.float32
LOG2E = math.log2(math.e)


@dataclasses.dataclass(frozen=True)
class _Static:
    """Everything the custom_vjp treats as static (hashable)."""

    softplus: bool
    bd: int
    bd_bwd: int
    T: int
    chunk: int
    min_programs: int
    min_chunk_tiles: int
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


def tiles_per_chunk(s: _Static, bsz: int, length: int, e: int, bd: int) -> int:
    """Tiles per program along the time-parallel grid axis (the number of chunks is ceil(tiles / this))."""
    n_tiles = -(-length // s.T)
    if s.chunk:
        tpc = -(-s.chunk // s.T)
    else:
        programs = bsz * (e // bd)
        want = -(-s.min_programs // programs)  # chunks needed to reach min_programs
        tpc = max(s.min_chunk_tiles, -(-n_tiles // want))
    return max(1, min(tpc, n_tiles))


def _exp2_decay(At, dt_sum):
    """exp2(At * dt_sum): At [N, E], dt_sum [B, E] -> [B, N, E], the total decay over a run of steps."""
    return jnp.exp2(At[None] * dt_sum[:, None, :])


def _forward(s: _Static, u, delta, A, B, C, D, bias, h0, z, save_states):
    """Returns (out, last [B, E, N], hs or None, At)."""
    bsz, length, e = u.shape
    n = A.shape[1]
    At = (A.astype(f32) * LOG2E).T  # [N, E]
    h0t = jnp.transpose(h0.astype(f32), (0, 2, 1))  # [B, N, E]
    tpc = tiles_per_chunk(s, bsz, length, e, s.bd)
    nc = -(-(-(-length // s.T)) // tpc)
    kw = dict(T=s.T, bd=s.bd, tiles_per_chunk=tpc, softplus=s.softplus, num_warps=s.num_warps_fwd,
              num_stages=s.num_stages, interpret=s.interpret)
    if nc > 1:
        # Pass 1: every chunk from a zero state -> its end state and sum of delta (total decay).
        zeros = jnp.zeros((bsz, nc, n, e), f32)
        h_end, dtsum = K.scan_fwd(u, delta, At, B, C, D, bias, zeros, z, write_y=False, save_states=False, **kw)

        # Log-depth combine of the chunks' affine maps h -> a_c h + h_end_c (a_c: the chunk's total decay), so
        # the lowered program has no sequential loop over chunks (each XLA while step costs a launch and a
        # sync on a GPU). H_c + P_c h0 is the state at the end of chunk c; chunk c starts from that of c - 1.
        decay = jnp.exp2(At[None, None] * dtsum[:, :, None, :])  # [B, NC, N, E]
        prod, ends = jax.lax.associative_scan(combine, (decay, h_end), axis=1)
        ends = ends + prod * h0t[:, None]
        h_in = jnp.concatenate([h0t[:, None], ends[:, :-1]], axis=1)  # [B, NC, N, E]
    else:
        h_in = h0t[:, None]
    outs = K.scan_fwd(u, delta, At, B, C, D, bias, h_in, z, write_y=True, save_states=save_states, **kw)
    out, h_end = outs[0], outs[1]
    hs = outs[2] if save_states else None
    return out, jnp.transpose(h_end[:, -1], (0, 2, 1)), hs, At


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _scan(s: _Static, u, delta, A, B, C, D, bias, h0, z):
    """Normalised scan: B, C [B, L, G, N]; D, bias [E] fp32; h0 [B, E, N] fp32; z array or None."""
    out, last, _, _ = _forward(s, u, delta, A, B, C, D, bias, h0, z, save_states=False)
    return out, last


def _scan_fwd(s, u, delta, A, B, C, D, bias, h0, z):
    out, last, hs, _ = _forward(s, u, delta, A, B, C, D, bias, h0, z, save_states=True)
    return (out, last), (u, delta, A, B, C, D, bias, h0, z, hs)


def _scan_bwd(s, res, cts):
    u, delta, A, B, C, D, bias, h0, z, hs = res
    dout, dlast = cts
    bsz, length, g, n = B.shape
    e = u.shape[2]
    At = (A.astype(f32) * LOG2E).T
    tpc = tiles_per_chunk(s, bsz, length, e, s.bd_bwd)
    nc = -(-(-(-length // s.T)) // tpc)
    kw = dict(T=s.T, bd=s.bd_bwd, tiles_per_chunk=tpc, softplus=s.softplus, num_warps=s.num_warps_bwd,
              num_stages=s.num_stages, interpret=s.interpret)
    dout = dout.astype(u.dtype)
    dlast_t = jnp.transpose(dlast.astype(f32), (0, 2, 1))  # [B, N, E]
    if nc > 1:
        # Pass 1: every chunk's state gradient at its start from a zero one at its end, and its total decay.
        zeros = jnp.zeros((bsz, nc, n, e), f32)
        g_loc, dtsum = K.scan_bwd(u, delta, At, B, C, D, bias, hs, z, dout, zeros, carry_only=True, **kw)

        # The same log-depth combine in reverse: the gradient at chunk c's start from that at its end is
        # g -> a_c g + g_loc_c (a_c from the chunk's delta shifted by one step); chunk c - 1 ends where c starts.
        decay = jnp.exp2(At[None, None] * dtsum[:, :, None, :])  # [B, NC, N, E]
        prod, starts = jax.lax.associative_scan(combine, (decay, g_loc), axis=1, reverse=True)
        starts = starts + prod * dlast_t[:, None]
        g_end = jnp.concatenate([starts[:, 1:], dlast_t[:, None]], axis=1)  # [B, NC, N, E]
    else:
        g_end = dlast_t[:, None]
    du, ddelta, dz, db, dc, da_p, dd_p, dbias_p, g_start = K.scan_bwd(
        u, delta, At, B, C, D, bias, hs, z, dout, g_end, carry_only=False, **kw)

    # dL/dh_{-1} = decay_0 * g_0, with decay_0 from the first step's delta.
    dt0 = delta[:, 0].astype(f32) + bias.astype(f32)
    if s.softplus:
        dt0 = softplus(dt0)
    dh0 = _exp2_decay(At, dt0) * g_start[:, 0]  # [B, N, E]
    dB = db[:, :length].astype(B.dtype)  # [B, L, G, N]
    dC = dc[:, :length].astype(C.dtype)
    dA = da_p.sum(axis=(0, 1)).T.astype(A.dtype)
    dD = dd_p.sum(axis=(0, 1)).astype(D.dtype)
    dbias = dbias_p.sum(axis=(0, 1)).astype(bias.dtype)
    return du, ddelta, dA, dB, dC, dD, dbias, jnp.transpose(dh0, (0, 2, 1)).astype(h0.dtype), dz


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
      honoured. Memory: neither direction materialises a [B, L, E, N] tensor; the forward saves the state at
      the start of every ``block_config.block_t``-step tile ([B, L/block_t, N, E] fp32) for the backward pass.
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
        bd_bwd=_pow2_divisor(e // g, cfg.block_d_bwd),
        T=cfg.block_t,
        chunk=cfg.chunk,
        min_programs=cfg.min_programs,
        min_chunk_tiles=cfg.min_chunk_tiles,
        num_warps_fwd=cfg.num_warps_fwd,
        num_warps_bwd=cfg.num_warps_bwd,
        num_stages=cfg.num_stages,
        interpret=bool(interpret),
    )
    out, last = _scan(s, u, delta, A_, Bg, Cg, D_, bias_, h0, z)
    if not return_last_state:
        return out
    return out, last[..., :n]
