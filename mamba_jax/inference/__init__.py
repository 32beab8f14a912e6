"""Inference: offline and streaming separation (``Separator``, ``SeparationStream``) and ASR decoding."""

from mamba_jax.inference.separator import Separator, align_permutation
from mamba_jax.inference.streaming import SeparationStream

__all__ = ["SeparationStream", "Separator", "align_permutation"]
