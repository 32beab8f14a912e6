"""The encoder-masker-decoder frame shared by Mamba-TasNet and DPMamba (SpeechBrain ``dual_path`` layout).

Luo & Mesgarani, "Conv-TasNet", arXiv 1809.07454; as in xi-j/Mamba-TasNet's ``train_wsj0mix.compute_forward``
with SpeechBrain 1.0 ``dual_path.Encoder/Decoder``. See docs/mamba_tasnet.md. For ``mix [B, T]``::

    w      = relu(Conv1d(1 -> M, k, stride k/2, no bias)(mix))       # [B, L, M], L = (T - k) // (k/2) + 1
    masks  = masknet(w)                                              # [B, S, L, M] (the model's own)
    out_s  = ConvTranspose1d(M -> 1, k, stride k/2, no bias)(w * mask_s), zero-padded to T   # [B, S, T]

With ``lengths`` (int32 ``[B]``, samples) row b is a right-padded signal: the masker gets the frame counts
``(lengths - k) // (k/2) + 1``, masked frames past them are zeroed before the decoder, and samples ``>= lengths[b]``
come out zero. Parameter paths: ``encoder.conv1d.weight [N,1,k]``, ``masknet.*``, ``decoder.weight [N,1,k]``.

Not a model (no ``build``): ``models/mamba_tasnet.py`` and ``models/dpmamba.py`` subclass
:class:`EncoderMaskerDecoder` with their mask networks.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import no_type_check

import jax
from flax import nnx

from mamba_jax.layers.init import uniform
from mamba_jax.layers.mamba import BiMambaV2, Mamba
from mamba_jax.layers.torch_conv import Conv1d, ConvTranspose1d
from mamba_jax.layers.waveform import check_waveform, fit_length
from mamba_jax.ops.padding import as_lengths, conv_lengths, mask_padding
from mamba_jax.typing import Array, Float, Int


class Encoder(nnx.Module):
    """SpeechBrain ``dual_path.Encoder``: ``relu(Conv1d(1 -> N, k, stride k/2, no bias))``, ``[B,T] -> [B,L,N]``."""

    def __init__(self, kernel_size: int, n_filters: int, *, rngs: nnx.Rngs):
        self.conv1d = Conv1d(1, n_filters, kernel_size, stride=kernel_size // 2, use_bias=False, rngs=rngs)

    def __call__(self, mix: Float[Array, "B T"]) -> Float[Array, "B L M"]:
        return jax.nn.relu(self.conv1d(mix[..., None]))


def make_decoder(kernel_size: int, n_filters: int, *, rngs: nnx.Rngs) -> ConvTranspose1d:
    """SpeechBrain ``dual_path.Decoder``: ``ConvTranspose1d(N -> 1, k, stride k/2, no bias)``; key ``weight``."""
    return ConvTranspose1d(n_filters, 1, kernel_size, stride=kernel_size // 2, use_bias=False, rngs=rngs)


def decode_sources(decoder: ConvTranspose1d, sep: Float[Array, "B S L M"], length: int) -> Float[Array, "B S T"]:
    """Runs the shared decoder on every masked source and fits the result to ``length`` samples."""
    b, s, l, n = sep.shape
    y = decoder(sep.reshape(b * s, l, n))  # [B*S, T', 1]
    return fit_length(y.reshape(b, s, -1), length)


class EncoderMaskerDecoder(nnx.Module):
    """``model(mix [B, T], lengths=None) -> [B, S, T]``; see the module docstring.

    ``cfg`` has ``kernel_size``, ``n_filters`` and ``check_finite``; ``make_masknet(rngs)`` builds the mask
    network ``(w [B, L, N], frames [B] | None) -> masks [B, S, L, N]`` (between the encoder and the decoder,
    the order in which the original draws their initial weights)."""

    def __init__(self, cfg, make_masknet: Callable[[nnx.Rngs], nnx.Module], *, rngs: nnx.Rngs):
        self.cfg = cfg
        self.encoder = Encoder(cfg.kernel_size, cfg.n_filters, rngs=rngs)
        self.masknet = make_masknet(rngs)
        self.decoder = make_decoder(cfg.kernel_size, cfg.n_filters, rngs=rngs)

    @property
    def min_length(self) -> int:
        return self.cfg.kernel_size

    # Not run-time checked (tests/conftest.py): it checks its input itself, with the user-facing ValueError that
    # tests/models/test_bad_inputs.py expects; the layers it calls are checked.
    @no_type_check
    def __call__(self, mix: Float[Array, "B T"], lengths: Int[Array, "B"] | None = None) -> Float[Array, "B S T"]:
        """``mix [B, T]`` -> ``[B, S, T]``; ``lengths`` (samples) as in the module docstring."""
        check_waveform(mix, model=type(self).__name__, min_len=self.min_length, check_finite=self.cfg.check_finite)
        lengths = as_lengths(lengths, mix.shape[0])
        k = self.cfg.kernel_size
        frames = None if lengths is None else conv_lengths(lengths, k, k // 2)
        w = self.encoder(mix)  # [B, L, M]
        masks = self.masknet(w, frames)  # [B, S, L, M]
        sep = mask_padding(w[:, None] * masks, frames, axis=2)  # [B, S, L, M]
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
        if not isinstance(module, (Mamba, BiMambaV2)):
            continue
        cfg = module.cfg
        dt_projs = [module.dt_proj, module.dt_proj_b] if isinstance(module, BiMambaV2) else [module.dt_proj]
        for dt_proj in dt_projs:
            dt_proj.bias[...] = uniform(1.0 / math.sqrt(cfg.rank))(rngs.params(), dt_proj.bias.shape)
        out = module.out_proj
        out.kernel[...] = uniform(1.0 / math.sqrt(cfg.d_inner))(rngs.params(), out.kernel.shape)


def apply_reinit(model: nnx.Module, model_cfg, rngs: nnx.Rngs) -> None:
    """``model_cfg.reinit``: ``"none"`` (constructor init) or ``"mt_reset"`` (:func:`mt_reset`)."""
    reinit = model_cfg.get("reinit", "none")
    if reinit == "mt_reset":
        mt_reset(model, rngs)
    elif reinit != "none":
        raise ValueError(f"reinit must be 'none' or 'mt_reset', got {reinit!r}")
