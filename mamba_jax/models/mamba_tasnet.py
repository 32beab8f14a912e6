"""Mamba-TasNet: single-path BiMamba mask network between a learned conv encoder and decoder.

Paper: Jiang, Han, Mesgarani, "Speech Slytherin: Examining the Performance and Efficiency of Mamba for
Speech Separation, Recognition, and Synthesis", arXiv 2407.09732 (code: xi-j/Mamba-TasNet,
``modules/mamba_masknet.py`` with SpeechBrain 1.0 ``dual_path.Encoder/Decoder``). See docs/mamba_tasnet.md.

What it computes, for ``mix [B, T]`` (8 kHz)::

    w      = relu(Conv1d(1 -> M, k=16, s=8, no bias)(mix))           # [B, L, M], L = (T - 16) // 8 + 1
    y      = cLN(w)  (eps 1e-8)  ->  bottleneck 1x1 (no bias)         # [B, L, M]
    y      = n_layer x [add -> RMSNorm -> BiMamba-v2]  ->  norm_f      # [B, L, M]
    masks  = relu(mask 1x1 (M -> S*M, no bias)(y))  as [B, L, S, M]   (source-major channels)
    out_s  = ConvTranspose1d(M -> 1, k=16, s=8, no bias)(w * mask_s)   # 8L + 8 <= T samples
    out    = zero-pad on the right to T                                 # [B, S, T]

Input ``[B, T]`` float, ``T >= 16``; output ``[B, S, T]``. With ``lengths`` (int32 ``[B]``, samples, each
``>= 16``) row b is a right-padded signal of ``lengths[b]`` samples: its frames are counted from that length,
the BiMamba runs within them (``layers.mamba``), masked frames are zeroed before the decoder, and samples
``>= lengths[b]`` come out zero, so the first ``lengths[b]`` samples equal the unpadded call. BiMamba-v2 shares in/out_proj between the two
directions and averages them before ``out_proj`` (docs/mamba.md).

Size presets ([MT] hparams/WSJ0Mix/mambatasnet_*.yaml; params counted from the PyTorch modules, docs/mamba_tasnet.md):

=====  ===  ========  ==========  ==========  ===========================
size   N    n_layer   params      reported    SI-SNRi / SDRi (paper, dB)
=====  ===  ========  ==========  ==========  ===========================
XS     128  16        2,210,176   2.2M        19.0 / 19.3
S      256  16        7,926,528   7.9M        21.4 / 21.6
M      256  32        15,647,488  15.6M       22.4 / 22.6
L      512  32        58,951,168  59.6M (*)   23.7 / 23.8
=====  ===  ========  ==========  ==========  ===========================

(*) the paper's 59.6M does not match the code; the code's count is the one reproduced here.

Init is the constructor init of the original modules (torch defaults; Mamba's dt/A/D init; ``out_proj``
scaled by ``1/sqrt(n_layer)``). [MT]'s training script additionally calls ``reset_parameters()`` on every
module before training (docs/mamba_tasnet.md): ``reinit="mt_reset"`` reproduces that (see
``models.tasnet.mt_reset``).

Parameter paths mirror the SpeechBrain state_dicts: ``encoder.conv1d.weight [N,1,16]``,
``masknet.layer_norm.{gamma,beta}``, ``masknet.bottleneck_conv1x1.conv.weight [N,N,1]``,
``masknet.mamba_net.layers.{i}.{norm.weight, mixer.*}``, ``masknet.mamba_net.norm_f.weight``,
``masknet.mask_conv1x1.conv.weight [S*N,N,1]``, ``decoder.weight [N,1,16]``. Linear kernels are the
transposes of torch's ``[out, in]``; norm affines drop torch's singleton axes.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from mamba_jax.layers.blocks import MambaStack
from mamba_jax.layers.mamba import MambaConfig
from mamba_jax.layers.precision import compute_dtype
from mamba_jax.layers.sep_norm import ChannelLayerNorm
from mamba_jax.layers.torch_conv import Conv1d
from mamba_jax.layers.waveform import CheckFinite
from mamba_jax.models import config_from
from mamba_jax.models.tasnet import EncoderMaskerDecoder, apply_reinit
from mamba_jax.ops.selective_scan import Impl
from mamba_jax.typing import Array, Float, Int

TASK = "separation"


@dataclasses.dataclass(frozen=True)
class MambaTasNetConfig:
    """Hyperparameters; defaults are the S preset."""

    n_filters: int = 256  # N: encoder channels = d_model
    n_layer: int = 16
    num_spks: int = 2
    kernel_size: int = 16
    d_state: int = 16
    d_conv: int = 4
    expand: int = 2
    norm_eps: float = 1e-5  # RMSNorm
    cln_eps: float = 1e-8
    scan_impl: Impl = "auto"
    dtype: str = "fp32"  # Mamba mixers' matmul inputs: 'fp32' | 'bf16' (params, norms, convs, scan, state stay fp32)
    check_finite: CheckFinite = "eager"

    @property
    def stride(self) -> int:
        return self.kernel_size // 2

    @property
    def mamba(self) -> MambaConfig:
        return MambaConfig(d_model=self.n_filters, d_state=self.d_state, d_conv=self.d_conv, expand=self.expand)


PRESETS = {
    "xs": MambaTasNetConfig(n_filters=128, n_layer=16),
    "s": MambaTasNetConfig(n_filters=256, n_layer=16),
    "m": MambaTasNetConfig(n_filters=256, n_layer=32),
    "l": MambaTasNetConfig(n_filters=512, n_layer=32),
}


class SBConv1x1(nnx.Module):
    """SpeechBrain ``nnet.CNN.Conv1d(k=1, bias=False)``: channels-last 1x1 conv; key ``conv.weight [out,in,1]``."""

    def __init__(self, d_in: int, d_out: int, *, rngs: nnx.Rngs):
        self.conv = Conv1d(d_in, d_out, 1, use_bias=False, rngs=rngs)

    def __call__(self, x: Float[Array, "B L Ci"]) -> Float[Array, "B L Co"]:
        return self.conv(x)


class MaskNet(nnx.Module):
    """[MT] ``modules/mamba_masknet.MaskNet``: ``[B, L, N] -> masks [B, S, L, N]`` (ReLU)."""

    def __init__(self, cfg: MambaTasNetConfig, *, rngs: nnx.Rngs):
        n = cfg.n_filters
        self.num_spks = cfg.num_spks
        self.layer_norm = ChannelLayerNorm(n, eps=cfg.cln_eps)
        self.bottleneck_conv1x1 = SBConv1x1(n, n, rngs=rngs)
        self.mamba_net = MambaStack(cfg.mamba, cfg.n_layer, mixer="bimamba_v2", norm="rms", norm_eps=cfg.norm_eps,
                                    final_norm=True, scan_impl=cfg.scan_impl,
                                    dtype=compute_dtype(cfg.dtype), rngs=rngs)
        self.mask_conv1x1 = SBConv1x1(n, cfg.num_spks * n, rngs=rngs)

    def __call__(self, w: Float[Array, "B L M"], lengths: Int[Array, "B"] | None = None) -> Float[Array, "B S L M"]:
        """``lengths``: valid frames per row (the Mamba stack runs within them)."""
        b, l, n = w.shape
        y = self.bottleneck_conv1x1(self.layer_norm(w))
        y = self.mamba_net(y, lengths)
        score = self.mask_conv1x1(y).reshape(b, l, self.num_spks, n)  # [B, L, S, M], source-major channels
        return jnp.moveaxis(jax.nn.relu(score), 2, 1)  # [B, S, L, M]


class MambaTasNet(EncoderMaskerDecoder):
    """``model(mix [B, T]) -> [B, S, T]``; see the module docstring (the frame: ``models/tasnet.py``)."""

    def __init__(self, cfg: MambaTasNetConfig, *, rngs: nnx.Rngs):
        super().__init__(cfg, lambda r: MaskNet(cfg, rngs=r), rngs=rngs)


def build(model_cfg, *, rngs: nnx.Rngs) -> MambaTasNet:
    """``config.model`` -> model. ``model_cfg.reinit``: ``"none"`` (constructor init) or ``"mt_reset"``
    (``models.tasnet.mt_reset``)."""
    model = MambaTasNet(config_from(MambaTasNetConfig, model_cfg, model="mamba_tasnet", ignore=("name", "reinit")),
                        rngs=rngs)
    apply_reinit(model, model_cfg, rngs)
    return model

