"""Feed-forward module and the two ASR decoders of ConMamba (docs/conmamba.md "Decoder").

* ``FeedForward``: SpeechBrain ``PositionalwiseFeedForward``: Linear(D, F) -> act -> Dropout -> Linear(F, D).
* ``TransformerDecoder``: SpeechBrain ``TransformerDecoder`` with ``normalize_before=True``: per layer
  ``t += drop(self_attn(n1(t)))``, ``t += drop(cross_attn(n2(t), memory))``, ``t += drop(ffn(n3(t)))``;
  a final LayerNorm. All norms eps 1e-6.
* ``MambaDecoder`` (Mamba-ASR ``MambaDecoderLayer``): ``t += drop(self_mamba(n1(t)))``,
  ``t += drop(cross_mamba([memory, n2(t)])[-U:])``, ``t += drop(ffn(n3(t)))``; a final LayerNorm (eps 1e-6).

Both decoders take the embedded target ``[B, U, D]`` (embedding·sqrt(D) + sinusoidal positions, built by the
model) and the encoder memory ``[B, T, D]``, and expose an incremental API for search:
``init_state(memory, memory_mask, max_len)`` and ``step(x_t [B, D], state, pos) -> (y_t [B, D], state)``, whose
cost per step does not grow with the prefix apart from the attention read of the key/value cache. The
cross-Mamba is causal over ``[memory, target]``, so its state after the memory is computed once and then
stepped over the target tokens.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
from flax import nnx

from mamba_jax.layers.attention import KVCache, MultiheadAttention
from mamba_jax.layers.init import torch_default
from mamba_jax.layers.mamba import Mamba, MambaConfig, MambaState, split_in_proj, ssm_params
from mamba_jax.layers.norm import LayerNorm
from mamba_jax.ops.selective_scan import Impl, selective_scan
from mamba_jax.typing import Array, Bool, Float, Int


def gelu(x):
    """torch ``nn.GELU()`` (exact erf form)."""
    return jax.nn.gelu(x, approximate=False)


class FeedForward(nnx.Module):
    """Linear(D, F) -> act -> Dropout -> Linear(F, D). Keys: ``w1`` (ffn.0), ``w2`` (ffn.3)."""

    def __init__(self, d_model: int, d_ffn: int, *, dropout: float = 0.1, activation: Callable = gelu,
                 dtype=None, rngs: nnx.Rngs):
        self.w1 = nnx.Linear(d_model, d_ffn, kernel_init=torch_default(d_model), bias_init=torch_default(d_model),
                             dtype=dtype, rngs=rngs)
        self.w2 = nnx.Linear(d_ffn, d_model, kernel_init=torch_default(d_ffn), bias_init=torch_default(d_ffn),
                             dtype=dtype, rngs=rngs)
        self.activation = activation
        self.dropout = nnx.Dropout(dropout, rngs=rngs)

    def __call__(self, x: Float[Array, "... D"]) -> Float[Array, "... D"]:
        return self.w2(self.dropout(self.activation(self.w1(x))))


# ------------------------------------------------------------------------------------------------ Transformer
class TransformerDecoderLayer(nnx.Module):
    def __init__(self, d_model: int, num_heads: int, d_ffn: int, *, dropout: float, dtype, rngs: nnx.Rngs):
        self.self_attn = MultiheadAttention(d_model, num_heads, dropout=dropout, dtype=dtype, rngs=rngs)
        self.multihead_attn = MultiheadAttention(d_model, num_heads, dropout=dropout, dtype=dtype, rngs=rngs)
        self.pos_ffn = FeedForward(d_model, d_ffn, dropout=dropout, dtype=dtype, rngs=rngs)
        self.norm1 = LayerNorm(d_model, eps=1e-6)
        self.norm2 = LayerNorm(d_model, eps=1e-6)
        self.norm3 = LayerNorm(d_model, eps=1e-6)
        self.drop1 = nnx.Dropout(dropout, rngs=rngs)
        self.drop2 = nnx.Dropout(dropout, rngs=rngs)
        self.drop3 = nnx.Dropout(dropout, rngs=rngs)

    def __call__(self, t, memory, self_mask, cross_mask):
        t1 = self.norm1(t)
        t = t + self.drop1(self.self_attn(t1, t1, self_mask))
        t = t + self.drop2(self.multihead_attn(self.norm2(t), memory, cross_mask))
        return t + self.drop3(self.pos_ffn(self.norm3(t)))


class TransformerDecoder(nnx.Module):
    """Pre-LN Transformer decoder ``[B, U, D] x [B, T, D] -> [B, U, D]``. Keys: ``layers.{i}.*``, ``norm``."""

    def __init__(self, num_layers: int, d_model: int, num_heads: int, d_ffn: int, *, dropout: float = 0.1,
                 dtype=None, rngs: nnx.Rngs):
        self.layers = nnx.List([TransformerDecoderLayer(d_model, num_heads, d_ffn, dropout=dropout, dtype=dtype,
                                                        rngs=rngs) for _ in range(num_layers)])
        self.norm = LayerNorm(d_model, eps=1e-6)

    def __call__(self, tgt: Float[Array, "B U D"], memory: Float[Array, "B L D"],
                 memory_mask: Bool[Array, "B L"] | None = None,
                 tgt_valid: Bool[Array, "B U"] | None = None) -> Float[Array, "B U D"]:
        """``memory_mask``/``tgt_valid``: True on real frames/tokens (padding keys are not attended)."""
        b, u = tgt.shape[:2]
        self_mask = jnp.tril(jnp.ones((u, u), bool))[None]  # [1, U, U] look-ahead mask
        if tgt_valid is not None:
            self_mask = self_mask & tgt_valid[:, None, :]
        self_mask = jnp.broadcast_to(self_mask, (b, u, u))
        cross_mask = None if memory_mask is None else jnp.broadcast_to(memory_mask[:, None, :],
                                                                        (b, u, memory.shape[1]))
        for layer in self.layers:
            tgt = layer(tgt, memory, self_mask, cross_mask)
        return self.norm(tgt)

    def init_state(self, memory: Float[Array, "B L D"], memory_mask: Bool[Array, "B L"] | None, max_len: int
                   ) -> dict[str, Any]:
        """Per layer: an empty self-attention cache of ``max_len`` positions and the memory's keys/values."""
        b = memory.shape[0]
        return dict(
            self_kv=[layer.self_attn.init_cache(b, max_len) for layer in self.layers],
            cross_kv=[KVCache(layer.multihead_attn.project(memory, 1), layer.multihead_attn.project(memory, 2))
                      for layer in self.layers],
            memory_mask=(jnp.ones(memory.shape[:2], bool) if memory_mask is None else memory_mask),
        )

    def step(self, x: Float[Array, "B D"], state: dict[str, Any], pos: jax.Array
             ) -> tuple[Float[Array, "B D"], dict[str, Any]]:
        """Output at position ``pos`` given the embedded token there; writes its keys/values into the cache."""
        t = x[:, None, :]  # [B, 1, D]
        cross_mask = state["memory_mask"][:, None, :]  # [B, 1, L]
        new_kv = []
        for layer, kv, ckv in zip(self.layers, state["self_kv"], state["cross_kv"]):
            a, kv = layer.self_attn.step_self(layer.norm1(t), kv, pos)
            t = t + layer.drop1(a)
            q = layer.multihead_attn.project(layer.norm2(t), 0)
            t = t + layer.drop2(layer.multihead_attn.attend(q, ckv.k, ckv.v, cross_mask))
            t = t + layer.drop3(layer.pos_ffn(layer.norm3(t)))
            new_kv.append(kv)
        return self.norm(t)[:, 0], dict(state, self_kv=new_kv)


