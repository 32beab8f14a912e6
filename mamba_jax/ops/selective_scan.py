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
from typing import Literal

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


@dataclasses.dataclass(frozen=True)
class _AutoStatic:
    """The non-array arguments of ``_auto_scan`` (hashable: a static argument of the custom_vjp)."""

    delta_softplus: bool
    return_last_state: bool
    sharding: ScanSharding | None


_INPUTS = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias", "initial_state")


def _run_candidate(cand, st: _AutoStatic, xs: tuple, sharding: ScanSharding | None):
    """``selective_scan`` with the candidate's implementation (``xs`` in ``_INPUTS`` order)."""
    u, delta, A, B, C, D, z, delta_bias, initial_state = xs
    if cand.fn is not None:
        return cand.fn(u, delta, A, B, C, D, z, delta_bias, delta_softplus=st.delta_softplus,
                       return_last_state=st.return_last_state, initial_state=initial_state)
    if cand.impl == "pallas":
        return _pallas_data_parallel(u, delta, A, B, C, D, z, delta_bias, st.delta_softplus, st.return_last_state,
                                     initial_state, cand.block_config, sharding)
    return selective_scan(u, delta, A, B, C, D, z, delta_bias, st.delta_softplus, st.return_last_state,
                          initial_state, impl=cand.impl)


class _AutoBench:
    """Random inputs of one signature at the bucket's measured length (``scan_autotune.Bench``): per-device
    shapes under a ``ScanSharding``, the global shapes without one (docs/mamba.md, "impl='auto'")."""

    def __init__(self, xs: tuple, st: _AutoStatic):
        from mamba_jax.ops import scan_autotune

        u, _, A, B = xs[:4]
        n = 1 if st.sharding is None else st.sharding.size
        rows = u.shape[0] // n if n > 1 and u.shape[0] % n == 0 else u.shape[0]
        self.length = scan_autotune.measured_length(u.shape[1])

        def local(name, x):
            if x is None:
                return None
            if name in ("u", "delta", "B", "C", "z"):  # [B, L, ...]
                return (rows, self.length) + tuple(x.shape[2:]), x.dtype
            if name == "initial_state":  # [B, E, N]
                return (rows,) + tuple(x.shape[1:]), x.dtype
            return tuple(x.shape), x.dtype

        self.shapes = tuple(map(local, _INPUTS, xs))
        self.static = dataclasses.replace(st, sharding=None)
        self.dtype = jnp.dtype(u.dtype).name
        opt = lambda x: "-" if x is None else jnp.dtype(x.dtype).name
        self.signature = (f"u({rows},L<={scan_autotune.length_bucket(u.shape[1])},{u.shape[2]}):{self.dtype}"
                          f"|A{tuple(A.shape)}:{opt(A)}|B{self.shapes[3][0][2:]}:{opt(B)}|delta:{opt(xs[1])}"
                          f"|D:{opt(xs[5])}|z:{opt(xs[6])}|bias:{opt(xs[7])}|h0:{opt(xs[8])}"
                          f"|sp{int(st.delta_softplus)}|last{int(st.return_last_state)}")
        self._inputs = None

    def _make_inputs(self):
        # The scan suite's input distributions (A negative, delta around softplus' range) and random cotangents,
        # drawn on the host: no compile per shape.
        rng = np.random.default_rng(0)

        def normal(shape, dtype, sd=1.0, negexp=False):
            x = sd * rng.standard_normal(shape)
            return jnp.asarray((-np.exp(x) if negexp else x).astype(np.float32), dtype)

        scale = dict(delta=0.5, A=0.5, delta_bias=0.3)
        xs = tuple(None if s is None else normal(*s, scale.get(name, 1.0), negexp=name == "A")
                   for name, s in zip(_INPUTS, self.shapes))
        out = jax.eval_shape(lambda *a: _run_candidate(self._ref(), self.static, a, None), *xs)
        cts = jax.tree.map(lambda o: normal(o.shape, o.dtype), out)
        return xs, cts

    @staticmethod
    def _ref():
        from mamba_jax.ops import scan_autotune

        return scan_autotune.REFERENCE

    def compile(self, cand, mode: str):
        """``cand``'s program for ``mode``, compiled ahead of time from the shapes alone (the tuner compiles the
        candidates in parallel threads); raises what the compiler raises."""
        key = (cand, self.static, mode, self.shapes)
        if key not in _COMPILED:
            xs = tuple(None if s is None else jax.ShapeDtypeStruct(*s) for s in self.shapes)
            if mode == "fwd":
                _COMPILED[key] = _bench_fwd.lower(cand, self.static, xs).compile()
            else:
                cts = jax.eval_shape(lambda *a: _run_candidate(self._ref(), self.static, a, None), *xs)
                _COMPILED[key] = _bench_fwd_bwd.lower(cand, self.static, xs, cts).compile()
        return _COMPILED[key]

    def run(self, cand, mode: str):
        """A callable running ``cand`` once, blocking: {"out", "last_state"} (+ {"d<input>"} for "fwd+bwd")."""
        fn = self.compile(cand, mode)
        if self._inputs is None:
            self._inputs = self._make_inputs()
        xs, cts = self._inputs
        return (lambda: jax.block_until_ready(fn(xs))) if mode == "fwd" else (
            lambda: jax.block_until_ready(fn(xs, cts)))


# Compiled check/timing programs by (candidate, statics, mode, shapes): a signature's check, its timings and the
# other mode's (which builds a new _AutoBench) share them; they hold no input arrays.
_COMPILED: dict = {}


def _named(st: _AutoStatic, out) -> dict:
    return dict(zip(("out", "last_state"), out)) if st.return_last_state else {"out": out}


@functools.partial(jax.jit, static_argnums=(0, 1))
def _bench_fwd(cand, st: _AutoStatic, xs: tuple) -> dict:
    return _named(st, _run_candidate(cand, st, xs, None))


@functools.partial(jax.jit, static_argnums=(0, 1))
def _bench_fwd_bwd(cand, st: _AutoStatic, xs: tuple, cts) -> dict:
    out, vjp = jax.vjp(lambda *a: _run_candidate(cand, st, a, None), *xs)
    grads = {f"d{k}": g for k, g in zip(_INPUTS, vjp(cts)) if g is not None}
    return {**_named(st, out), **grads}


def _auto_choice(st: _AutoStatic, xs: tuple, mode: str):
    from mamba_jax.ops import scan_autotune

    return scan_autotune.get_tuner().choose(_AutoBench(xs, st), mode)


# ``impl="auto"`` as a custom_vjp so that the choice knows whether the call is differentiated: the primal rule
# is traced only when it is not (inference: the forward-only winner), the fwd rule only under differentiation
# (training: the forward+backward winner), whose backward is the chosen candidate's own.
@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _auto_scan(st: _AutoStatic, *xs):
    return _run_candidate(_auto_choice(st, xs, "fwd"), st, xs, st.sharding)


def _auto_scan_fwd(st: _AutoStatic, *xs):
    cand = _auto_choice(st, xs, "fwd+bwd")
    return jax.vjp(lambda *a: _run_candidate(cand, st, a, st.sharding), *xs)


def _auto_scan_bwd(st: _AutoStatic, vjp, ct):
    return vjp(ct)


_auto_scan.defvjp(_auto_scan_fwd, _auto_scan_bwd)


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
        return _auto_scan(_AutoStatic(bool(delta_softplus), bool(return_last_state), sharding), u, delta, A, B, C,
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
