"""A first-order linear-recurrence primitive for Pallas-Triton kernels, lowered to ``tt.scan``.

``linear_recurrence(a, b, axis, reverse)`` returns ``(p, h)`` with, along ``axis``::

    forward:  h_t = a_t * h_{t-1} + b_t   (h_{-1} = 0),    p_t = a_0 * ... * a_t
    reverse:  h_t = a_t * h_{t+1} + b_t   (h_{T} = 0),     p_t = a_t * ... * a_{T-1}

so a carried state ``h_in`` enters as ``h_t + p_t * h_in``. Its combine is the associative operator of
mamba_ssm's ``SSMScanOp`` (``csrc/selective_scan/selective_scan_common.h``)::

    ((a1, b1), (a2, b2)) -> (a1 * a2, a2 * b1 + b2)

Off the GPU (Pallas interpret mode, CPU) it is ``lax.associative_scan`` with that combine. Inside a Triton
kernel it becomes one multi-operand ``tt.scan`` whose region is the traced combine: the same construction jax
0.11.2 uses for ``lax.cumsum`` (``_associative_scan_lowering`` in ``jax/_src/pallas/triton/lowering.py``),
plus the ``reverse`` flag that ``tt.scan`` has and that jax's helper does not pass. Triton's reverse scan
reverses the values, scans forward with ``combine(accumulated, current)`` and reverses back (``ScanOpToLLVM``),
which is ``lax.associative_scan(..., reverse=True)``'s order.

This is the only module of the kernel that touches private jax API (``jax._src``); it is written against
jax 0.11.2 (pinned in constraints.txt) and ``tests/kernels/test_linrec.py`` checks that it lowers.
"""

from __future__ import annotations

import jax
from jax.extend import core as jex_core
from jax.interpreters import mlir

__all__ = ["combine", "linear_recurrence", "linear_recurrence_p"]


def combine(x, y):
    """(a1, b1) then (a2, b2): the composition of the affine maps h -> a1 h + b1 and h -> a2 h + b2."""
    (a1, b1), (a2, b2) = x, y
    return a1 * a2, a2 * b1 + b2


linear_recurrence_p = jex_core.Primitive("linear_recurrence")
linear_recurrence_p.multiple_results = True


def _impl(a, b, *, axis, reverse):
    p, h = jax.lax.associative_scan(combine, (a, b), axis=axis, reverse=reverse)
    return [p, h]


def _abstract_eval(a, b, *, axis, reverse):
    if a.shape != b.shape or a.dtype != b.dtype:
        raise TypeError(f"linear_recurrence: a {a.shape} {a.dtype} and b {b.shape} {b.dtype} must match")
    return [jax.core.ShapedArray(a.shape, a.dtype), jax.core.ShapedArray(b.shape, b.dtype)]


linear_recurrence_p.def_impl(_impl)
linear_recurrence_p.def_abstract_eval(_abstract_eval)
mlir.register_lowering(linear_recurrence_p, mlir.lower_fun(_impl, multiple_results=True))


def linear_recurrence(a: jax.Array, b: jax.Array, *, axis: int = 0, reverse: bool = False):
    """Returns (p, h): the running products of ``a`` and the recurrence ``h_t = a_t h_{t-1} + b_t`` from 0."""
    axis = axis % a.ndim
    return tuple(linear_recurrence_p.bind(a, b, axis=axis, reverse=bool(reverse)))


# ------------------------------------------------------------------------ Triton lowering (private API)


def _triton_rule(ctx, a, b, *, axis, reverse):
    from jax._src.pallas.triton import lowering as L  # its module globals: ft, api_util, pe, ir, tt_dialect

    avals = [jax.core.ShapedArray((), v.dtype) for v in ctx.avals_in]
    in_avals = L.ft.flatten((((avals[0], avals[1]), (avals[0], avals[1])), {}))
    dbg = L.api_util.debug_info("pallas triton linear_recurrence", combine, ((a, b), (a, b)), {})
    jaxpr, _ = L.pe.trace_to_jaxpr(combine, in_avals, debug_info=dbg)
    if jaxpr.consts:
        raise NotImplementedError("linear_recurrence: the combine has constants")
    scan = L.tt_dialect.ScanOp([a, b], axis, reverse)
    types = [L._element_type(v.type) for v in (a, b)]
    entry = scan.regions[0].blocks.append(*types, *types)
    with L.ir.InsertionPoint.at_block_begin(entry):
        out = L.lower_jaxpr_to_triton_ir(ctx.context, jaxpr, None, *entry.arguments)
        L.tt_dialect.scan_return(out)
    scan.verify()
    return list(scan.result)


def _register_triton() -> None:
    try:
        from jax._src.pallas.triton import lowering as L
    except ImportError:  # a jaxlib without the Triton dialect: interpret mode still works
        return
    L.triton_lowering_rules[linear_recurrence_p] = _triton_rule


_register_triton()
