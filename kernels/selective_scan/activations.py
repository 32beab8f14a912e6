"""Activations of the selective-scan kernels, in forms that lower on Pallas-Triton (see ``kernel.py``)."""

from __future__ import annotations

import math

import jax.numpy as jnp

LN2 = math.log(2.0)
LOG2E = math.log2(math.e)

# exp2 lowers to one MUFU instruction (libdevice's exp2f); exp, log1p and the logistic lower to longer, accurate
# libdevice sequences. The [T, N, BD] work (the decays) uses exp2; the softplus of delta and its derivative are
# per (t, e), N times rarer, and use an accurate exp and a polynomial log1p.


def softplus(x):
    """softplus(x) = log(1 + exp(x)), to ~2e-7 relative for every fp32 x (see ``softplus_and_grad``)."""
    return softplus_and_grad(x)[0]


# log1p(v) / v on [0, 1] as a degree-9 polynomial in v (Chebyshev least-squares fit in float64, power basis,
# constant term first): 5e-9 relative in exact arithmetic, 1.5e-7 evaluated by Horner in fp32. No division.
_LOG1P_OVER_V = (0.9999999953848524, -0.4999990399276442, 0.3333000403523317, -0.2495455887119918,
                 0.19678117256960198, -0.15311863104065326, 0.10614264690447817, -0.057064200797752256,
                 0.01990716094695744, -0.0032563784779003984)


def softplus_and_grad(x):
    """(softplus(x), its derivative sigmoid(x)) from one accurate v = exp(-|x|) in (0, 1].

    softplus(x) = max(x, 0) + log1p(v), with log1p(v) = v * poly(v): about 2e-7 relative for every fp32 x,
    also where v is tiny (x << 0), where ``log2(1 + exp2(x))`` fails (6e-5 off at Mamba's dt_min, x = -6.9; 0
    below -17). Above x = 20 it is x to within 2e-9 relative (mamba_ssm's identity branch). libdevice's log1pf
    would cost about twice the instructions; exp2(x log2 e) would be off by ~|x| * 6e-8 relative."""
    v = jnp.exp(jnp.minimum(x, -x))
    poly = _LOG1P_OVER_V[-1]
    for c in _LOG1P_OVER_V[-2::-1]:
        poly = poly * v + c
    softplus = jnp.maximum(x, 0.0) + v * poly
    return softplus, jnp.where(x >= 0.0, 1.0, v) / (1.0 + v)


def sigmoid(x):
    return 1.0 / (1.0 + jnp.exp2(-LOG2E * x))
