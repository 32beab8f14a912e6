"""The Mamba-1 selective scan: the one entry point every model calls.

Semantics are mamba_ssm's ``selective_scan_fn`` (state-spaces/mamba, ``ops/selective_scan_interface.py``),
but channels-last. With ``E`` channels and ``N`` states, for every batch row and channel ``e``::

    delta_t = softplus(delta_t + delta_bias)           (bias and softplus optional)
    h_t     = exp(delta_t * A) * h_{t-1} + delta_t * B_t * u_t      h_{-1} = initial_state or 0
    y_t     = <C_t, h_t> + D * u_t
    out_t   = y_t * silu(z_t)                           (gating optional)

A is ``[E, N]`` (already negative: ``A = -exp(A_log)``). B and C are ``[B, L, N]``, or grouped
``[B, L, G, N]`` where channel ``e`` uses group ``e // (E / G)``. The state and every accumulation are
fp32 for fp32/bf16/fp16 inputs (float64 inputs compute in float64); the output takes ``u``'s dtype; the last state is fp32 ``[B, E, N]``.

Implementations (``impl``):

* ``"sequential"``: ``lax.scan`` over chunks of ``chunk_size`` steps, each chunk a rematerialised
  (``jax.checkpoint``) step-by-step ``lax.scan``. Only chunk-boundary states ``[L/chunk, B, E, N]`` are kept
  for the backward pass, and only one chunk's ``[B, chunk, E, N]`` intermediates exist at a time, so memory
  is O(B*L*E) for ``chunk_size >= N``.
* ``"associative"``: the same chunking, with ``lax.associative_scan`` inside each chunk (O(log chunk)
  depth; the form that suits TPUs and wide CPUs).
* ``"pallas"``: the fused Pallas GPU kernel in ``kernels/selective_scan`` (interpret mode off GPU).
* ``"auto"``: on GPU, the fastest of the kernel's block configurations and ``"associative"`` among those whose
  outputs and gradients match ``"associative"``, checked and timed once per shape signature (length bucketed),
  forward only where the call is not differentiated and forward + backward where it is, cached in the process
  and on disk (``scan_autotune``; ``docs/mamba.md``, "impl='auto'"); ``"associative"`` on TPU; ``"sequential"``
  on CPU.

Sharding is explicit: ``sharding=ScanSharding(mesh, "data")`` (the trainer's, set on its model's mixers with
``layers.mamba.set_scan_sharding``) says that the batch rows are split over that mesh axis; the kernel then
runs per device under ``shard_map``. The scan never looks at an ambient mesh.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Literal, no_type_check

import jax
import jax.numpy as jnp
import numpy as np

from mamba_jax.typing import Array, Float

Impl = Literal["auto", "sequential", "associative", "pallas"]
IMPLS = ("auto", "sequential", "associative", "pallas")

_HI = jax.lax.Precision.HIGHEST  # no TF32 in the state contraction
_DEFAULT_CHUNK = {"sequential": 64, "associative": 128}


@dataclasses.dataclass(frozen=True)
class ScanSharding:
    """The scan's batch rows are split over ``mesh``'s axis ``batch_axis`` (data parallelism).

    ``impl="pallas"`` then runs the kernel per device under ``jax.shard_map`` (a ``pallas_call`` is opaque to
    GSPMD: without it XLA would gather the whole batch onto every device), and ``impl="auto"`` measures the
    per-device shapes. The pure-JAX scans need nothing: GSPMD partitions them along the batch by itself.
    """

    mesh: jax.sharding.Mesh
    batch_axis: str = "data"

    def __post_init__(self):
        if self.batch_axis not in self.mesh.axis_names:
            raise ValueError(f"ScanSharding: mesh axes {self.mesh.axis_names} have no {self.batch_axis!r}")

    @property
    def size(self) -> int:
        """Devices along ``batch_axis``."""
        return int(self.mesh.shape[self.batch_axis])


def _resolve_impl(impl: str) -> str:
    """The implementation for ``impl``; "auto" stays "auto" where it measures (GPU, or any backend with
    ``scan_autotune.configure(enable_on_cpu=True)``), see ``_auto_scan``."""
    if impl not in IMPLS:
        raise ValueError(f"selective_scan: impl must be one of {IMPLS}, got {impl!r}")
    if impl == "auto":
        from mamba_jax.ops import scan_autotune

        backend = jax.default_backend()
        if backend == "gpu" or scan_autotune.get_tuner().enable_on_cpu:
            return "auto"
        # Measured on CPU (BENCHMARKS.md): sequential beats associative 2x forward, 5x forward+backward.
        return "associative" if backend == "tpu" else "sequential"
    return impl


def _pallas_data_parallel(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state, initial_state,
                          block_config=None, sharding: ScanSharding | None = None):
    """The Pallas kernel, run per device under ``jax.shard_map`` over ``sharding``'s batch axis when the batch
    divides over it.

    A ``pallas_call`` is opaque to GSPMD: inside a plain jit over batch-sharded inputs, XLA would gather the
    whole batch onto every device. Under ``shard_map`` each device scans its own rows (the scan is independent
    per batch row, so no collective is needed); gradients of the replicated ``A``, ``D`` and ``delta_bias``
    are summed over the axis by shard_map's transpose. Without ``sharding`` (or with an indivisible batch,
    e.g. single-utterance validation) the kernel is called directly.
    """
    from mamba_jax_kernels.selective_scan import selective_scan as pallas_scan

    def call(u, delta, B, C, z, h0, A, D, bias):
        return pallas_scan(u, delta, A, B, C, D=D, z=z, delta_bias=bias, delta_softplus=delta_softplus,
                           return_last_state=return_last_state, initial_state=h0, block_config=block_config)

    n = 1 if sharding is None else sharding.size
    if n == 1 or u.shape[0] % n:
        return call(u, delta, B, C, z, initial_state, A, D, delta_bias)
    P = jax.sharding.PartitionSpec
    rows = P(sharding.batch_axis)
    row = lambda x: None if x is None else rows
    rep = lambda x: None if x is None else P()
    batch_args, shared_args = (u, delta, B, C, z, initial_state), (A, D, delta_bias)
    out_specs = (rows, rows) if return_last_state else rows
    return jax.shard_map(call, mesh=sharding.mesh, in_specs=tuple(map(row, batch_args)) + tuple(map(rep, shared_args)),
                         out_specs=out_specs, check_vma=False)(*batch_args, *shared_args)


def _check_shapes(u, delta, A, B, C, D, z, delta_bias, initial_state) -> int:
    """Validates shapes; returns the number of groups G."""
    if u.ndim != 3:
        raise ValueError(f"selective_scan: u must be [B, L, E], got shape {u.shape}")
    b, l, e = u.shape
    if delta.shape != u.shape:
        raise ValueError(f"selective_scan: delta shape {delta.shape} != u shape {u.shape}")
    if A.ndim != 2 or A.shape[0] != e:
        raise ValueError(f"selective_scan: A must be [E={e}, N], got {A.shape}")
    n = A.shape[1]
    for name, x in (("B", B), ("C", C)):
        if x.ndim == 3:
            ok = x.shape == (b, l, n)
        elif x.ndim == 4:
            ok = x.shape[:2] == (b, l) and x.shape[3] == n and e % x.shape[2] == 0
        else:
            ok = False
        if not ok:
            raise ValueError(
                f"selective_scan: {name} must be [B, L, N]={(b, l, n)} or [B, L, G, N] with G dividing "
                f"E={e}; got {x.shape}"
            )
    if B.ndim != C.ndim or (B.ndim == 4 and B.shape[2] != C.shape[2]):
        raise ValueError(f"selective_scan: B {B.shape} and C {C.shape} must have the same grouping")
    for name, x in (("D", D), ("delta_bias", delta_bias)):
        if x is not None and x.shape != (e,):
            raise ValueError(f"selective_scan: {name} must be [E={e}], got {x.shape}")
    if z is not None and z.shape != u.shape:
        raise ValueError(f"selective_scan: z shape {z.shape} != u shape {u.shape}")
    if initial_state is not None and initial_state.shape != (b, e, n):
        raise ValueError(f"selective_scan: initial_state must be [B, E, N]={(b, e, n)}, got {initial_state.shape}")
    return 1 if B.ndim == 3 else B.shape[2]


def _chunk_step_sequential(h, xs, A):
    """One chunk, step by step. h: [B, G, N, Eg] (channels last: the per-step work is N vector rows of Eg
    channels and the C contraction a sum of N rows, no dot); A: [B, G, N, Eg], already broadcast over the batch
    (see ``_scan_jax``); xs time-major chunk tensors."""
    dt_c, dtu_c, b_c, c_c = xs  # [T, B, G, Eg], [T, B, G, Eg], [T, B, G, N], [T, B, G, N]

    def step(h, x):
        dt, dtu, bt, ct = x
        h = jnp.exp(dt[:, :, None, :] * A) * h + dtu[:, :, None, :] * bt[..., None]  # [B, G, N, Eg]
        y = jnp.sum(h * ct[..., None], axis=2)  # [B, G, Eg]
        return h, y

    return jax.lax.scan(step, h, (dt_c, dtu_c, b_c, c_c))


def _chunk_step_associative(h, xs, A):
    """One chunk with a parallel prefix scan. Materialises [T, B, G, Eg, N] for this chunk only."""
    dt_c, dtu_c, b_c, c_c = xs
    da = jnp.exp(dt_c[..., None] * A)  # [T, B, G, Eg, N]
    dbu = dtu_c[..., None] * b_c[:, :, :, None, :]  # [T, B, G, Eg, N]
    # Fold the incoming state into the first element: h_0 = a_0 * h_in + b_0.
    dbu = dbu.at[0].add(da[0] * h)

    def combine(p, q):
        return q[0] * p[0], q[0] * p[1] + q[1]

    _, hs = jax.lax.associative_scan(combine, (da, dbu), axis=0)  # [T, B, G, Eg, N]
    y = jnp.einsum("tbgen,tbgn->tbge", hs, c_c, precision=_HI)  # [T, B, G, Eg]
    return hs[-1], y


def _scan_jax(delta, dtu, A, B, C, h0, *, chunk: int, associative: bool):
    """Chunked scan. delta, dtu: [B, L, G, Eg] fp32; A: [G, Eg, N]; B, C: [B, L, G, N]; h0: [B, G, Eg, N]."""
    bsz, l, g, eg = delta.shape
    n = A.shape[-1]
    chunk = max(1, min(chunk, l))
    n_chunks = -(-l // chunk)
    pad = n_chunks * chunk - l
    if pad:
        # delta = 0 makes a padded step the identity on h (exp(0) = 1, input 0), so the last state is exact.
        padder = lambda x: jnp.pad(x, [(0, 0), (0, pad)] + [(0, 0)] * (x.ndim - 2))
        delta, dtu, B, C = map(padder, (delta, dtu, B, C))

    def to_chunks(x):  # [B, L, ...] -> [n_chunks, chunk, B, ...]
        x = jnp.moveaxis(x, 1, 0)
        return x.reshape((n_chunks, chunk) + x.shape[1:])

    if associative:
        inner = _chunk_step_associative
    else:  # the sequential loop keeps its state as [B, G, N, Eg] (measured ~2x faster per step on CPU)
        inner = _chunk_step_sequential
        h0 = jnp.swapaxes(h0, -1, -2)
        # A broadcast over the batch before the loop: the reverse loop then accumulates dA per batch row and the
        # broadcast's transpose sums the rows once, outside the loop. With A [G, N, Eg] inside, XLA reduces over
        # the batch in every reverse step: forward + backward up to 2.7x slower at B = 4, E >= 64 on CPU
        # (BENCHMARKS.md, "Pure-JAX selective scan, batched backward").
        A = jnp.broadcast_to(jnp.swapaxes(A, -1, -2), h0.shape)
    body = jax.checkpoint(functools.partial(inner, A=A), prevent_cse=False)
    h_last, ys = jax.lax.scan(body, h0, tuple(map(to_chunks, (delta, dtu, B, C))))
    if not associative:
        h_last = jnp.swapaxes(h_last, -1, -2)
    ys = ys.reshape((n_chunks * chunk, bsz, g, eg))[:l]  # [L, B, G, Eg]
    return jnp.moveaxis(ys, 0, 1), h_last


# Not run-time checked (tests/conftest.py): _check_shapes raises the user-facing ValueErrors that
# tests/ops/test_selective_scan.py expects; the implementations it dispatches to are checked.
@no_type_check
def selective_scan(
    u: Float[Array, "B L E"],
    delta: Float[Array, "B L E"],
    A: Float[Array, "E N"],
    B: Float[Array, "B L N"] | Float[Array, "B L G N"],
    C: Float[Array, "B L N"] | Float[Array, "B L G N"],
    D: Float[Array, "E"] | None = None,
    z: Float[Array, "B L E"] | None = None,
    delta_bias: Float[Array, "E"] | None = None,
    delta_softplus: bool = False,
    return_last_state: bool = False,
    initial_state: Float[Array, "B E N"] | None = None,
    *,
    impl: Impl = "auto",
    chunk_size: int | None = None,
    sharding: ScanSharding | None = None,
    _block_config=None,
) -> Float[Array, "B L E"] | tuple[Float[Array, "B L E"], Float[Array, "B E N"]]:
    """Selective scan with mamba_ssm semantics, channels-last (see the module docstring).

    Returns ``out`` ``[B, L, E]`` in ``u.dtype``, and with ``return_last_state`` also the fp32 state
    ``[B, E, N]`` after the last step. Differentiable in every array argument, ``initial_state`` included.
    ``chunk_size`` tunes the pure-JAX paths (ignored by ``"pallas"``); ``sharding``: see :class:`ScanSharding`.
    """
    g = _check_shapes(u, delta, A, B, C, D, z, delta_bias, initial_state)
    impl = _resolve_impl(impl)
    if impl == "auto":
        from mamba_jax.ops.scan_auto import AutoStatic, auto_scan

        return auto_scan(AutoStatic(bool(delta_softplus), bool(return_last_state), sharding), u, delta, A, B, C,
                          D, z, delta_bias, initial_state)
    if impl == "pallas":
        return _pallas_data_parallel(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state,
                                     initial_state, _block_config, sharding)

    bsz, l, e = u.shape
    n = A.shape[1]
    eg = e // g
    # fp32 state and accumulation for fp32/bf16/fp16 inputs; float64 inputs (x64 gradient checks) stay float64.
    f32 = jnp.promote_types(jnp.float32, u.dtype)
    uf = u.astype(f32)
    dt = delta.astype(f32)
    if delta_bias is not None:
        dt = dt + delta_bias.astype(f32)
    if delta_softplus:
        dt = jax.nn.softplus(dt)
    Bg = (B if B.ndim == 4 else B[:, :, None, :]).astype(f32)  # [B, L, G, N]
    Cg = (C if C.ndim == 4 else C[:, :, None, :]).astype(f32)  # [B, L, G, N]
    h0 = jnp.zeros((bsz, e, n), f32) if initial_state is None else initial_state.astype(f32)

    y, h_last = _scan_jax(
        dt.reshape(bsz, l, g, eg),
        (dt * uf).reshape(bsz, l, g, eg),
        A.astype(f32).reshape(g, eg, n),
        Bg,
        Cg,
        h0.reshape(bsz, g, eg, n),
        chunk=chunk_size or _DEFAULT_CHUNK[impl],
        associative=impl == "associative",
    )
    y = y.reshape(bsz, l, e)  # [B, L, E]
    if D is not None:
        y = y + uf * D.astype(f32)
    if z is not None:
        y = y * jax.nn.silu(z.astype(f32))
    out = y.astype(u.dtype)
    if return_last_state:
        return out, h_last.reshape(bsz, e, n)
    return out
