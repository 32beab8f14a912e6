"""Dual-path Mamba (DPMamba): SpeechBrain's dual-path mask network with BiMamba intra/inter models.

Paper: Jiang, Han, Mesgarani, "Dual-path Mamba: Short and Long-term Bidirectional Selective Structured
State Space Models for Speech Separation", arXiv 2403.18257 (sizes and results as re-reported in
arXiv 2407.09732; code: xi-j/Mamba-TasNet hparams/WSJ0Mix/dpmamba_*.yaml, SpeechBrain 1.0
``dual_path.Dual_Path_Model``). See docs/mamba_tasnet.md.

What it computes, for ``mix [B, T]`` (8 kHz)::

    w     = relu(Conv1d(1 -> M, k=16, s=8, no bias)(mix))            # [B, L, M]
    x     = Conv1x1(M -> M, no bias)(GroupNorm(1, M, eps 1e-8)(w))    # [B, L, M]
    x     = segment(x, K=250, hop 125)                               # [B, C, Lc, M], C chunks
    n_dp x:  intra = GN(intra_mdl(x along Lc)) (+ x if skip_around_intra)
             out   = GN(inter_mdl(intra along C)) + intra            # GN = GroupNorm(1, M) over (C, Lc, M)
    x     = Conv2d 1x1 (M -> S*M, bias)(PReLU(x))  -> overlap-add   # [B*S, L, M]
    x     = Conv1x1(no bias)(tanh(Conv1x1(x)) * sigmoid(Conv1x1(x)))
    masks = relu(x)                                                  # [B, S, L, M]
    out_s = ConvTranspose1d(M -> 1, k=16, s=8, no bias)(w * mask_s), zero-padded to T

intra_mdl / inter_mdl are each one pre-norm BiMamba-v2 block + final RMSNorm (``n_mamba_dp // 2 = 1``),
independent per layer. Input ``[B, T]`` float, ``T >= 16``; output ``[B, S, T]``.

With ``lengths`` (int32 ``[B]``, samples) row b is a right-padded signal of ``lengths[b]`` samples, computed as
the unpadded call does: frames ``L_b = (lengths[b] - 16) // 8 + 1``, the input GroupNorm over those frames,
frames past ``L_b`` zeroed before segmentation (the unpadded call's own zero padding), and the chunks
``C_b = 2 (floor((L_b + K/2) / K) + 1)`` that the unpadded call makes are the first ``C_b`` chunks here
(chunk positions do not depend on L): every GroupNorm counts only them and the inter-chunk BiMamba runs
within them. Samples ``>= lengths[b]`` come out zero.

Size presets ([MT] hparams/WSJ0Mix/dpmamba_*.yaml; computed params, docs/mamba_tasnet.md):

=====  ===  ====  =================  ==========  ========  ==========================
size   N    n_dp  skip_around_intra  params      reported  SI-SNRi / SDRi (paper, dB)
=====  ===  ====  =================  ==========  ========  ==========================
XS     128  8     False              2,265,857   2.3M      19.2 / 19.4
S      256  8     False              8,136,193   8.1M      21.4 / 21.6
M      256  16    True               15,869,441  15.9M     22.6 / 22.7
L      512  16    True               59,788,289  59.8M     23.4 / 23.6
=====  ===  ====  =================  ==========  ========  ==========================

Init: the constructor init of the originals (each intra/inter stack rescales ``out_proj`` by
``1/sqrt(1)``); ``reinit="mt_reset"`` applies [MT]'s training-start ``reset_parameters`` (docs/mamba_tasnet.md).

Parameter paths mirror the state_dicts: ``encoder.conv1d.weight``, ``masknet.{norm.*, conv1d.weight,
dual_mdl.{i}.{intra,inter}_mdl.layers.0.{mixer.*,norm.weight}, dual_mdl.{i}.{intra,inter}_mdl.norm_f.weight,
dual_mdl.{i}.{intra,inter}_norm.*, conv2d.*, end_conv1x1.weight, prelu.weight, output.0.*, output_gate.0.*}``,
``decoder.weight``.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from mamba_jax.layers.blocks import MambaStack
from mamba_jax.layers.mamba import MambaConfig
from mamba_jax.layers.precision import compute_dtype
from mamba_jax.layers.sep_norm import GroupNorm1, PReLU
from mamba_jax.layers.torch_conv import Conv1d, Conv2d
from mamba_jax.layers.waveform import CheckFinite
from mamba_jax.models import config_from
from mamba_jax.models.tasnet import EncoderMaskerDecoder, apply_reinit
from mamba_jax.ops.padding import mask_padding, valid_mask
from mamba_jax.ops.selective_scan import Impl
from mamba_jax.typing import Array, Float, Int

TASK = "separation"


@dataclasses.dataclass(frozen=True)
class DPMambaConfig:
    """Hyperparameters; defaults are the S preset."""

    n_filters: int = 256  # N = encoder channels = d_model of every Mamba
    n_dp: int = 8  # dual-path blocks
    n_mamba_dp: int = 2  # intra and inter each get n_mamba_dp // 2 BiMamba blocks
    chunk_size: int = 250  # K
    skip_around_intra: bool = False
    num_spks: int = 2
    kernel_size: int = 16
    d_state: int = 16
    d_conv: int = 4
    expand: int = 2
    norm_eps: float = 1e-5  # RMSNorm
    gn_eps: float = 1e-8
    scan_impl: Impl = "auto"
    dtype: str = "fp32"  # Mamba mixers' matmul inputs: 'fp32' | 'bf16' (params, norms, convs, scan, state stay fp32)
    check_finite: CheckFinite = "eager"

    @property
    def mamba(self) -> MambaConfig:
        return MambaConfig(d_model=self.n_filters, d_state=self.d_state, d_conv=self.d_conv, expand=self.expand)


PRESETS = {
    "xs": DPMambaConfig(n_filters=128, n_dp=8, skip_around_intra=False),
    "s": DPMambaConfig(n_filters=256, n_dp=8, skip_around_intra=False),
    "m": DPMambaConfig(n_filters=256, n_dp=16, skip_around_intra=True),
    "l": DPMambaConfig(n_filters=512, n_dp=16, skip_around_intra=True),
}


def segment(x: Float[Array, "B L M"], k: int) -> tuple[Float[Array, "B C Lc M"], int]:
    """SpeechBrain ``_Segmentation``: 50%-overlapping chunks of ``k`` frames, interleaved; returns (chunks, gap).

    Right-pad ``gap = k - (k/2 + L % k) % k`` zeros, then ``k/2`` zeros on both sides; chunking the signal
    without its last and without its first ``k/2`` frames gives two chunk sequences, interleaved.
    """
    b, l, n = x.shape
    p = k // 2
    gap = k - (p + l % k) % k
    x = jnp.pad(x, ((0, 0), (p, gap + p), (0, 0)))  # [B, L + gap + 2P, M]
    first = x[:, :-p].reshape(b, -1, k, n)  # [B, C1, Lc, M]
    second = x[:, p:].reshape(b, -1, k, n)
    return jnp.stack([first, second], axis=2).reshape(b, -1, k, n), gap  # [B, 2*C1, Lc, M]


def overlap_add(x: Float[Array, "B C Lc M"], gap: int) -> Float[Array, "B L M"]:
    """SpeechBrain ``_over_add``: the inverse bookkeeping of :func:`segment` (overlapping halves summed)."""
    b, c, k, n = x.shape
    p = k // 2
    x = x.reshape(b, c // 2, 2, k, n)
    first = x[:, :, 0].reshape(b, -1, n)[:, p:]
    second = x[:, :, 1].reshape(b, -1, n)[:, :-p]
    out = first + second  # [B, L + gap, M]
    return out[:, : out.shape[1] - gap]


class DualComputationBlock(nnx.Module):
    """SpeechBrain ``Dual_Computation_Block`` (norm 'ln', no linear after intra/inter) on ``[B, C, K, N]``."""

    def __init__(self, cfg: DPMambaConfig, *, rngs: nnx.Rngs):
        n_mamba = cfg.n_mamba_dp // 2
        kw = dict(mixer="bimamba_v2", norm="rms", norm_eps=cfg.norm_eps, final_norm=True, scan_impl=cfg.scan_impl,
                  dtype=compute_dtype(cfg.dtype),
                  rngs=rngs)
        self.skip_around_intra = cfg.skip_around_intra
        self.intra_mdl = MambaStack(cfg.mamba, n_mamba, **kw)
        self.inter_mdl = MambaStack(cfg.mamba, n_mamba, **kw)
        self.intra_norm = GroupNorm1(cfg.n_filters, eps=cfg.gn_eps)
        self.inter_norm = GroupNorm1(cfg.n_filters, eps=cfg.gn_eps)

    def __call__(self, x: Float[Array, "B C Lc M"], chunks: Int[Array, "B"] | None = None
                 ) -> Float[Array, "B C Lc M"]:
        """``chunks``: valid chunks per row (module docstring); the others never reach the valid ones."""
        b, c, k, n = x.shape
        mask = None if chunks is None else jnp.broadcast_to(valid_mask(chunks, c)[:, :, None], (b, c, k))
        intra = self.intra_mdl(x.reshape(b * c, k, n)).reshape(b, c, k, n)  # along K
        intra = self.intra_norm(intra, mask)
        if self.skip_around_intra:
            intra = intra + x
        inter = jnp.swapaxes(intra, 1, 2).reshape(b * k, c, n)  # [B*Lc, C, M], along chunks
        inter_len = None if chunks is None else jnp.repeat(chunks, k)  # row b*K + j has chunks[b]
        inter = jnp.swapaxes(self.inter_mdl(inter, inter_len).reshape(b, k, c, n), 1, 2)  # [B, C, Lc, M]
        return self.inter_norm(inter, mask) + intra


class DualPathMaskNet(nnx.Module):
    """SpeechBrain ``Dual_Path_Model``: ``[B, L, N] -> masks [B, S, L, N]``."""

    def __init__(self, cfg: DPMambaConfig, *, rngs: nnx.Rngs):
        n, s = cfg.n_filters, cfg.num_spks
        self.cfg = cfg
        self.norm = GroupNorm1(n, eps=cfg.gn_eps)
        self.conv1d = Conv1d(n, n, 1, use_bias=False, rngs=rngs)
        self.dual_mdl = nnx.List([DualComputationBlock(cfg, rngs=rngs) for _ in range(cfg.n_dp)])
        self.conv2d = Conv2d(n, n * s, 1, rngs=rngs)
        self.end_conv1x1 = Conv1d(n, n, 1, use_bias=False, rngs=rngs)
        self.prelu = PReLU()
        self.output = nnx.List([Conv1d(n, n, 1, rngs=rngs)])  # keys output.0.* (nn.Sequential(conv, Tanh))
        self.output_gate = nnx.List([Conv1d(n, n, 1, rngs=rngs)])

    def __call__(self, w: Float[Array, "B L M"], lengths: Int[Array, "B"] | None = None) -> Float[Array, "B S L M"]:
        """``lengths``: valid frames per row (module docstring); masks beyond them are zero."""
        b, l, n = w.shape
        s = self.cfg.num_spks
        k = self.cfg.chunk_size
        if lengths is None:
            x, chunks = self.conv1d(self.norm(w)), None
        else:
            x = mask_padding(self.conv1d(self.norm(w, valid_mask(lengths, l))), lengths)
            chunks = 2 * ((lengths + k // 2) // k + 1)  # segment() of the unpadded call: C = 2 * C1
        x, gap = segment(x, k)  # [B, C, Lc, M]
        for block in self.dual_mdl:
            x = block(x) if chunks is None else mask_padding(block(x, chunks), chunks)  # padded chunks kept at 0
        x = self.conv2d(self.prelu(x))  # [B, C, Lc, S*M], source-major channels
        _, c, k, _ = x.shape
        x = jnp.moveaxis(x.reshape(b, c, k, s, n), 3, 1).reshape(b * s, c, k, n)
        x = overlap_add(x, gap)  # [B*S, L, M]
        x = jnp.tanh(self.output[0](x)) * jax.nn.sigmoid(self.output_gate[0](x))
        x = self.end_conv1x1(x)
        masks = jax.nn.relu(x.reshape(b, s, l, n))
        return masks if lengths is None else mask_padding(masks, lengths, axis=2)


class DPMamba(EncoderMaskerDecoder):
    """``model(mix [B, T]) -> [B, S, T]``; see the module docstring (the frame: ``models/tasnet.py``)."""

    def __init__(self, cfg: DPMambaConfig, *, rngs: nnx.Rngs):
        super().__init__(cfg, lambda r: DualPathMaskNet(cfg, rngs=r), rngs=rngs)


def build(model_cfg, *, rngs: nnx.Rngs) -> DPMamba:
    """``config.model`` -> model. ``model_cfg.reinit``: ``"none"`` or ``"mt_reset"``."""
    model = DPMamba(config_from(DPMambaConfig, model_cfg, model="dpmamba", ignore=("name", "reinit")), rngs=rngs)
    apply_reinit(model, model_cfg, rngs)
    return model
