"""SepMamba: a waveform U-Net with bidirectional Mamba layers (and its causal variant).

Paper: Avenstrup et al., "SepMamba: State-space models for speaker separation using Mamba",
arXiv 2410.20997 (ICASSP 2025); code itsmeeandrew/SepMamba ``src/models/SepMamba.py`` and
``SepMambaCausal.py``. See docs/sepmamba.md.

What it computes, for ``mix [B, T]`` (8 kHz); channels ``c0, c1, c2 = dim, 2 dim, 4 dim``::

    down_i:  x = MambaLayer(relu(Conv1d(c_{i-1} -> c_i, k=16, s=2, bias, no padding)(x)))   i = 0, 1, 2
             (skips: the outputs of down_0 and down_1)
    up_0/1:  x = relu(ConvTranspose1d(c -> c/2, k=16, s=2, bias)(x)), zero-padded on the right to the skip
             x = MambaLayer(relu(Conv1x1(c -> c/2)(concat[skip, x])))
    out      = ConvTranspose1d(dim -> S, k=16, s=2, bias)(x)       # no activation, no masking

    MambaLayer(x) = F(x) + flip(G(flip(x)))    F, G: independent stacks of ``num_blocks`` pre-LayerNorm
                                               (eps 1e-5, with bias) Mamba blocks returning h + residual,
                                               no final norm; out_proj rescaled by 1/sqrt(num_blocks).
    causal:       MambaLayer(x) = F(x)          (no backward stack; the yaml doubles num_blocks)

The U-Net itself yields ``T' = 2 L1 + 14`` samples with ``L1 = (T - 16) // 2 + 1``, i.e. ``T`` or ``T - 1``;
the original training loop crops the references to ``T'``. Here the output is zero-padded to ``T``
(:func:`valid_length` gives ``T'`` for callers that want the original cropping). Input ``[B, T]`` float with
``T >= 106`` (the deepest level needs one frame); output ``[B, S, T]``.

With ``lengths`` (int32 ``[B]``, samples, each ``>= 106``) row b is a right-padded signal: every level counts its
frames from that length (``(n - k) // s + 1``), its MambaLayer runs within them (the backward stack reverses
each row within its length), each transposed-conv output is zeroed past ``(n - 1) s + k`` where the unpadded
call zero-pads it to the skip (and the signal), and samples ``>= lengths[b]`` come out zero: the first
``lengths[b]`` samples equal the unpadded call's.

**Look-ahead of the causal variant.** The Mamba stacks are causal, but the convolutions are unpadded
(a frame at level i sees the next input samples up to its window end) and the transposed convolutions
spread a frame forwards. Output sample t depends on input samples up to ``t + LOOKAHEAD`` with
``LOOKAHEAD = 105`` samples (13.1 ms at 8 kHz) for k=16, s=2, three levels. The look-ahead of sample t
is ``105 - (t mod 8)`` away from the end of the signal, so the bound is attained (non-zero gradient) at
``t = 0 mod 8``, and the gradient with respect to every later sample is exactly zero. Measured from gradients in tests/models/test_sepmamba.py; the formula in :func:`causal_lookahead`.

Size presets (docs/sepmamba.md; [SM] conf/model/*.yaml and README):

============  ===  ==========  ==========  ============================================
preset        dim  num_blocks  params      reported (SI-SNRi / SI-SDRi / SDRi, params)
============  ===  ==========  ==========  ============================================
S             64   4           7,253,826   21.2 / 21.2 / 21.4 dB, 7.2M
M             128  3           22,249,090  22.7 / 22.7 / 22.9 dB, 22M
S causal      64   8           7,253,826   (paper only)
M causal      128  6           22,249,090  (paper only)
============  ===  ==========  ==========  ============================================

Parameter paths: ``down.{i}.conv1d.*``, ``down.{i}.mamba_layer.{forward,backward}_mamba_block.layers.{j}.{norm,
mixer}.*`` (torch: ``…_mamba_block.mamba_blocks.{j}.…``), ``up.{i}.convT1d.*`` (weight ``[c_in, c_out, 16]``),
``up.{i}.conv1d_fusion.*``, ``decoder.*`` (weight ``[dim, S, 16]``).
"""

