"""Forward and backward Pallas (Triton backend) kernels of the Mamba-1 selective scan.

Both kernels run on the grid (batch b, channel block j). A program owns channels
[j*BD, (j+1)*BD) of one batch row, all inside one B/C group, and walks time with a ``fori_loop`` keeping
the state ``h`` as a (BD, N) fp32 register tile. Every load and store is one row: (BD,) of u/delta/z/out,
(N,) of B/C, or a (BD, N) state tile, so sizes are powers of two (Triton's rule) whenever BD and N are.

Layouts seen by the kernels (the wrapper in ``ops.py`` normalises to them):
  u, delta, z, out, du, ddelta, dz: [B, L, E]     A: [E, N] fp32     D, delta_bias: [E] fp32
  B, C: [B, L, G, N]       h0, last, dh0: [B, E, N] fp32       hs (saved states): [B, n_chunks, E, N] fp32
  dB/dC partials: [B, E/BD, L, N] fp32     dA partials: [B, E, N]     dD, dbias partials: [B, E]
  ws (backward recompute workspace): [B, E/BD, chunk, BD, N] fp32
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl
from jax.experimental.pallas import triton as plgpu

f32 = jnp.float32


def _softplus(x):
    # mamba_ssm's kernel: log1p(exp(x)) below 20, identity above (exp would overflow in fp32 near 89).
    return jnp.where(x <= 20.0, jnp.log1p(jnp.exp(jnp.minimum(x, 20.0))), x)


def _delta(dt_ref, bias, t, softplus):
    """Returns (delta_t after bias and softplus, the pre-softplus value); both (BD,) fp32."""
    pre = dt_ref[t, :].astype(f32) + bias
    return (_softplus(pre) if softplus else pre), pre


def _compiler_params(num_warps, num_stages):
    return plgpu.CompilerParams(num_warps=num_warps, num_stages=num_stages)


# --------------------------------------------------------------------------------------------- forward


def _fwd_kernel(*refs, length, chunk, has_z, softplus, save_states):
    u_ref, dt_ref, a_ref, b_ref, c_ref, d_ref, bias_ref, h0_ref = refs[:8]
    refs = refs[8:]
    z_ref = refs[0] if has_z else None
    refs = refs[1:] if has_z else refs
    out_ref, last_ref = refs[:2]
    hs_ref = refs[2] if save_states else None

    a = a_ref[...].astype(f32)  # [BD, N]
    d = d_ref[...].astype(f32)  # [BD]
    bias = bias_ref[...].astype(f32)  # [BD]

    def step(t, h):
        if save_states:
            # h entering step t is h_{t-1}: the state at the start of chunk t // chunk.
            # lax.rem/div, not % and //: jnp's floor-mod wrapper does not lower on Triton (i1/i32 mismatch).
            @pl.when(jax.lax.rem(t, chunk) == 0)
            def _():
                hs_ref[jax.lax.div(t, chunk), :, :] = h

        dt, _ = _delta(dt_ref, bias, t, softplus)  # [BD]
        u = u_ref[t, :].astype(f32)  # [BD]
        bt = b_ref[t, :].astype(f32)  # [N]
        ct = c_ref[t, :].astype(f32)  # [N]
        h = jnp.exp(dt[:, None] * a) * h + (dt * u)[:, None] * bt[None, :]  # [BD, N]
        y = jnp.sum(h * ct[None, :], axis=1) + d * u  # [BD]
        if has_z:
            y = y * jax.nn.silu(z_ref[t, :].astype(f32))
        out_ref[t, :] = y.astype(out_ref.dtype)
        return h

    h = jax.lax.fori_loop(0, length, step, h0_ref[...].astype(f32))
    last_ref[...] = h


def scan_fwd(u, delta, A, B, C, D, bias, h0, z, *, bd, chunk, softplus, save_states, num_warps, num_stages,
             interpret):
    """Forward pallas_call. Returns (out, last_state) or (out, last_state, saved chunk-start states)."""
    bsz, length, e = u.shape
    g, n = B.shape[2], B.shape[3]
    eg = e // g
    nblk = e // bd
    n_chunks = pl.cdiv(length, chunk)
    row = pl.BlockSpec((None, length, bd), lambda b, j: (b, 0, j))
    grp = pl.BlockSpec((None, length, None, n), lambda b, j: (b, 0, (j * bd) // eg, 0))
    chan = pl.BlockSpec((bd,), lambda b, j: (j,))
    state = pl.BlockSpec((None, bd, n), lambda b, j: (b, j, 0))
    in_specs = [row, row, pl.BlockSpec((bd, n), lambda b, j: (j, 0)), grp, grp, chan, chan, state]
    args = [u, delta, A, B, C, D, bias, h0]
    if z is not None:
        in_specs.append(row)
        args.append(z)
    out_shape = [jax.ShapeDtypeStruct(u.shape, u.dtype), jax.ShapeDtypeStruct((bsz, e, n), f32)]
    out_specs = [row, state]
    if save_states:
        out_shape.append(jax.ShapeDtypeStruct((bsz, n_chunks, e, n), f32))
        out_specs.append(pl.BlockSpec((None, n_chunks, bd, n), lambda b, j: (b, 0, j, 0)))
    kernel = functools.partial(_fwd_kernel, length=length, chunk=chunk, has_z=z is not None,
                               softplus=softplus, save_states=save_states)
    return pl.pallas_call(
        kernel,
        out_shape=out_shape,
        grid=(bsz, nblk),
        in_specs=in_specs,
        out_specs=out_specs,
        interpret=interpret,
        compiler_params=_compiler_params(num_warps, num_stages),
        name="selective_scan_fwd",
    )(*args)


# -------------------------------------------------------------------------------------------- backward


def _bwd_kernel(*refs, length, chunk, has_z, softplus, interpret):
    (u_ref, dt_ref, a_ref, b_ref, c_ref, d_ref, bias_ref, hs_ref, dout_ref, dlast_ref) = refs[:10]
    refs = refs[10:]
    z_ref = refs[0] if has_z else None
    refs = refs[1:] if has_z else refs
    du_ref, ddt_ref = refs[:2]
    refs = refs[2:]
    dz_ref = refs[0] if has_z else None
    refs = refs[1:] if has_z else refs
    db_ref, dc_ref, da_ref, dd_ref, dbias_ref, dh0_ref, ws_ref = refs

    a = a_ref[...].astype(f32)  # [BD, N]
    d = d_ref[...].astype(f32)  # [BD]
    bias = bias_ref[...].astype(f32)  # [BD]
    n_chunks = pl.cdiv(length, chunk)
    bd, n = a.shape

    def chunk_body(i, carry):
        dh, da_acc, dd_acc, dbias_acc = carry
        c = n_chunks - 1 - i  # chunks in reverse order
        t0 = c * chunk
        t1 = jnp.minimum(t0 + chunk, length)
        h_start = hs_ref[c, :, :]  # h_{t0-1}, [BD, N]

        # 1. Recompute h_t for t in [t0, t1) from the saved chunk-start state into the workspace.
        def recompute(t, h):
            dt, _ = _delta(dt_ref, bias, t, softplus)
            u = u_ref[t, :].astype(f32)
            bt = b_ref[t, :].astype(f32)
            h = jnp.exp(dt[:, None] * a) * h + (dt * u)[:, None] * bt[None, :]
            ws_ref[t - t0, :, :] = h
            return h

        jax.lax.fori_loop(t0, t1, recompute, h_start)
        if not interpret:
            # Rows of ws written by one thread are read back by another: make the stores visible (CTA barrier).
            plgpu.debug_barrier()

        # 2. Reverse recurrence over the chunk. dh enters step t as dL/dh_t from the future.
        def reverse(k, carry):
            dh, h_t, da_acc, dd_acc, dbias_acc = carry
            t = t1 - 1 - k
            h_prev = jnp.where(t > t0, ws_ref[jnp.maximum(t - t0 - 1, 0), :, :], h_start)  # h_{t-1}
            dt, pre = _delta(dt_ref, bias, t, softplus)
            u = u_ref[t, :].astype(f32)
            bt = b_ref[t, :].astype(f32)
            ct = c_ref[t, :].astype(f32)
            dout = dout_ref[t, :].astype(f32)
            if has_z:
                zt = z_ref[t, :].astype(f32)
                sig = jax.nn.sigmoid(zt)
                y = jnp.sum(h_t * ct[None, :], axis=1) + d * u
                dz_ref[t, :] = (dout * y * sig * (1.0 + zt * (1.0 - sig))).astype(dz_ref.dtype)
                dy = dout * zt * sig
            else:
                dy = dout
            dh = dh + dy[:, None] * ct[None, :]  # total dL/dh_t
            dc_ref[t, :] = jnp.sum(dy[:, None] * h_t, axis=0)
            decay = jnp.exp(dt[:, None] * a)  # [BD, N]
            dh_b = jnp.sum(dh * bt[None, :], axis=1)  # dL/d(delta*u), [BD]
            db_ref[t, :] = jnp.sum(dh * (dt * u)[:, None], axis=0)
            dh_decay = dh * h_prev * decay  # dL/d(delta*A) elementwise
            ddt = jnp.sum(dh_decay * a, axis=1) + dh_b * u
            du_ref[t, :] = (dh_b * dt + d * dy).astype(du_ref.dtype)
            if softplus:
                ddt = ddt * jax.nn.sigmoid(pre)
            ddt_ref[t, :] = ddt.astype(ddt_ref.dtype)
            da_acc = da_acc + dh_decay * dt[:, None]
            dd_acc = dd_acc + dy * u
            dbias_acc = dbias_acc + ddt
            return dh * decay, h_prev, da_acc, dd_acc, dbias_acc

        h_last = ws_ref[t1 - t0 - 1, :, :]
        dh, _, da_acc, dd_acc, dbias_acc = jax.lax.fori_loop(
            0, t1 - t0, reverse, (dh, h_last, da_acc, dd_acc, dbias_acc))
        if not interpret:
            plgpu.debug_barrier()  # the next chunk overwrites ws
        return dh, da_acc, dd_acc, dbias_acc

    zeros_dn = jnp.zeros((bd, n), f32)
    zeros_d = jnp.zeros((bd,), f32)
    dh, da_acc, dd_acc, dbias_acc = jax.lax.fori_loop(
        0, n_chunks, chunk_body, (dlast_ref[...].astype(f32), zeros_dn, zeros_d, zeros_d))
    dh0_ref[...] = dh
    da_ref[...] = da_acc
    dd_ref[...] = dd_acc
    dbias_ref[...] = dbias_acc


def scan_bwd(u, delta, A, B, C, D, bias, hs, z, dout, dlast, *, bd, chunk, softplus, num_warps, num_stages,
             interpret):
    """Backward pallas_call.

    Returns du, ddelta, dz (or None) in the primal dtypes, and fp32 per-block partials:
    dB, dC [B, E/BD, L, N]; dA [B, E, N]; dD, dbias [B, E]; plus dh0 [B, E, N].
    """
    bsz, length, e = u.shape
    g, n = B.shape[2], B.shape[3]
    eg = e // g
    nblk = e // bd
    n_chunks = hs.shape[1]
    chunk = min(chunk, length)
    row = pl.BlockSpec((None, length, bd), lambda b, j: (b, 0, j))
    grp = pl.BlockSpec((None, length, None, n), lambda b, j: (b, 0, (j * bd) // eg, 0))
    chan = pl.BlockSpec((bd,), lambda b, j: (j,))
    state = pl.BlockSpec((None, bd, n), lambda b, j: (b, j, 0))
    chan_b = pl.BlockSpec((None, bd), lambda b, j: (b, j))
    part = pl.BlockSpec((None, None, length, n), lambda b, j: (b, j, 0, 0))
    in_specs = [row, row, pl.BlockSpec((bd, n), lambda b, j: (j, 0)), grp, grp, chan, chan,
                pl.BlockSpec((None, n_chunks, bd, n), lambda b, j: (b, 0, j, 0)), row, state]
    args = [u, delta, A, B, C, D, bias, hs, dout, dlast]
    out_shape = [jax.ShapeDtypeStruct(u.shape, u.dtype), jax.ShapeDtypeStruct(delta.shape, delta.dtype)]
    out_specs = [row, row]
    if z is not None:
        in_specs.append(row)
        args.append(z)
        out_shape.append(jax.ShapeDtypeStruct(z.shape, z.dtype))
        out_specs.append(row)
    out_shape += [
        jax.ShapeDtypeStruct((bsz, nblk, length, n), f32),  # dB partials
        jax.ShapeDtypeStruct((bsz, nblk, length, n), f32),  # dC partials
        jax.ShapeDtypeStruct((bsz, e, n), f32),  # dA partials
        jax.ShapeDtypeStruct((bsz, e), f32),  # dD partials
        jax.ShapeDtypeStruct((bsz, e), f32),  # ddelta_bias partials
        jax.ShapeDtypeStruct((bsz, e, n), f32),  # dh0
        jax.ShapeDtypeStruct((bsz, nblk, chunk, bd, n), f32),  # recompute workspace
    ]
    out_specs += [part, part, state, chan_b, chan_b, state,
                  pl.BlockSpec((None, None, chunk, bd, n), lambda b, j: (b, j, 0, 0, 0))]
    kernel = functools.partial(_bwd_kernel, length=length, chunk=chunk, has_z=z is not None,
                               softplus=softplus, interpret=interpret)
    outs = pl.pallas_call(
        kernel,
        out_shape=out_shape,
        grid=(bsz, nblk),
        in_specs=in_specs,
        out_specs=out_specs,
        interpret=interpret,
        compiler_params=_compiler_params(num_warps, num_stages),
        name="selective_scan_bwd",
    )(*args)
    du, ddelta = outs[:2]
    dz = outs[2] if z is not None else None
    db, dc, da, dd, dbias, dh0, _ = outs[-7:]
    return du, ddelta, dz, db, dc, da, dd, dbias, dh0
