"""Forward and backward Pallas (Triton backend) kernels of the Mamba-1 selective scan: time tiles.

Grid ``(batch b, channel block j, time chunk c)``. A program owns channels ``[j*BD, (j+1)*BD)`` of one batch
row (all in one B/C group) and the time steps of chunk c, and walks them in tiles of T steps. Per tile it
loads ``[T, BD]`` of delta/u/z/dout and ``[T, N]`` of B/C (one masked load each), forms the ``[T, N, BD]``
decays ``exp2(delta * A*log2(e))`` and inputs ``delta*u*B``, adds the carried state ``h`` ``[N, BD]`` to the
first step's input, runs the recurrence over the tile's T steps with one ``tt.scan``
(``linrec.linear_recurrence``) and writes ``[T, BD]`` of the outputs. N sits in the middle of the tile so that Triton's default layout keeps T (the scan
axis) inside a thread and spreads BD over lanes: the scan is serial in registers.

The time chunks make a small batch fill the GPU: the wrapper (``ops.py``) first runs every chunk from a zero
state (``write_y=False``: chunk end states and the chunk's sum of delta, whose ``exp2(A*log2e*sum)`` is the
chunk's total decay), combines the chunk boundary states in JAX (``lax.associative_scan``, log depth), then
runs the chunks again from the corrected start states. One chunk (c = 0 only) is the plain sequential kernel.

Layouts (the wrapper normalises to them; states are stored N-major so a state tile is contiguous in E):
  u, delta, z, out, dout, du, ddelta, dz: [B, L, E]     At = (A * log2 e)^T: [N, E] fp32
  B, C: [B, L, G, N]      D, delta_bias: [E] fp32
  h_in, h_end, g_end, g_start: [B, NC, N, E] fp32 (per chunk)      hs (tile-start states): [B, n_tiles, N, E]
  dB, dC: [B, L_pad, G, N] fp32, accumulated with atomic adds (L_pad = chunks * tiles per chunk * T)
  dA partials: [B, NC, N, E]     dD, dbias, dtsum: [B, NC, E]

Ragged L: every load and store is masked by ``t < L``; a padded step has delta = 0, so its decay is 1 and its
input 0 (it is the identity on the state, in both directions) and it contributes to no gradient.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl
from jax.experimental.pallas import triton as plgpu

from .activations import LN2, sigmoid, softplus_and_grad
from .linrec import linear_recurrence

f32 = jnp.float32


def _compiler_params(num_warps, num_stages):
    return plgpu.CompilerParams(num_warps=num_warps, num_stages=num_stages)


def _load(ref, t0, size, mask, dtype=f32):
    """Rows [t0, t0 + size) of a [L, X] ref as fp32, zero where ``mask`` ([size]) is false."""
    m = jnp.broadcast_to(mask[:, None], (size, ref.shape[1]))
    return plgpu.load(ref.at[pl.ds(t0, size), :], mask=m, other=0).astype(dtype)


def _store(ref, t0, value, mask):
    m = jnp.broadcast_to(mask[:, None], value.shape)
    plgpu.store(ref.at[pl.ds(t0, value.shape[0]), :], value.astype(ref.dtype), mask=m)


def _row(x, index, keepdims=False):
    """x[index] of a [T, ...] value as a masked sum (Triton-Pallas has no static slicing of values). T lies in
    one thread, so the mask is a per-register constant, and -0.0 (x + -0.0 == x) lets LLVM fold the sum
    away: this is a register pick."""
    t = jax.lax.broadcasted_iota(jnp.int32, x.shape, 0)
    return jnp.sum(jnp.where(t == index, x, -0.0), axis=0, keepdims=keepdims)


def _at_row(x, index, value):
    """x + value on row ``index`` of a [T, ...] value only (folds to one add, as in ``_row``)."""
    t = jax.lax.broadcasted_iota(jnp.int32, x.shape, 0)
    return x + jnp.where(t == index, value, -0.0)


def _shift_up(x, last):
    """y[t] = x[t + 1] for t < T - 1 and y[T - 1] = last[0], for x [T, ...] and last [1, ...]. T lies in one
    thread, so the masked sum folds to register moves (as in ``_row``)."""
    T = x.shape[0]
    shape = (T, T) + (1,) * (x.ndim - 1)
    dst = jax.lax.broadcasted_iota(jnp.int32, shape, 0)
    src = jax.lax.broadcasted_iota(jnp.int32, shape, 1)
    y = jnp.sum(jnp.where(src == dst + 1, x[None], -0.0), axis=1)
    return _at_row(y, T - 1, last)


def _delta_tile(dt_ref, bias, t0, T, valid, softplus):
    """(delta after bias and softplus, zero on padded rows; d delta / d pre-softplus or None), both [T, BD]."""
    pre = _load(dt_ref, t0, T, valid) + bias[None, :]
    dt, grad = softplus_and_grad(pre) if softplus else (pre, None)
    return jnp.where(valid[:, None], dt, 0.0), grad


# --------------------------------------------------------------------------------------------- forward


def _fwd_kernel(*refs, T, tiles_per_chunk, length, has_z, softplus, write_y, save_states):
    u_ref, dt_ref, at_ref, b_ref, c_ref, d_ref, bias_ref, h0_ref = refs[:8]
    refs = list(refs[8:])
    z_ref = refs.pop(0) if has_z else None
    y_ref = refs.pop(0) if write_y else None
    hend_ref = refs.pop(0)
    dtsum_ref = None if write_y else refs.pop(0)
    hs_ref = refs.pop(0) if save_states else None

    at = at_ref[...].astype(f32)  # [N, BD], A^T * log2(e)
    d = d_ref[...].astype(f32)  # [BD]
    bias = bias_ref[...].astype(f32)  # [BD]
    n_tiles = pl.cdiv(length, T)
    first = pl.program_id(2) * tiles_per_chunk
    steps = jax.lax.broadcasted_iota(jnp.int32, (T,), 0)

    def tile(k, carry):
        h, dtsum = carry  # [1, N, BD], [BD]
        i = first + k
        t0 = i * T
        valid = t0 + steps < length  # [T]
        if save_states:
            @pl.when(i < n_tiles)
            def _():
                hs_ref[i, :, :] = jnp.sum(h, axis=0)

        dt, _ = _delta_tile(dt_ref, bias, t0, T, valid, softplus)  # [T, BD]
        u = _load(u_ref, t0, T, valid)  # [T, BD]
        bt = _load(b_ref, t0, T, valid)  # [T, N]
        decay = jnp.exp2(dt[:, None, :] * at[None])  # [T, N, BD]
        inp = (dt * u)[:, None, :] * bt[:, :, None]  # [T, N, BD]
        # The carried state enters through the first step's input (h_0 = decay_0 h + inp_0), so the running
        # products of the decays are unused and compiled away.
        _, hs = linear_recurrence(decay, _at_row(inp, 0, decay * h), axis=0)  # h_t, [T, N, BD]
        if write_y:
            ct = _load(c_ref, t0, T, valid)  # [T, N]
            y = jnp.sum(hs * ct[:, :, None], axis=1) + d[None, :] * u  # [T, BD]
            if has_z:
                zt = _load(z_ref, t0, T, valid)
                y = y * zt * sigmoid(zt)
            _store(y_ref, t0, y, valid)
        else:
            dtsum = dtsum + jnp.sum(dt, axis=0)
        return _row(hs, T - 1, keepdims=True), dtsum

    # The state is carried as [1, N, BD], in the tile's layout, so that Triton does not convert it to and from
    # a load layout every iteration.
    init = (h0_ref[...].astype(f32)[None], jnp.zeros_like(bias))
    h, dtsum = jax.lax.fori_loop(0, tiles_per_chunk, tile, init)
    hend_ref[...] = jnp.sum(h, axis=0)
    if not write_y:
        dtsum_ref[...] = dtsum


def scan_fwd(u, delta, At, B, C, D, bias, h_in, z, *, T, bd, tiles_per_chunk, softplus, write_y, save_states,
             num_warps, num_stages, interpret):
    """Forward pallas_call over the grid (batch, E/bd, chunks). ``h_in``: [B, NC, N, E] chunk start states.

    Returns [out if write_y], h_end [B, NC, N, E], [dtsum [B, NC, E] if not write_y], [hs if save_states].
    """
    bsz, length, e = u.shape
    n = B.shape[3]
    eg = e // B.shape[2]
    nc = h_in.shape[1]
    n_tiles = pl.cdiv(length, T)
    row = pl.BlockSpec((None, length, bd), lambda b, j, c: (b, 0, j))
    grp = pl.BlockSpec((None, length, None, n), lambda b, j, c: (b, 0, (j * bd) // eg, 0))
    chan = pl.BlockSpec((bd,), lambda b, j, c: (j,))
    state = pl.BlockSpec((None, None, n, bd), lambda b, j, c: (b, c, 0, j))
    in_specs = [row, row, pl.BlockSpec((n, bd), lambda b, j, c: (0, j)), grp, grp, chan, chan, state]
    args = [u, delta, At, B, C, D, bias, h_in]
    if z is not None:
        in_specs.append(row)
        args.append(z)
    out_shape, out_specs = [], []
    if write_y:
        out_shape.append(jax.ShapeDtypeStruct(u.shape, u.dtype))
        out_specs.append(row)
    out_shape.append(jax.ShapeDtypeStruct((bsz, nc, n, e), f32))
    out_specs.append(state)
    if not write_y:
        out_shape.append(jax.ShapeDtypeStruct((bsz, nc, e), f32))
        out_specs.append(pl.BlockSpec((None, None, bd), lambda b, j, c: (b, c, j)))
    if save_states:
        out_shape.append(jax.ShapeDtypeStruct((bsz, n_tiles, n, e), f32))
        out_specs.append(pl.BlockSpec((None, n_tiles, n, bd), lambda b, j, c: (b, 0, 0, j)))
    kernel = functools.partial(_fwd_kernel, T=T, tiles_per_chunk=tiles_per_chunk, length=length,
                               has_z=z is not None, softplus=softplus, write_y=write_y, save_states=save_states)
    return pl.pallas_call(
        kernel,
        out_shape=out_shape,
        grid=(bsz, e // bd, nc),
        in_specs=in_specs,
        out_specs=out_specs,
        interpret=interpret,
        compiler_params=_compiler_params(num_warps, num_stages),
        name="selective_scan_fwd" if write_y else "selective_scan_fwd_chunk_states",
    )(*args)


# -------------------------------------------------------------------------------------------- backward
#
# With g_t = dL/dh_t (total) and decay_t = exp(delta_t A), the state gradient runs backwards as
#     g_t = decay_{t+1} * g_{t+1} + dy_t * C_t,        g_L = dL/d(last state), decay_L = 1,
# a reverse linear recurrence over the decays shifted by one step: the full pass shifts the tile's own decays
# in registers (``_shift_up``) and carries the next tile's first decay; the state-gradient-only pass of the
# time chunks loads the delta tile one row later instead (it also needs the shifted sum). With h_t recomputed
# from the saved tile-start state, every gradient is a tile expression:
#     w_t      = g_t * (h_t - delta_t u_t B_t)   (= g_t * decay_t * h_{t-1}, no shifted h needed)
#     ddelta_t = sum_n w_t A + u_t sum_n g_t B_t   (times sigmoid(pre) under softplus)
#     du_t     = delta_t sum_n g_t B_t + D dy_t,   dB_t = sum_e g_t delta_t u_t,   dC_t = sum_e dy_t h_t
#     dA      += sum_t w_t delta_t,                dh_{-1} = decay_0 * g_0.


def _bwd_kernel(*refs, T, tiles_per_chunk, length, has_z, softplus, carry_only):
    u_ref, dt_ref, at_ref, b_ref, c_ref, d_ref, bias_ref, hs_ref, dout_ref, gend_ref = refs[:10]
    refs = list(refs[10:])
    z_ref = refs.pop(0) if has_z else None
    if not carry_only:
        refs = refs[2:]  # the zero-filled inputs aliased to the dB and dC outputs
    if carry_only:
        gstart_ref, dtsum_ref = refs
    else:
        du_ref, ddt_ref = refs.pop(0), refs.pop(0)
        dz_ref = refs.pop(0) if has_z else None
        db_ref, dc_ref, da_ref, dd_ref, dbias_ref, gstart_ref = refs

    at = at_ref[...].astype(f32)  # [N, BD]
    d = d_ref[...].astype(f32)  # [BD]
    bias = bias_ref[...].astype(f32)  # [BD]
    n_tiles = pl.cdiv(length, T)
    first = pl.program_id(2) * tiles_per_chunk
    steps = jax.lax.broadcasted_iota(jnp.int32, (T,), 0)

    def tile(k, carry):
        g_next, da_acc, dd_acc, db_acc, decay_after = carry  # g_{t0+T} and decay_{t0+T} [1, N, BD]; accumulators
        i = first + tiles_per_chunk - 1 - k  # tiles in reverse order
        t0 = i * T
        valid = t0 + steps < length
        dout = _load(dout_ref, t0, T, valid)  # [T, BD]
        ct = _load(c_ref, t0, T, valid)  # [T, N]
        if has_z:
            zt = _load(z_ref, t0, T, valid)
            sig = sigmoid(zt)
            dy = dout * zt * sig
        else:
            dy = dout
        if carry_only:
            valid_next = t0 + 1 + steps < length
            dt_next, _ = _delta_tile(dt_ref, bias, t0 + 1, T, valid_next, softplus)  # delta_{t+1}, [T, BD]
            decay_next = jnp.exp2(dt_next[:, None, :] * at[None])  # [T, N, BD]
        else:
            dt, dsoftplus = _delta_tile(dt_ref, bias, t0, T, valid, softplus)
            decay = jnp.exp2(dt[:, None, :] * at[None])  # [T, N, BD]
            decay_next = _shift_up(decay, decay_after)
        dyc = _at_row(dy[:, None, :] * ct[:, :, None], T - 1, decay_next * g_next)
        _, g = linear_recurrence(decay_next, dyc, axis=0, reverse=True)  # g_t, [T, N, BD]
        if carry_only:
            return _row(g, 0, keepdims=True), da_acc, dd_acc, db_acc + jnp.sum(dt_next, axis=0), decay_after

        u = _load(u_ref, t0, T, valid)
        bt = _load(b_ref, t0, T, valid)  # [T, N]
        dtu = dt * u  # [T, BD]
        inp = dtu[:, None, :] * bt[:, :, None]
        # As in the forward, the saved tile-start state enters through the first step's input, so the running
        # products of the decays are not needed.
        h_start = hs_ref[jnp.minimum(i, n_tiles - 1), :, :]  # [N, BD]
        _, h = linear_recurrence(decay, _at_row(inp, 0, decay * h_start[None]), axis=0)  # h_t, [T, N, BD]
        w = g * (h - inp)
        gb = jnp.sum(g * bt[:, :, None], axis=1)  # [T, BD]: dL/d(delta u)
        ddt = jnp.sum(w * at[None], axis=1) * LN2 + gb * u
        if softplus:
            ddt = ddt * dsoftplus
        ddt = jnp.where(valid[:, None], ddt, 0.0)
        _store(ddt_ref, t0, ddt, valid)
        _store(du_ref, t0, gb * dt + d[None, :] * dy, valid)
        if has_z:
            y = jnp.sum(h * ct[:, :, None], axis=1) + d[None, :] * u
            _store(dz_ref, t0, dout * y * sig * (1.0 + zt * (1.0 - sig)), valid)
        # Summed over this block's channels in registers, then over the group's blocks with atomic adds (like
        # mamba_ssm). Padded rows add zeros (delta and dy are 0 there) inside the padded buffer: no mask.
        rows = (pl.ds(t0, T), slice(None))
        plgpu.atomic_add(db_ref, rows, jnp.sum(g * dtu[:, None, :], axis=2))  # [T, N]
        plgpu.atomic_add(dc_ref, rows, jnp.sum(h * dy[:, None, :], axis=2))
        da_acc = da_acc + jnp.sum(w * dt[:, None, :], axis=0, keepdims=True)
        dd_acc = dd_acc + jnp.sum(dy * u, axis=0)
        return _row(g, 0, keepdims=True), da_acc, dd_acc, db_acc + jnp.sum(ddt, axis=0), _row(decay, 0, True)

    zeros_d = jnp.zeros_like(bias)
    # [1, N, BD] carries, in the tile's layout (see the forward).
    # decay_{t0+T} of the chunk's last tile: the first step after the chunk (1 past L, where delta is 0).
    t_after = (first + tiles_per_chunk) * T
    dt_after, _ = _delta_tile(dt_ref, bias, t_after, T, t_after + steps < length, softplus)
    decay_after = _row(jnp.exp2(dt_after[:, None, :] * at[None]), 0, keepdims=True)
    init = (gend_ref[...].astype(f32)[None], jnp.zeros_like(at)[None], zeros_d, zeros_d, decay_after)
    g, da_acc, dd_acc, db_acc, _ = jax.lax.fori_loop(0, tiles_per_chunk, tile, init)
    gstart_ref[...] = jnp.sum(g, axis=0)
    if carry_only:
        dtsum_ref[...] = db_acc
    else:
        da_ref[...] = jnp.sum(da_acc, axis=0)
        dd_ref[...] = dd_acc
        dbias_ref[...] = db_acc


def scan_bwd(u, delta, At, B, C, D, bias, hs, z, dout, g_end, *, T, bd, tiles_per_chunk, softplus, carry_only,
             num_warps, num_stages, interpret):
    """Backward pallas_call over the grid (batch, E/bd, chunks). ``g_end``: [B, NC, N, E], the state gradient
    entering each chunk from its future (g at the chunk's end).

    carry_only: returns (g_start [B, NC, N, E] of each chunk from ``g_end``, the chunk's sum of delta shifted
    by one step [B, NC, E]). Otherwise returns du, ddelta, dz (or None) in the primal dtypes and fp32
    dB, dC [B, L_pad, G, N], dA [B, NC, N, E], dD, dbias [B, NC, E] and g_start [B, NC, N, E].
    """
    bsz, length, e = u.shape
    n = B.shape[3]
    eg = e // B.shape[2]
    nblk = e // bd
    nc = g_end.shape[1]
    n_tiles = hs.shape[1]
    row = pl.BlockSpec((None, length, bd), lambda b, j, c: (b, 0, j))
    grp = pl.BlockSpec((None, length, None, n), lambda b, j, c: (b, 0, (j * bd) // eg, 0))
    chan = pl.BlockSpec((bd,), lambda b, j, c: (j,))
    state = pl.BlockSpec((None, None, n, bd), lambda b, j, c: (b, c, 0, j))
    chan_c = pl.BlockSpec((None, None, bd), lambda b, j, c: (b, c, j))
    in_specs = [row, row, pl.BlockSpec((n, bd), lambda b, j, c: (0, j)), grp, grp, chan, chan,
                pl.BlockSpec((None, n_tiles, n, bd), lambda b, j, c: (b, 0, 0, j)), row, state]
    args = [u, delta, At, B, C, D, bias, hs, dout, g_end]
    if z is not None:
        in_specs.append(row)
        args.append(z)
    aliases = {}
    if carry_only:
        out_shape = [jax.ShapeDtypeStruct((bsz, nc, n, e), f32), jax.ShapeDtypeStruct((bsz, nc, e), f32)]
        out_specs = [state, chan_c]
    else:
        l_pad = nc * tiles_per_chunk * T  # every tile of every chunk, also those wholly past L
        acc = pl.BlockSpec((None, l_pad, None, n), lambda b, j, c: (b, 0, (j * bd) // eg, 0))
        # Two distinct zero-filled buffers: each is aliased to its own output and accumulated in place.
        zeros_db = jnp.zeros((bsz, l_pad, B.shape[2], n), f32)
        zeros_dc = jnp.zeros((bsz, l_pad, B.shape[2], n), f32)
        aliases = {len(args): 2 + (z is not None), len(args) + 1: 3 + (z is not None)}
        in_specs += [acc, acc]
        args += [zeros_db, zeros_dc]
        out_shape = [jax.ShapeDtypeStruct(u.shape, u.dtype), jax.ShapeDtypeStruct(delta.shape, delta.dtype)]
        out_specs = [row, row]
        if z is not None:
            out_shape.append(jax.ShapeDtypeStruct(z.shape, z.dtype))
            out_specs.append(row)
        out_shape += [
            jax.ShapeDtypeStruct(zeros_db.shape, f32),  # dB
            jax.ShapeDtypeStruct(zeros_dc.shape, f32),  # dC
            jax.ShapeDtypeStruct((bsz, nc, n, e), f32),  # dA partials
            jax.ShapeDtypeStruct((bsz, nc, e), f32),  # dD partials
            jax.ShapeDtypeStruct((bsz, nc, e), f32),  # ddelta_bias partials
            jax.ShapeDtypeStruct((bsz, nc, n, e), f32),  # g at each chunk's start
        ]
        out_specs += [acc, acc, state, chan_c, chan_c, state]
    kernel = functools.partial(_bwd_kernel, T=T, tiles_per_chunk=tiles_per_chunk, length=length,
                               has_z=z is not None, softplus=softplus, carry_only=carry_only)
    outs = pl.pallas_call(
        kernel,
        out_shape=out_shape,
        grid=(bsz, nblk, nc),
        in_specs=in_specs,
        out_specs=out_specs,
        input_output_aliases=aliases,
        interpret=interpret,
        compiler_params=_compiler_params(num_warps, num_stages),
        name="selective_scan_bwd_chunk_carry" if carry_only else "selective_scan_bwd",
    )(*args)
    if carry_only:
        return tuple(outs)
    du, ddelta = outs[:2]
    dz = outs[2] if z is not None else None
    return (du, ddelta, dz) + tuple(outs[-6:])