from __future__ import annotations

import dataclasses
from typing import Any, no_type_check

import jax
import jax.numpy as jnp
from flax import nnx

from mamba_jax.layers.blocks import MambaStack
from mamba_jax.layers.mamba import MambaConfig, MambaState
from mamba_jax.layers.precision import compute_dtype
from mamba_jax.layers.torch_conv import Conv1d, ConvTranspose1d
from mamba_jax.layers.waveform import CheckFinite, check_waveform, fit_length
from mamba_jax.models import config_from
from mamba_jax.ops.padding import as_lengths, conv_lengths, mask_padding, reverse_padded
from mamba_jax.ops.selective_scan import Impl
from mamba_jax.typing import Array, Float, Int

TASK = "separation"
LEVELS = 3

StreamState = dict[str, Any]  # SepMamba.init_stream_state / stream_step (causal variant)


@dataclasses.dataclass(frozen=True)
class SepMambaConfig:
    """Hyperparameters; defaults are the S preset."""

    dim: int = 64
    num_blocks: int = 4
    causal: bool = False
    num_spks: int = 2
    kernel_size: int = 16
    stride: int = 2
    d_state: int = 16
    d_conv: int = 4
    expand: int = 2
    norm_eps: float = 1e-5
    scan_impl: Impl = "auto"
    dtype: str = "fp32"  # Mamba mixers' matmul inputs: 'fp32' | 'bf16' (params, norms, convs, scan, state stay fp32)
    check_finite: CheckFinite = "eager"

    def mamba(self, d_model: int) -> MambaConfig:
        return MambaConfig(d_model=d_model, d_state=self.d_state, d_conv=self.d_conv, expand=self.expand)


PRESETS = {
    "s": SepMambaConfig(dim=64, num_blocks=4),
    "m": SepMambaConfig(dim=128, num_blocks=3),
    "s_causal": SepMambaConfig(dim=64, num_blocks=8, causal=True),
    "m_causal": SepMambaConfig(dim=128, num_blocks=6, causal=True),
}


def min_length(cfg: SepMambaConfig) -> int:
    """Smallest T for which the deepest level has one frame (106 for k=16, s=2)."""
    need = cfg.kernel_size  # frames needed at level 1 (input of the last down conv)
    for _ in range(LEVELS - 1):
        need = (need - 1) * cfg.stride + cfg.kernel_size
    return need


def valid_length(cfg: SepMambaConfig, length: int) -> int:
    """Samples the original network outputs before our zero-padding to ``length``."""
    l1 = (length - cfg.kernel_size) // cfg.stride + 1
    return (l1 - 1) * cfg.stride + cfg.kernel_size


def causal_lookahead(cfg: SepMambaConfig) -> int:
    """Worst-case look-ahead (samples) of the causal variant, ``(k - 1)(1 + s + s^2)`` = 105 for k=16, s=2.

    A level-i frame ends (k - 1) s^i samples after its start (down convs) and the transposed convs place the
    first output of a frame at the frame's own position, so the reaches add; attained at t = 0 mod s^3."""
    return sum((cfg.kernel_size - 1) * cfg.stride ** i for i in range(LEVELS))


