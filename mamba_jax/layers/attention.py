"""Multi-head attention with torch's packed ``in_proj`` layout, a key/value cache, and sinusoidal positions.

``MultiheadAttention`` follows ``torch.nn.MultiheadAttention`` (as wrapped by SpeechBrain's
``MultiheadAttention``): q, k, v come from one packed ``in_proj_weight [3D, D]`` (torch layout, rows
q|k|v) and ``in_proj_bias [3D]``; q is scaled by ``1/sqrt(D/H)``; dropout acts on the attention weights;
``out_proj`` is a Linear. Masks are boolean, ``True`` = may attend.

``sinusoidal_positions`` is SpeechBrain's ``PositionalEncoding`` table: even channels sin, odd channels cos,
``pe[t, 2i] = sin(t / 10000^(2i/D))``.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from mamba_jax.layers.init import torch_default
from mamba_jax.typing import Array, Bool, Float


def sinusoidal_positions(max_len: int, d: int) -> np.ndarray:
    """``[max_len, D]`` float32 table: ``pe[t, 0::2] = sin(t·w)``, ``pe[t, 1::2] = cos(t·w)``, ``w = 10000^(-2i/D)``."""
    pos = np.arange(max_len, dtype=np.float32)[:, None]
    div = np.exp(np.arange(0, d, 2, dtype=np.float32) * -(math.log(10000.0) / d))
    pe = np.zeros((max_len, d), np.float32)
    pe[:, 0::2] = np.sin(pos * div)
    pe[:, 1::2] = np.cos(pos * div)
    return pe


def xavier_uniform_torch(key: jax.Array, shape, dtype=jnp.float32) -> jax.Array:
    """torch ``xavier_uniform_`` for a torch-layout ``[out, in]`` matrix."""
    bound = math.sqrt(6.0 / (shape[0] + shape[1]))
    return jax.random.uniform(key, shape, dtype, -bound, bound)


class KVCache(NamedTuple):
    """Self-attention cache: keys/values ``[B, Lmax, H, Dh]`` of the positions written so far."""

    k: jax.Array
    v: jax.Array


class MultiheadAttention(nnx.Module):
    """``[B, Lq, D] x [B, Lk, D] -> [B, Lq, D]``. Keys: ``in_proj_weight [3D, D]``, ``in_proj_bias``, ``out_proj``."""

    def __init__(self, d_model: int, num_heads: int, *, dropout: float = 0.0, dtype=None, rngs: nnx.Rngs):
        if d_model % num_heads:
            raise ValueError(f"d_model {d_model} not divisible by heads {num_heads}")
        self.d_model, self.num_heads, self.dtype = d_model, num_heads, dtype
        # torch MHA: xavier_uniform_ in_proj, zero biases, out_proj default weight with zero bias.
        self.in_proj_weight = nnx.Param(xavier_uniform_torch(rngs.params(), (3 * d_model, d_model)))
        self.in_proj_bias = nnx.Param(jnp.zeros((3 * d_model,), jnp.float32))
        self.out_proj = nnx.Linear(d_model, d_model, kernel_init=torch_default(d_model),
                                   bias_init=nnx.initializers.zeros, dtype=dtype, rngs=rngs)
        self.dropout = nnx.Dropout(dropout, rngs=rngs)

    def project(self, x: Float[Array, "B L D"], which: int) -> Float[Array, "B L H Dh"]:
        """``which`` 0/1/2 = q/k/v projection, split into heads."""
        d = self.d_model
        w = self.in_proj_weight[which * d:(which + 1) * d]  # [D_out, D_in], torch layout
        b = self.in_proj_bias[which * d:(which + 1) * d]
        dt = self.dtype or x.dtype
        y = jnp.einsum("bld,ed->ble", x.astype(dt), w.astype(dt)) + b.astype(dt)  # [B, L, D]
        return y.reshape(*y.shape[:2], self.num_heads, d // self.num_heads)

    def attend(self, q: Float[Array, "B Lq H Dh"], k: Float[Array, "B Lk H Dh"], v: Float[Array, "B Lk H Dh"],
               mask: Bool[Array, "B Lq Lk"] | None) -> Float[Array, "B Lq D"]:
        scale = 1.0 / math.sqrt(q.shape[-1])
        logits = jnp.einsum("bqhd,bkhd->bhqk", q * scale, k).astype(jnp.float32)  # [B, H, Lq, Lk]
        if mask is not None:
            logits = jnp.where(mask[:, None], logits, jnp.finfo(jnp.float32).min)
        w = jax.nn.softmax(logits, axis=-1)
        w = self.dropout(w).astype(v.dtype)
        o = jnp.einsum("bhqk,bkhd->bqhd", w, v)  # [B, Lq, H, Dh]
        return self.out_proj(o.reshape(*o.shape[:2], self.d_model))

    def __call__(self, query: Float[Array, "B Lq D"], memory: Float[Array, "B Lk D"],
                 mask: Bool[Array, "B Lq Lk"] | None = None) -> Float[Array, "B Lq D"]:
        return self.attend(self.project(query, 0), self.project(memory, 1), self.project(memory, 2), mask)

    # ---- incremental decoding ----------------------------------------------------------------------------
    def init_cache(self, batch: int, max_len: int, dtype=jnp.float32) -> KVCache:
        shape = (batch, max_len, self.num_heads, self.d_model // self.num_heads)
        return KVCache(jnp.zeros(shape, dtype), jnp.zeros(shape, dtype))

    def step_self(self, x: Float[Array, "B 1 D"], cache: KVCache, pos: jax.Array
                  ) -> tuple[Float[Array, "B 1 D"], KVCache]:
        """Causal self-attention of the token at ``pos`` over positions ``0..pos`` held in ``cache``."""
        k_new, v_new = self.project(x, 1), self.project(x, 2)  # [B, 1, H, Dh]
        k = jax.lax.dynamic_update_slice_in_dim(cache.k, k_new.astype(cache.k.dtype), pos, axis=1)
        v = jax.lax.dynamic_update_slice_in_dim(cache.v, v_new.astype(cache.v.dtype), pos, axis=1)
        valid = (jnp.arange(k.shape[1]) <= pos)[None, None, :]  # [1, 1, Lmax]
        mask = jnp.broadcast_to(valid, (x.shape[0], 1, k.shape[1]))
        return self.attend(self.project(x, 0), k.astype(x.dtype), v.astype(x.dtype), mask), KVCache(k, v)
