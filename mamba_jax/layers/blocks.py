"""Residual Mamba blocks and stacks (mamba_ssm ``Block`` / ``MixerModel`` semantics) and their variants.

``Block`` is the "add -> norm -> mixer" form (docs/mamba.md)::

    residual = h + residual        (residual = h for the first block)
    h        = mixer(norm(residual))

and a stack ends with ``norm_f(h + residual)`` when it has a final norm, else returns ``h + residual``.
The Vim "v2" bidirectional mixer lives in ``layers.mamba``; SepMamba's and SPMamba's pairs of independent
stacks (the second on the time-reversed input) live in their model files (``MambaLayer``, ``BiMambaConcat``).

Every ``__call__`` takes optional ``lengths`` (int32 ``[B]``) of a right-padded batch: valid positions then
equal the unpadded call whatever the padding holds (reversals happen within each row's length) and padded
positions of the output are zero. Without ``lengths`` nothing changes.
"""

from __future__ import annotations

from typing import Literal

from flax import nnx

from mamba_jax.layers.mamba import BiMambaV2, Mamba, MambaConfig, MambaState
from mamba_jax.layers.norm import make_norm
from mamba_jax.ops.padding import mask_padding
from mamba_jax.ops.selective_scan import Impl
from mamba_jax.typing import Array, Float, Int

MixerKind = Literal["mamba", "bimamba_v2"]


class Block(nnx.Module):
    """Pre-norm residual block. Keys: ``norm.*``, ``mixer.*``."""

    def __init__(self, cfg: MambaConfig, *, mixer: MixerKind = "mamba", norm: str = "rms", norm_eps: float = 1e-5,
                 n_layer: int = 1, dtype=None, scan_impl: Impl = "auto", rngs: nnx.Rngs):
        self.norm = make_norm(norm, cfg.d_model, eps=norm_eps)
        mixer_cls = {"mamba": Mamba, "bimamba_v2": BiMambaV2}[mixer]
        self.mixer = mixer_cls(cfg, n_layer=n_layer, dtype=dtype, scan_impl=scan_impl, rngs=rngs)

    def __call__(self, h: Float[Array, "B L D"], residual: Float[Array, "B L D"] | None,
                 lengths: Int[Array, "B"] | None = None, *, impl: Impl | None = None
                 ) -> tuple[Float[Array, "B L D"], Float[Array, "B L D"]]:
        residual = h if residual is None else h + residual
        return self.mixer(self.norm(residual), lengths, impl=impl), residual

    def call_with_state(self, h, residual, state: MambaState, *, impl: Impl | None = None):
        residual = h if residual is None else h + residual
        h, state = self.mixer.call_with_state(self.norm(residual), state, impl=impl)
        return h, residual, state

    def step(self, h: Float[Array, "B D"], residual: Float[Array, "B D"] | None, state: MambaState):
        residual = h if residual is None else h + residual
        h, state = self.mixer.step(self.norm(residual), state)
        return h, residual, state


class MambaStack(nnx.Module):
    """``n_layer`` Blocks plus an optional final norm. Keys: ``layers.{i}.*``, ``norm_f.*``.

    ``rescale_n_layer`` (default ``n_layer``) is the n_layer of mamba_ssm's ``_init_weights`` used for the
    ``out_proj`` rescale.
    """

    def __init__(self, cfg: MambaConfig, n_layer: int, *, mixer: MixerKind = "mamba", norm: str = "rms",
                 norm_eps: float = 1e-5, final_norm: bool = True, rescale_n_layer: int | None = None, dtype=None,
                 scan_impl: Impl = "auto", rngs: nnx.Rngs):
        n_rescale = rescale_n_layer or n_layer
        self.layers = nnx.List([
            Block(cfg, mixer=mixer, norm=norm, norm_eps=norm_eps, n_layer=n_rescale, dtype=dtype,
                  scan_impl=scan_impl, rngs=rngs)
            for _ in range(n_layer)
        ])
        self.norm_f = make_norm(norm, cfg.d_model, eps=norm_eps) if final_norm else None

    def _finish(self, h, residual):
        out = h + residual
        return out if self.norm_f is None else self.norm_f(out)

    def __call__(self, x: Float[Array, "B L D"], lengths: Int[Array, "B"] | None = None, *,
                 impl: Impl | None = None) -> Float[Array, "B L D"]:
        h, residual = x, None
        for layer in self.layers:
            h, residual = layer(h, residual, lengths, impl=impl)
        return mask_padding(self._finish(h, residual), lengths)

    def init_state(self, batch: int) -> list[MambaState]:
        """Zero states of every mixer; a stack of bidirectional mixers has none (its reverse scans need the whole
        sequence)."""
        if any(isinstance(layer.mixer, BiMambaV2) for layer in self.layers):
            raise TypeError("a stack of BiMambaV2 mixers is bidirectional: it has no streaming/step form (the "
                            "reverse scan needs the whole sequence)")
        return [layer.mixer.init_state(batch) for layer in self.layers]

    def call_with_state(self, x: Float[Array, "B L D"], states: list[MambaState], *, impl: Impl | None = None
                        ) -> tuple[Float[Array, "B L D"], list[MambaState]]:
        """Chunked causal inference: equals the full call on the concatenation of the chunks."""
        h, residual, new = x, None, []
        for layer, st in zip(self.layers, states, strict=True):
            h, residual, st = layer.call_with_state(h, residual, st, impl=impl)
            new.append(st)
        return self._finish(h, residual), new

    def step(self, x: Float[Array, "B D"], states: list[MambaState]) -> tuple[Float[Array, "B D"], list[MambaState]]:
        h, residual, new = x, None, []
        for layer, st in zip(self.layers, states, strict=True):
            h, residual, st = layer.step(h, residual, st)
            new.append(st)
        return self._finish(h, residual), new
