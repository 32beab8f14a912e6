"""SPMamba: TF-GridNet with each BLSTM replaced by a bidirectional Mamba (two independent stacks, concat).

Paper: Li, Chen, "SPMamba: State-space model is all you need in speech separation", arXiv 2404.02063;
code JusperLee/SPMamba ``look2hear/models/SPMamba.py``, ``configs/spmamba-wsj0.yml``. See docs/spmamba.md.

What it computes, for ``mix [B, T]`` (8 kHz)::

    sigma = std(mix, unbiased) per example;  x = mix / sigma
    X     = STFT(x)  (n_fft = win, hop, periodic Hann, center/reflect)          # [B, L, F] complex
    h     = GroupNorm(1, D)(Conv2d(2 -> D, 3x3, pad 1)([Re X, Im X]))          # [B, L, F, D]
    n_layers x GridNetBlock:
        intra (along F): h += ConvT1d(256 -> D, k=8)(BiMamba(unfold_k8(LN_C(h))))   (BiMamba: 128 -> 256)
        inter (along L): the same along frames
        attention: H heads, Q/K = LN_CF(PReLU(1x1 conv D -> E)), V = LN_CF(PReLU(1x1 D -> D/H)),
                   softmax(Q K^T / sqrt(E F)) V over frames, concat heads, LN_CF(PReLU(1x1 D -> D)), + residual
    Y     = ConvTranspose2d(D -> 2S, 3x3, pad 1)(h)  as S complex spectra
    out   = sigma * iSTFT(Y_s, length=T)                                      # [B, S, T]

BiMamba here is SPMamba's ``MambaBlock``: one pre-RMSNorm Mamba block (expand 4) on the sequence and an
independent one on the reversed sequence, each returning h + residual, concatenated (forward first).
``E = ceil(approx_qk_dim / F)``. Input ``[B, T]`` float with ``T >= (emb_ks - 1) * hop`` (the GridNet unfold
needs ``emb_ks`` frames: 448 samples for the WSJ0 config) and non-constant (its std divides the input);
output ``[B, S, T]``.

With ``lengths`` (int32 ``[B]``, samples) row b is a right-padded signal of ``n = lengths[b]`` samples, computed
as the unpadded call does: sigma over its ``n`` samples, the STFT reflected at ``n`` with ``L_b = 1 + n // hop``
frames, frames ``>= L_b`` zeroed wherever the unpadded call has none (before each 3x3 conv and each block), the
first GroupNorm over valid frames, the inter-frame BiMamba within the valid unfold windows, attention keys
``>= L_b`` masked, and the iSTFT of the valid frames with their own envelope; samples ``>= n`` come out zero.

Size presets (docs/spmamba.md; [SP] configs/*.yml):

==========  =====  ===  ==  =========  ==========  ==================================
config      n_fft  hop  E   params     reported    WSJ0-2mix SDRi / SI-SNRi (paper)
==========  =====  ===  ==  =========  ==========  ==================================
wsj0        256    64   4   6,094,498  6.14M (*)   22.7 / 22.5 dB
nfft512     512    128  2   6,141,826  6.14M       (Echo2Mix config)
==========  =====  ===  ==  =========  ==========  ==================================

(*) the paper's 6.14M is the n_fft 512 model's count; the WSJ0 config has 6,094,498.

Parameter paths: ``conv.{0,1}.*``, ``blocks.{b}.{intra,inter}_norm.{gamma,beta}``,
``blocks.{b}.{intra,inter}_mamba.{forward,backward}_blocks.layers.0.{norm,mixer}.*`` (torch:
``…_blocks.0.…``), ``blocks.{b}.{intra,inter}_linear.*``, ``blocks.{b}.attn_conv_{Q,K,V}.{h}.{conv,act,norm}.*``
(torch: ``attn_conv_Q_{h}.{0,1,2}.*``), ``blocks.{b}.attn_concat_proj.{conv,act,norm}.*``, ``deconv.*``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import no_type_check

import jax
import jax.numpy as jnp
from flax import nnx

from mamba_jax.layers.blocks import MambaStack
from mamba_jax.layers.mamba import MambaConfig
from mamba_jax.layers.precision import compute_dtype
from mamba_jax.layers.sep_norm import ChannelFreqLayerNorm, ChannelLayerNorm, GroupNorm1, PReLU
from mamba_jax.layers.stft import istft, n_frames, stft
from mamba_jax.layers.torch_conv import Conv2d, ConvTranspose1d, ConvTranspose2d
from mamba_jax.layers.waveform import CheckFinite, check_waveform
from mamba_jax.models import config_from
from mamba_jax.ops.padding import as_lengths, mask_padding, reverse_padded, valid_mask
from mamba_jax.ops.selective_scan import Impl
from mamba_jax.typing import Array, Float, Int

TASK = "separation"


@dataclasses.dataclass(frozen=True)
class SPMambaConfig:
    """Hyperparameters; defaults are configs/spmamba-wsj0.yml."""

    num_spks: int = 2
    n_fft: int = 256
    hop: int = 64
    n_layers: int = 6
    attn_n_head: int = 4
    attn_approx_qk_dim: int = 512
    emb_dim: int = 16
    emb_ks: int = 8
    emb_hs: int = 1
    eps: float = 1e-5
    mamba_expand: int = 4
    d_state: int = 16
    d_conv: int = 4
    norm_eps: float = 1e-5  # RMSNorm in the Mamba blocks
    scan_impl: Impl = "auto"
    dtype: str = "fp32"  # Mamba mixers' matmul inputs: 'fp32' | 'bf16' (params, norms, convs, scan, state stay fp32)
    check_finite: CheckFinite = "eager"

    @property
    def n_freqs(self) -> int:
        return self.n_fft // 2 + 1

    @property
    def qk_dim(self) -> int:
        return math.ceil(self.attn_approx_qk_dim / self.n_freqs)

    @property
    def mamba(self) -> MambaConfig:
        return MambaConfig(d_model=self.emb_dim * self.emb_ks, d_state=self.d_state, d_conv=self.d_conv,
                           expand=self.mamba_expand)


PRESETS = {
    "wsj0": SPMambaConfig(),
    "nfft512": SPMambaConfig(n_fft=512, hop=128),
}


class BiMambaConcat(nnx.Module):
    """SPMamba ``MambaBlock``: ``[B, L, D] -> [B, L, 2D]`` = concat[F(x), flip(G(flip(x)))]."""

    def __init__(self, cfg: SPMambaConfig, *, rngs: nnx.Rngs):
        kw = dict(mixer="mamba", norm="rms", norm_eps=cfg.norm_eps, final_norm=False, scan_impl=cfg.scan_impl,
                  dtype=compute_dtype(cfg.dtype),
                  rngs=rngs)
        self.forward_blocks = MambaStack(cfg.mamba, 1, **kw)
        self.backward_blocks = MambaStack(cfg.mamba, 1, **kw)

    def __call__(self, x: Float[Array, "B L D"], lengths: Int[Array, "B"] | None = None) -> Float[Array, "B L D2"]:
        """``lengths``: valid steps per row (the backward stack reverses within them; padded outputs are 0)."""
        y_b = reverse_padded(self.backward_blocks(reverse_padded(x, lengths), lengths), lengths)
        return jnp.concatenate([self.forward_blocks(x, lengths), y_b], axis=-1)


class ConvAct(nnx.Module):
    """``Conv2d 1x1 -> PReLU -> LayerNormalization4DCF`` (one attention projection)."""

    def __init__(self, c_in: int, c_out: int, n_freqs: int, eps: float, *, rngs: nnx.Rngs):
        self.conv = Conv2d(c_in, c_out, 1, rngs=rngs)
        self.act = PReLU()
        self.norm = ChannelFreqLayerNorm(c_out, n_freqs, eps=eps)

    def __call__(self, x: Float[Array, "B L F Ci"]) -> Float[Array, "B L F Co"]:
        return self.norm(self.act(self.conv(x)))


def unfold(x: Float[Array, "B L Ch"], k: int, hop: int) -> Float[Array, "B Lw ChK"]:
    """torch ``F.unfold`` along L: window w holds ``x[w*hop + j, c]`` at index ``c * k + j``."""
    n_win = (x.shape[1] - k) // hop + 1
    idx = (jnp.arange(n_win) * hop)[:, None] + jnp.arange(k)[None, :]  # [W, k]
    win = x[:, idx, :]  # [B, W, k, C]
    return jnp.swapaxes(win, 2, 3).reshape(x.shape[0], n_win, -1)  # [B, W, C*k], channel-major


class GridNetBlock(nnx.Module):
    """TF-GridNet block with BiMamba sequence models, on ``[B, T, F, D]`` (frames, freqs, channels)."""

    def __init__(self, cfg: SPMambaConfig, *, rngs: nnx.Rngs):
        d, ks, hs, nf = cfg.emb_dim, cfg.emb_ks, cfg.emb_hs, cfg.n_freqs
        if d % cfg.attn_n_head:
            raise ValueError(f"emb_dim {d} must be divisible by attn_n_head {cfg.attn_n_head}")
        self.cfg = cfg
        self.intra_norm = ChannelLayerNorm(d, eps=cfg.eps)
        self.intra_mamba = BiMambaConcat(cfg, rngs=rngs)
        self.intra_linear = ConvTranspose1d(2 * d * ks, d, ks, stride=hs, rngs=rngs)
        self.inter_norm = ChannelLayerNorm(d, eps=cfg.eps)
        self.inter_mamba = BiMambaConcat(cfg, rngs=rngs)
        self.inter_linear = ConvTranspose1d(2 * d * ks, d, ks, stride=hs, rngs=rngs)
        h, e = cfg.attn_n_head, cfg.qk_dim
        self.attn_conv_Q = nnx.List([ConvAct(d, e, nf, cfg.eps, rngs=rngs) for _ in range(h)])
        self.attn_conv_K = nnx.List([ConvAct(d, e, nf, cfg.eps, rngs=rngs) for _ in range(h)])
        self.attn_conv_V = nnx.List([ConvAct(d, d // h, nf, cfg.eps, rngs=rngs) for _ in range(h)])
        self.attn_concat_proj = ConvAct(d, d, nf, cfg.eps, rngs=rngs)

    def _seq(self, x: Float[Array, "B L D"], norm, mamba, linear, windows: Int[Array, "B"] | None = None
             ) -> Float[Array, "B L D"]:
        """Residual sequence branch: norm -> unfold -> BiMamba -> ConvTranspose1d (back to L); ``windows``:
        valid unfold windows per row (the BiMamba zeroes the others, so they add nothing)."""
        y = unfold(norm(x), self.cfg.emb_ks, self.cfg.emb_hs)  # [B, W, D*ks]
        return linear(mamba(y) if windows is None else mamba(y, windows)) + x  # [B, L, D]

    def __call__(self, x: Float[Array, "B L F D"], frames: Int[Array, "B"] | None = None) -> Float[Array, "B L F D"]:
        """``frames``: valid frames per row (SPMamba docstring); the others stay out of the valid ones."""
        cfg = self.cfg
        b, t0, f0, d = x.shape
        ks, hs = cfg.emb_ks, cfg.emb_hs
        t = math.ceil((t0 - ks) / hs) * hs + ks
        f = math.ceil((f0 - ks) / hs) * hs + ks
        windows = None
        if frames is not None:
            x = mask_padding(x, frames)  # the unpadded call has no frame there (or its zero padding)
            # the unpadded call pads to t_b = ceil((L_b - ks) / hs) hs + ks frames: (t_b - ks) // hs + 1 windows
            windows = -(-(frames - ks) // hs) + 1
        x = jnp.pad(x, ((0, 0), (0, t - t0), (0, f - f0), (0, 0)))
        # intra: along frequency, every frame a sequence
        y = self._seq(x.reshape(b * t, f, d), self.intra_norm, self.intra_mamba, self.intra_linear)
        y = y.reshape(b, t, f, d)
        # inter: along time, every frequency a sequence
        z = jnp.swapaxes(y, 1, 2).reshape(b * f, t, d)
        z = self._seq(z, self.inter_norm, self.inter_mamba, self.inter_linear,
                      None if windows is None else jnp.repeat(windows, f))  # row b*F + j: windows[b]
        z = jnp.swapaxes(z.reshape(b, f, t, d), 1, 2)[:, :t0, :f0]  # [B, T, F, D]
        # full-band self-attention over frames, one head per projection set
        heads = []
        for q_mod, k_mod, v_mod in zip(self.attn_conv_Q, self.attn_conv_K, self.attn_conv_V, strict=True):
            q = q_mod(z).reshape(b, t0, -1)  # [B, T, F*E]
            k = k_mod(z).reshape(b, t0, -1)
            v = v_mod(z)  # [B, T, F, Dh]
            scores = jnp.einsum("bqe,bke->bqk", q, k) / math.sqrt(q.shape[-1])  # [B, T, T]
            if frames is not None:  # keys the unpadded call does not have
                scores = jnp.where(valid_mask(frames, t0)[:, None, :], scores, -jnp.inf)
            attn = jax.nn.softmax(scores, axis=-1)
            heads.append(jnp.einsum("bqk,bke->bqe", attn, v.reshape(b, t0, -1)).reshape(v.shape))
        out = self.attn_concat_proj(jnp.concatenate(heads, axis=-1))  # head-major channels
        return out + z


class SPMamba(nnx.Module):
    """``model(mix [B, T]) -> [B, S, T]``; see the module docstring."""

    def __init__(self, cfg: SPMambaConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        d = cfg.emb_dim
        self.conv = nnx.List([Conv2d(2, d, 3, padding=1, rngs=rngs), GroupNorm1(d, eps=cfg.eps)])
        self.blocks = nnx.List([GridNetBlock(cfg, rngs=rngs) for _ in range(cfg.n_layers)])
        self.deconv = ConvTranspose2d(d, 2 * cfg.num_spks, 3, padding=1, rngs=rngs)

    @property
    def min_length(self) -> int:
        """Smallest T with ``emb_ks`` STFT frames (and more than n_fft/2 samples for the reflect padding)."""
        return max((self.cfg.emb_ks - 1) * self.cfg.hop, self.cfg.n_fft // 2 + 1)

    # Not run-time checked (tests/conftest.py): it checks its input itself, with the user-facing ValueError that
    # tests/models/test_bad_inputs.py expects; the layers it calls are checked.
    @no_type_check
    def __call__(self, mix: Float[Array, "B T"], lengths: Int[Array, "B"] | None = None) -> Float[Array, "B S T"]:
        """``mix [B, T]`` -> ``[B, S, T]``; ``lengths`` (samples) as in the module docstring."""
        cfg = self.cfg
        check_waveform(mix, model="SPMamba", min_len=self.min_length, check_finite=cfg.check_finite)
        b, length = mix.shape
        assert n_frames(length, cfg.hop) >= cfg.emb_ks
        lengths = as_lengths(lengths, b)
        if lengths is None:
            sigma = jnp.std(mix.astype(jnp.float32), axis=1, ddof=1, keepdims=True)  # [B, 1], torch.std (unbiased)
            frames = None
        else:
            sigma = _masked_std(mix, lengths)
            frames = 1 + lengths // cfg.hop
        if cfg.check_finite != "off" and not isinstance(sigma, jax.core.Tracer) and not bool(jnp.all(sigma > 0)):
            raise ValueError("SPMamba: an input waveform is constant (zero std); the model divides by its std")
        spec = stft(mix / sigma, cfg.n_fft, cfg.hop, lengths)  # [B, L, F]
        h = jnp.stack([spec.real, spec.imag], axis=-1)  # [B, L, F, 2]
        if frames is None:
            h = self.conv[1](self.conv[0](h))  # [B, L, F, D]
        else:
            h = self.conv[0](mask_padding(h, frames))
            h = self.conv[1](h, jnp.broadcast_to(valid_mask(frames, h.shape[1])[:, :, None], h.shape[:3]))
        for block in self.blocks:
            h = block(h, frames)
        y = self.deconv(mask_padding(h, frames))  # [B, L, F, 2S], channel = 2 s + (re, im)
        l, f = y.shape[1], y.shape[2]
        y = jnp.moveaxis(y.reshape(b, l, f, cfg.num_spks, 2), 3, 1)  # [B, S, L, F, 2]
        y = jax.lax.complex(y[..., 0], y[..., 1]).reshape(b * cfg.num_spks, l, f)
        rows = None if lengths is None else jnp.repeat(lengths, cfg.num_spks)  # row b*S + s: lengths[b]
        wav = istft(y, cfg.n_fft, cfg.hop, length, rows).reshape(b, cfg.num_spks, length)
        return wav * sigma[:, :, None]


def _masked_std(mix: Float[Array, "B T"], lengths: Int[Array, "B"]) -> Float[Array, "B 1"]:
    """torch.std (unbiased) of each row's first ``lengths[b]`` samples, ``[B, 1]`` fp32."""
    x = mix.astype(jnp.float32)
    m = valid_mask(lengths, x.shape[1]).astype(jnp.float32)  # [B, T]
    n = lengths.astype(jnp.float32)[:, None]
    mean = jnp.sum(x * m, axis=1, keepdims=True) / n
    return jnp.sqrt(jnp.sum(jnp.square(x - mean) * m, axis=1, keepdims=True) / (n - 1))


def build(model_cfg, *, rngs: nnx.Rngs) -> SPMamba:
    """``config.model`` -> model."""
    return SPMamba(config_from(SPMambaConfig, model_cfg, model="spmamba"), rngs=rngs)