class MambaLayer(nnx.Module):
    """``[B, L, D] -> [B, L, D]``: forward stack plus flipped backward stack, summed (forward only if causal)."""

    def __init__(self, cfg: SepMambaConfig, dim: int, *, rngs: nnx.Rngs):
        kw = dict(mixer="mamba", norm="layer", norm_eps=cfg.norm_eps, final_norm=False, scan_impl=cfg.scan_impl,
                  dtype=compute_dtype(cfg.dtype),
                  rngs=rngs)
        self.forward_mamba_block = MambaStack(cfg.mamba(dim), cfg.num_blocks, **kw)
        self.backward_mamba_block = None if cfg.causal else MambaStack(cfg.mamba(dim), cfg.num_blocks, **kw)

    def __call__(self, x: Float[Array, "B L D"], lengths: Int[Array, "B"] | None = None) -> Float[Array, "B L D"]:
        """``lengths``: valid frames per row (the backward stack reverses within them; padded outputs are 0)."""
        y = self.forward_mamba_block(x, lengths)
        if self.backward_mamba_block is not None:
            y = y + reverse_padded(self.backward_mamba_block(reverse_padded(x, lengths), lengths), lengths)
        return y

    def init_state(self, batch: int) -> list[MambaState]:
        """Zero states of the causal layer (the forward stack); the bidirectional layer has none."""
        if self.backward_mamba_block is not None:
            raise TypeError("the bidirectional MambaLayer has no streaming form (its backward stack needs the "
                            "whole sequence)")
        return self.forward_mamba_block.init_state(batch)

    def call_with_state(self, x: Float[Array, "B L D"], states: list[MambaState]
                        ) -> tuple[Float[Array, "B L D"], list[MambaState]]:
        """The causal layer on the next ``L >= 0`` frames given the states after the previous ones."""
        if x.shape[1] == 0:  # nothing new at this level: the states stay
            return x, states
        return self.forward_mamba_block.call_with_state(x, states)


class DownSample(nnx.Module):
    def __init__(self, cfg: SepMambaConfig, c_in: int, c_out: int, *, rngs: nnx.Rngs):
        self.conv1d = Conv1d(c_in, c_out, cfg.kernel_size, stride=cfg.stride, rngs=rngs)
        self.mamba_layer = MambaLayer(cfg, c_out, rngs=rngs)

    def __call__(self, x: Float[Array, "B L Ci"], lengths: Int[Array, "B"] | None = None) -> Float[Array, "B L2 Co"]:
        """``lengths``: valid output frames per row."""
        return self.mamba_layer(jax.nn.relu(self.conv1d(x)), lengths)


class UpSample(nnx.Module):
    def __init__(self, cfg: SepMambaConfig, c_in: int, c_out: int, *, rngs: nnx.Rngs):
        self.convT1d = ConvTranspose1d(c_in, c_out, cfg.kernel_size, stride=cfg.stride, rngs=rngs)
        self.conv1d_fusion = Conv1d(c_in, c_out, 1, rngs=rngs)
        self.mamba_layer = MambaLayer(cfg, c_out, rngs=rngs)

    def __call__(self, x: Float[Array, "B L Ci"], skip: Float[Array, "B L2 Co"], lengths: Int[Array, "B"] | None = None,
                 skip_lengths: Int[Array, "B"] | None = None) -> Float[Array, "B L2 Co"]:
        """``lengths`` / ``skip_lengths``: valid frames per row of ``x`` (zero beyond) and of ``skip``."""
        x = jax.nn.relu(self.convT1d(x))  # [B, 2L + 14, Co] <= skip length
        x = jnp.pad(x, ((0, 0), (0, skip.shape[1] - x.shape[1]), (0, 0)))
        if lengths is not None:  # the unpadded call's transposed conv ends at (n - 1) s + k, then zeros
            x = mask_padding(x, (lengths - 1) * self.convT1d.stride[0] + self.convT1d.kernel_size[0])
        x = jnp.concatenate([skip, x], axis=-1)  # skip first
        return self.mamba_layer(jax.nn.relu(self.conv1d_fusion(x)), skip_lengths)


