"""``selective_scan(impl="auto")`` where it measures (GPU): the candidates checked against ``associative`` and timed
once per shape signature by ``scan_autotune``'s tuner, as a ``custom_vjp`` so that the choice knows whether the
call is differentiated (docs/mamba.md, "impl='auto'")."""

from __future__ import annotations

import dataclasses
import functools
import importlib

import jax
import jax.numpy as jnp
import numpy as np

ss = importlib.import_module("mamba_jax.ops.selective_scan")  # the module (the package's attribute is the function)

@dataclasses.dataclass(frozen=True)
class AutoStatic:
    """The non-array arguments of ``auto_scan`` (hashable: a static argument of the custom_vjp)."""

    delta_softplus: bool
    return_last_state: bool
    sharding: ss.ScanSharding | None


_INPUTS = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias", "initial_state")


def _run_candidate(cand, st: AutoStatic, xs: tuple, sharding: ss.ScanSharding | None):
    """``selective_scan`` with the candidate's implementation (``xs`` in ``_INPUTS`` order)."""
    u, delta, A, B, C, D, z, delta_bias, initial_state = xs
    if cand.fn is not None:
        return cand.fn(u, delta, A, B, C, D, z, delta_bias, delta_softplus=st.delta_softplus,
                       return_last_state=st.return_last_state, initial_state=initial_state)
    if cand.impl == "pallas":
        return ss._pallas_data_parallel(u, delta, A, B, C, D, z, delta_bias, st.delta_softplus, st.return_last_state,
                                     initial_state, cand.block_config, sharding)
    return ss.selective_scan(u, delta, A, B, C, D, z, delta_bias, st.delta_softplus, st.return_last_state,
                          initial_state, impl=cand.impl)


class AutoBench:
    """Random inputs of one signature at the bucket's measured length (``scan_autotune.Bench``): per-device
    shapes under a ``ScanSharding``, the global shapes without one (docs/mamba.md, "impl='auto'")."""

    def __init__(self, xs: tuple, st: AutoStatic):
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
# other mode's (which builds a new AutoBench) share them; they hold no input arrays.
_COMPILED: dict = {}


def _named(st: AutoStatic, out) -> dict:
    return dict(zip(("out", "last_state"), out)) if st.return_last_state else {"out": out}


@functools.partial(jax.jit, static_argnums=(0, 1))
def _bench_fwd(cand, st: AutoStatic, xs: tuple) -> dict:
    return _named(st, _run_candidate(cand, st, xs, None))


@functools.partial(jax.jit, static_argnums=(0, 1))
def _bench_fwd_bwd(cand, st: AutoStatic, xs: tuple, cts) -> dict:
    out, vjp = jax.vjp(lambda *a: _run_candidate(cand, st, a, None), *xs)
    grads = {f"d{k}": g for k, g in zip(_INPUTS, vjp(cts)) if g is not None}
    return {**_named(st, out), **grads}


def _auto_choice(st: AutoStatic, xs: tuple, mode: str):
    from mamba_jax.ops import scan_autotune

    return scan_autotune.get_tuner().choose(AutoBench(xs, st), mode)


# ``impl="auto"`` as a custom_vjp so that the choice knows whether the call is differentiated: the primal rule
# is traced only when it is not (inference: the forward-only winner), the fwd rule only under differentiation
# (training: the forward+backward winner), whose backward is the chosen candidate's own.
@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def auto_scan(st: AutoStatic, *xs):
    return _run_candidate(_auto_choice(st, xs, "fwd"), st, xs, st.sharding)


def auto_scan_fwd(st: AutoStatic, *xs):
    cand = _auto_choice(st, xs, "fwd+bwd")
    return jax.vjp(lambda *a: _run_candidate(cand, st, a, st.sharding), *xs)


def auto_scan_bwd(st: AutoStatic, vjp, ct):
    return vjp(ct)


auto_scan.defvjp(auto_scan_fwd, auto_scan_bwd)
