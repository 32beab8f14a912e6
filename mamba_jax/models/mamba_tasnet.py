"""Mamba-TasNet: single-path BiMamba mask network between a learned conv encoder and decoder.

Paper: Jiang, Han, Mesgarani, "Speech Slytherin: Examining the Performance and Efficiency of Mamba for
Speech Separation, Recognition, and Synthesis", arXiv 2407.09732 (code: xi-j/Mamba-TasNet,
``modules/mamba_masknet.py`` with SpeechBrain 1.0 ``dual_path.Encoder/Decoder``). See docs/mamba_tasnet.md.

What it computes, for ``mix [B, T]`` (8 kHz)::

    w      = relu(Conv1d(1 -> N, k=16, s=8, no bias)(mix))           # [B, L, N], L = (T - 16) // 8 + 1
    y      = cLN(w)  (eps 1e-8)  ->  bottleneck 1x1 (no bias)         # [B, L, N]
    y      = n_layer x [add -> RMSNorm -> BiMamba-v2]  ->  norm_f      # [B, L, N]
    masks  = relu(mask 1x1 (N -> S*N, no bias)(y))  as [B, L, S, N]   (source-major channels)
    out_s  = ConvTranspose1d(N -> 1, k=16, s=8, no bias)(w * mask_s)   # 8L + 8 <= T samples
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
module before training (docs/mamba_tasnet.md): ``reinit="mt_reset"`` reproduces that (see :func:`mt_reset`).

Parameter paths mirror the SpeechBrain state_dicts: ``encoder.conv1d.weight [N,1,16]``,
``masknet.layer_norm.{gamma,beta}``, ``masknet.bottleneck_conv1x1.conv.weight [N,N,1]``,
``masknet.mamba_net.layers.{i}.{norm.weight, mixer.*}``, ``masknet.mamba_net.norm_f.weight``,
``masknet.mask_conv1x1.conv.weight [S*N,N,1]``, ``decoder.weight [N,1,16]``. Linear kernels are the
transposes of torch's ``[out, in]``; norm affines drop torch's singleton axes.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
from flax import nnx

from mamba_jax.layers.blocks import MambaStack
from mamba_jax.layers.init import uniform
from mamba_jax.layers.mamba import BiMambaV2, Mamba, MambaConfig
from mamba_jax.layers.precision import compute_dtype
from mamba_jax.layers.sep_norm import ChannelLayerNorm
from mamba_jax.layers.torch_conv import Conv1d, ConvTranspose1d
from mamba_jax.layers.waveform import CheckFinite, check_waveform, fit_length
from mamba_jax.models import config_from
from mamba_jax.ops.padding import as_lengths, conv_lengths, mask_padding
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


class Encoder(nnx.Module):
    """SpeechBrain ``dual_path.Encoder``: ``relu(Conv1d(1 -> N, k, stride k/2, no bias))``, ``[B,T] -> [B,L,N]``."""

    def __init__(self, kernel_size: int, n_filters: int, *, rngs: nnx.Rngs):
        self.conv1d = Conv1d(1, n_filters, kernel_size, stride=kernel_size // 2, use_bias=False, rngs=rngs)

    def __call__(self, mix: Float[Array, "B T"]) -> Float[Array, "B L N"]:
        return jax.nn.relu(self.conv1d(mix[..., None]))


def make_decoder(kernel_size: int, n_filters: int, *, rngs: nnx.Rngs) -> ConvTranspose1d:
    """SpeechBrain ``dual_path.Decoder``: ``ConvTranspose1d(N -> 1, k, stride k/2, no bias)``; key ``weight``."""
    return ConvTranspose1d(n_filters, 1, kernel_size, stride=kernel_size // 2, use_bias=False, rngs=rngs)


def decode_sources(decoder: ConvTranspose1d, sep: Float[Array, "B S L N"], length: int) -> Float[Array, "B S T"]:
    """Runs the shared decoder on every masked source and fits the result to ``length`` samples."""
    b, s, l, n = sep.shape
    y = decoder(sep.reshape(b * s, l, n))  # [B*S, T', 1]
    return fit_length(y.reshape(b, s, -1), length)


class SBConv1x1(nnx.Module):
    """SpeechBrain ``nnet.CNN.Conv1d(k=1, bias=False)``: channels-last 1x1 conv; key ``conv.weight [out,in,1]``."""

    def __init__(self, d_in: int, d_out: int, *, rngs: nnx.Rngs):
        self.conv = Conv1d(d_in, d_out, 1, use_bias=False, rngs=rngs)

    def __call__(self, x: Float[Array, "B L C"]) -> Float[Array, "B L O"]:
        return self.conv(x)


class MaskNet(nnx.Module):
    """[MT] ``modules/mamba_masknet.MaskNet``: ``[B, L, N] -> masks [B, L, S, N]`` (ReLU)."""

    def __init__(self, cfg: MambaTasNetConfig, *, rngs: nnx.Rngs):
        n = cfg.n_filters
        self.num_spks = cfg.num_spks
        self.layer_norm = ChannelLayerNorm(n, eps=cfg.cln_eps)
        self.bottleneck_conv1x1 = SBConv1x1(n, n, rngs=rngs)
        self.mamba_net = MambaStack(cfg.mamba, cfg.n_layer, mixer="bimamba_v2", norm="rms", norm_eps=cfg.norm_eps,
                                    final_norm=True, scan_impl=cfg.scan_impl,
                                    dtype=compute_dtype(cfg.dtype), rngs=rngs)
        self.mask_conv1x1 = SBConv1x1(n, cfg.num_spks * n, rngs=rngs)

    def __call__(self, w: Float[Array, "B L N"], lengths: Int[Array, "B"] | None = None) -> Float[Array, "B L S N"]:
        """``lengths``: valid frames per row (outputs beyond them are zero)."""
        b, l, n = w.shape
        y = self.bottleneck_conv1x1(self.layer_norm(w))
        y = self.mamba_net(y, lengths)
        score = self.mask_conv1x1(y).reshape(b, l, self.num_spks, n)  # [B, L, S, N], source-major channels
        return jax.nn.relu(score)


class MambaTasNet(nnx.Module):
    """``model(mix [B, T]) -> [B, S, T]``; see the module docstring."""

    def __init__(self, cfg: MambaTasNetConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        self.encoder = Encoder(cfg.kernel_size, cfg.n_filters, rngs=rngs)
        self.masknet = MaskNet(cfg, rngs=rngs)
        self.decoder = make_decoder(cfg.kernel_size, cfg.n_filters, rngs=rngs)

    @property
    def min_length(self) -> int:
        return self.cfg.kernel_size

    def __call__(self, mix: Float[Array, "B T"], lengths: Int[Array, "B"] | None = None) -> Float[Array, "B S T"]:
        """``mix [B, T]`` -> ``[B, S, T]``; ``lengths`` (samples) as in the module docstring."""
        check_waveform(mix, model="MambaTasNet", min_len=self.min_length, check_finite=self.cfg.check_finite)
        lengths = as_lengths(lengths, mix.shape[0])
        frames = None if lengths is None else conv_lengths(lengths, self.cfg.kernel_size, self.cfg.stride)
        w = self.encoder(mix)  # [B, L, N]
        masks = self.masknet(w, frames)  # [B, L, S, N]
        sep = jnp.moveaxis(mask_padding(w[:, :, None, :] * masks, frames), 2, 1)  # [B, S, L, N]
        return mask_padding(decode_sources(self.decoder, sep, mix.shape[1]), lengths, axis=-1)


def mt_reset(model: nnx.Module, rngs: nnx.Rngs) -> None:
    """[MT] ``reset_layer_recursively`` (train_wsj0mix.py), applied in place.

    ``reset_parameters()`` gives every ``nn.Linear`` torch's default init. For the Mamba mixers that changes
    two distributions: ``dt_proj.bias`` becomes U(+-1/sqrt(R)) (softplus in [0.58, 0.82] instead of
    [1e-3, 0.1]) and ``out_proj`` loses its ``1/sqrt(n_layer)`` rescale (U(+-1/sqrt(E))). Those are redrawn
    here (both directions of a BiMamba). Everything else already has its reset distribution (torch-default
    convs and linears, unit/zero norms, PReLU 0.25), and ``A_log``/``D`` survive, as in the original.
    """
    for _, module in nnx.iter_modules(model):
        if not isinstance(module, Mamba):
            continue
        cfg = module.cfg
        suffixes = ("", "_b") if isinstance(module, BiMambaV2) else ("",)
        for sfx in suffixes:
            dt_proj = getattr(module, f"dt_proj{sfx}")
            dt_proj.bias[...] = uniform(1.0 / math.sqrt(cfg.rank))(rngs.params(), dt_proj.bias.shape)
        out = module.out_proj
        out.kernel[...] = uniform(1.0 / math.sqrt(cfg.d_inner))(rngs.params(), out.kernel.shape)


def build(model_cfg, *, rngs: nnx.Rngs) -> MambaTasNet:
    """``config.model`` -> model. ``model_cfg.reinit``: ``"none"`` (constructor init) or ``"mt_reset"``."""
    model = MambaTasNet(config_from(MambaTasNetConfig, model_cfg, model="mamba_tasnet", ignore=("name", "reinit")),
                        rngs=rngs)
    apply_reinit(model, model_cfg, rngs)
    return model


def apply_reinit(model: nnx.Module, model_cfg, rngs: nnx.Rngs) -> None:
    reinit = model_cfg.get("reinit", "none")
    if reinit == "mt_reset":
        mt_reset(model, rngs)
    elif reinit != "none":
        raise ValueError(f"reinit must be 'none' or 'mt_reset', got {reinit!r}")