# ------------------------------------------------------------------------------------------------------ Mamba
class MambaDecoderLayer(nnx.Module):
    def __init__(self, mcfg: MambaConfig, d_ffn: int, *, dropout: float, dtype, scan_impl: Impl, rngs: nnx.Rngs):
        d = mcfg.d_model
        self.self_mamba = Mamba(mcfg, dtype=dtype, scan_impl=scan_impl, rngs=rngs)
        self.cross_mamba = Mamba(mcfg, dtype=dtype, scan_impl=scan_impl, rngs=rngs)
        self.pos_ffn = FeedForward(d, d_ffn, dropout=dropout, dtype=dtype, rngs=rngs)
        self.norm1 = LayerNorm(d, eps=1e-6)
        self.norm2 = LayerNorm(d, eps=1e-6)
        self.norm3 = LayerNorm(d, eps=1e-6)
        self.drop1 = nnx.Dropout(dropout, rngs=rngs)
        self.drop2 = nnx.Dropout(dropout, rngs=rngs)
        self.drop3 = nnx.Dropout(dropout, rngs=rngs)

    def __call__(self, t, memory):
        t = t + self.drop1(self.self_mamba(self.norm1(t)))
        u = t.shape[1]
        cross = self.cross_mamba(jnp.concatenate([memory.astype(t.dtype), self.norm2(t)], axis=1))
        t = t + self.drop2(cross[:, cross.shape[1] - u:])  # keep the last U outputs
        return t + self.drop3(self.pos_ffn(self.norm3(t)))