class SepMamba(nnx.Module):
    """``model(mix [B, T]) -> [B, S, T]``; see the module docstring."""

    def __init__(self, cfg: SepMambaConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        d = cfg.dim
        self.down = nnx.List([DownSample(cfg, 1, d, rngs=rngs), DownSample(cfg, d, 2 * d, rngs=rngs),
                              DownSample(cfg, 2 * d, 4 * d, rngs=rngs)])
        self.up = nnx.List([UpSample(cfg, 4 * d, 2 * d, rngs=rngs), UpSample(cfg, 2 * d, d, rngs=rngs)])
        self.decoder = ConvTranspose1d(d, cfg.num_spks, cfg.kernel_size, stride=cfg.stride, rngs=rngs)

    @property
    def min_length(self) -> int:
        return min_length(self.cfg)

    # Not run-time checked (tests/conftest.py): it checks its input itself, with the user-facing ValueError that
    # tests/models/test_bad_inputs.py expects; the layers it calls are checked.
    @no_type_check
    def __call__(self, mix: Float[Array, "B T"], lengths: Int[Array, "B"] | None = None) -> Float[Array, "B S T"]:
        """``mix [B, T]`` -> ``[B, S, T]``; ``lengths`` (samples) as in the module docstring."""
        name = "SepMambaCausal" if self.cfg.causal else "SepMamba"
        check_waveform(mix, model=name, min_len=self.min_length, check_finite=self.cfg.check_finite)
        cfg = self.cfg
        lengths = as_lengths(lengths, mix.shape[0])
        x = mix[..., None]  # [B, T, 1]
        skips, n = [], lengths
        for down in self.down:
            n = None if n is None else conv_lengths(n, cfg.kernel_size, cfg.stride)
            x = down(x, n)
            skips.append((x, n))
        skips.pop()
        for up in self.up:
            skip, n_skip = skips.pop()
            x, n = up(x, skip, n, n_skip), n_skip
        y = fit_length(jnp.swapaxes(self.decoder(x), 1, 2), mix.shape[1])  # [B, S, T]
        if lengths is None:
            return y
        return mask_padding(y, jnp.minimum((n - 1) * cfg.stride + cfg.kernel_size, lengths), axis=-1)

    # ---- streaming (causal variant; driven chunk by chunk by mamba_jax/inference/streaming.py) ---------------
    # The state carries, for every layer, exactly what the offline pass would have in memory at that point:
    # * down level i: the last ``k - s`` inputs of the strided conv not yet consumed by a frame, and the
    #   conv/SSM states of the causal Mamba stack (``MambaLayer.call_with_state``);
    # * the skip connections: the down-level outputs waiting for the up path to reach them (a FIFO);
    # * up level j and the decoder: the last ``k/s - 1`` input frames of the transposed conv (each output
    #   position sums the frames that overlap it, so those frames are all that is needed), and the Mamba states.

    @property
    def warmup_samples(self) -> int:
        """Input samples after which every down level holds exactly ``k - s`` unconsumed inputs and no frame
        has reached the deepest level: ``(k - s)(1 + s + ... + s^{levels-1})`` (98 for k=16, s=2, 3 levels)."""
        k, s = self.cfg.kernel_size, self.cfg.stride
        return sum((k - s) * s ** i for i in range(len(self.down)))

    @property
    def group_samples(self) -> int:
        """Input samples per deepest-level frame, ``s^levels`` (8): the unit in which output becomes final."""
        return self.cfg.stride ** len(self.down)

    def init_stream_state(self) -> StreamState:
        """State before the first sample (batch 1): empty conv buffers and skip FIFOs, zero transposed-conv
        history (a frame that does not exist contributes nothing), zero Mamba states."""
        hist = self.cfg.kernel_size // self.cfg.stride - 1

        def empty(c):
            return jnp.zeros((1, 0, c), jnp.float32)

        return dict(
            down_buf=[empty(d.conv1d.weight.shape[1]) for d in self.down],
            down_ssm=[d.mamba_layer.init_state(1) for d in self.down],
            fifo=[empty(d.conv1d.weight.shape[0]) for d in list(self.down)[:-1]],
            up_hist=[jnp.zeros((1, hist, u.convT1d.weight.shape[0]), jnp.float32) for u in self.up],
            up_ssm=[u.mamba_layer.init_state(1) for u in self.up],
            dec_hist=jnp.zeros((1, hist, self.decoder.weight.shape[0]), jnp.float32),
        )

    def stream_step(self, st: StreamState, x: Float[Array, "1 n 1"], *, final: bool, remaining: int
                    ) -> tuple[StreamState, Float[Array, "1 m S"]]:
        """Feeds ``x`` through every level; returns the new state and the output samples that are now final.

        ``final=False``: ``x`` must keep the schedule of mamba_jax/inference/streaming.py (``warmup_samples``
        from the initial state, then whole groups of ``group_samples``), which makes every buffer length
        constant. ``final=True``: the end of the signal; the transposed convs are evaluated up to their last
        output and zero-padded like the offline model, and the output is fitted to ``remaining`` samples.
        """
        k, s = self.cfg.kernel_size, self.cfg.stride
        hist = k // s - 1
        st = dict(st, down_buf=list(st["down_buf"]), down_ssm=list(st["down_ssm"]), fifo=list(st["fifo"]),
                  up_hist=list(st["up_hist"]), up_ssm=list(st["up_ssm"]))
        h, skips = x, []
        for i, down in enumerate(self.down):
            buf = jnp.concatenate([st["down_buf"][i], h], axis=1)  # [1, unconsumed + new, Ci]
            n = (buf.shape[1] - k) // s + 1 if buf.shape[1] >= k else 0
            frames = (jax.nn.relu(down.conv1d(buf)) if n else
                      jnp.zeros((1, 0, down.conv1d.weight.shape[0]), buf.dtype))  # [1, n, Co]
            st["down_buf"][i] = buf[:, s * n:]  # the next frame starts at s * n
            h, st["down_ssm"][i] = down.mamba_layer.call_with_state(frames, st["down_ssm"][i])
            skips.append(h)
        skips.pop()

        def up_conv(conv, prev, new):
            """Transposed conv of the frames ``new`` given the previous ``hist`` frames ``prev``: the positions
            that no later frame reaches (all positions to the end when ``final``)."""
            full = jnp.concatenate([prev, new], axis=1)  # [1, hist + n, Ci]
            y = conv(full)[:, s * hist:]  # position s*hist of `full` is the first one `prev[0]` does not finish
            return (y if final else y[:, :s * new.shape[1]]), full[:, full.shape[1] - hist:]

        for j, up in enumerate(self.up):
            lvl = len(st["fifo"]) - 1 - j
            y, st["up_hist"][j] = up_conv(up.convT1d, st["up_hist"][j], h)
            y = jax.nn.relu(y)
            fifo = jnp.concatenate([st["fifo"][lvl], skips[lvl]], axis=1)  # skip frames not yet joined
            m = fifo.shape[1] if final else y.shape[1]
            y = fit_length(y, m, axis=1)  # the offline model zero-pads the transposed-conv output to the skip length
            skip, st["fifo"][lvl] = fifo[:, :m], fifo[:, m:]
            z = jax.nn.relu(up.conv1d_fusion(jnp.concatenate([skip, y], axis=-1))) if m else y  # [1, m, Co]
            h, st["up_ssm"][j] = up.mamba_layer.call_with_state(z, st["up_ssm"][j])
        out, st["dec_hist"] = up_conv(self.decoder, st["dec_hist"], h)  # [1, m, S]
        if final:
            out = fit_length(out, remaining, axis=1)
        return st, out


def build(model_cfg, *, rngs: nnx.Rngs) -> SepMamba:
    """``config.model`` -> model (``causal=True`` gives SepMambaCausal)."""
    return SepMamba(config_from(SepMambaConfig, model_cfg, model="sepmamba"), rngs=rngs)
