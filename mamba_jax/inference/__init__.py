"""Inference: offline and streaming separation (``Separator``, ``SeparationStream``), the one-call
``separate_file``, ASR (``Transcriber``, the one-call ``transcribe_file``; the searches are ``mamba_jax.decoding``);
test-set evaluation in ``mamba_jax.inference.evaluate``."""

from mamba_jax.inference.api import separate_file
from mamba_jax.inference.separator import Separator, align_permutation
from mamba_jax.inference.streaming import SeparationStream
from mamba_jax.inference.transcriber import Transcriber, transcribe_file

__all__ = ["SeparationStream", "Separator", "Transcriber", "align_permutation", "separate_file", "transcribe_file"]