def _state_after(m: Mamba, x: Float[Array, "B L D"], lengths: Int[Array, "B"]) -> MambaState:
    """The state of ``m`` (from zero) after the first ``lengths[b]`` steps of each row of ``x``, padding ignored.

    One scan over the padded batch whose padded steps are identity steps (delta = 0: ``h_t = h_{t-1}``), and
    the convolution state gathered from the last ``K-1`` valid inputs."""
    xi, _ = split_in_proj(m.in_proj, x)  # [B, L, E]
    t = x.shape[1]
    valid = jnp.arange(t)[None, :] < lengths[:, None]  # [B, L]
    x_conv = jax.nn.silu(m.conv1d(xi))
    dt, b, c, a, d_skip, dt_bias = ssm_params(m.cfg, m.branch, x_conv)
    delta = jax.nn.softplus(dt.astype(jnp.float32) + dt_bias) * valid[..., None]  # [B, L, E]
    _, h = selective_scan(x_conv, delta, a, b, c, D=d_skip, delta_softplus=False, return_last_state=True,
                          impl=m.scan_impl, sharding=m.scan_sharding)
    k1 = m.cfg.d_conv - 1
    xs = jnp.concatenate([jnp.zeros((x.shape[0], k1, xi.shape[-1]), xi.dtype), xi], axis=1)  # [B, K-1+L, E]
    idx = lengths[:, None] + jnp.arange(k1)[None, :]  # xs rows of inputs lengths-K+1 .. lengths-1
    conv = jnp.take_along_axis(xs, idx[..., None], axis=1)  # [B, K-1, E]
    return MambaState(conv.astype(jnp.float32), h)


class MambaDecoder(nnx.Module):
    """Self-Mamba / cross-Mamba decoder ``[B, U, D] x [B, T, D] -> [B, U, D]``. Masks are ignored, as in the
    original (the cross-Mamba scans right-padded memory)."""

    def __init__(self, num_layers: int, mcfg: MambaConfig, d_ffn: int, *, dropout: float = 0.1, dtype=None,
                 scan_impl: Impl = "auto", rngs: nnx.Rngs):
        self.layers = nnx.List([MambaDecoderLayer(mcfg, d_ffn, dropout=dropout, dtype=dtype, scan_impl=scan_impl,
                                                  rngs=rngs) for _ in range(num_layers)])
        self.norm = LayerNorm(mcfg.d_model, eps=1e-6)

    def __call__(self, tgt: Float[Array, "B U D"], memory: Float[Array, "B L D"],
                 memory_mask: Bool[Array, "B L"] | None = None,
                 tgt_valid: Bool[Array, "B U"] | None = None) -> Float[Array, "B U D"]:
        del memory_mask, tgt_valid  # the original passes masks to neither Mamba
        for layer in self.layers:
            tgt = layer(tgt, memory)
        return self.norm(tgt)

    def init_state(self, memory: Float[Array, "B L D"], memory_mask: Bool[Array, "B L"] | None, max_len: int
                   ) -> dict[str, Any]:
        """Self-Mamba: zero state. Cross-Mamba: the state after scanning the memory; with ``memory_mask``
        (right padding) the state after each row's last valid frame, as if the memory were unpadded."""
        del max_len
        b = memory.shape[0]
        self_states, cross_states = [], []
        for layer in self.layers:
            self_states.append(layer.self_mamba.init_state(b))
            if memory_mask is None:
                _, st = layer.cross_mamba.call_with_state(memory, layer.cross_mamba.init_state(b))
            else:
                st = _state_after(layer.cross_mamba, memory, jnp.sum(memory_mask, axis=1, dtype=jnp.int32))
            cross_states.append(st)
        return dict(self_ssm=self_states, cross_ssm=cross_states)

    def step(self, x: Float[Array, "B D"], state: dict[str, Any], pos: jax.Array
             ) -> tuple[Float[Array, "B D"], dict[str, Any]]:
        del pos
        t = x
        new_self, new_cross = [], []
        for layer, s_st, c_st in zip(self.layers, state["self_ssm"], state["cross_ssm"]):
            y, s_st = layer.self_mamba.step(layer.norm1(t), s_st)
            t = t + layer.drop1(y)
            y, c_st = layer.cross_mamba.step(layer.norm2(t), c_st)
            t = t + layer.drop2(y)
            t = t + layer.drop3(layer.pos_ffn(layer.norm3(t)))
            new_self.append(s_st)
            new_cross.append(c_st)
        return self.norm(t), dict(self_ssm=new_self, cross_ssm=new_cross)
