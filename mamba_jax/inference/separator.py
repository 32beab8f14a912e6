"""Offline separation with any separation model: jitted, length-bucketed, batched, overlap-add for long inputs.

``Separator`` wraps a model (``model(mix [B, T], lengths [B]) -> [B, S, T]``) and its config:

* **Length buckets, exact.** A signal of ``n <= chunk`` samples is zero-padded on the right to the next
  multiple of ``bucket_seconds`` (at least the model's ``min_length``) and run with its length, so all lengths
  in one bucket share one compilation (batches are padded to a power of two rows, up to ``batch_size``). Every
  model makes right padding inert given the lengths (frames from the true length, backward scans starting at
  the true end, statistics over the valid part), so each signal's output equals one unpadded call on it,
  whatever the bucket and whatever else is in the batch; ``bucket_seconds=None`` compiles each length exactly
  instead. A signal shorter than ``min_length`` is the model's call on it followed by silence up to
  ``min_length``.
* **Overlap-add.** A signal longer than ``chunk_seconds`` is cut into windows of exactly ``chunk`` samples
  starting every ``hop`` samples (the last one ends at the signal's end, so no window is padded and one
  compilation serves all), separated in batches of ``batch_size`` windows, and joined in order: each window's
  sources are permuted to best match the output so far on the overlap (:func:`align_permutation`, normalised
  correlation, Hungarian assignment), then cross-faded over the overlap with complementary raised-cosine
  ramps. Device memory is that of one batch of windows whatever the length; host memory is the input, the
  output and one batch (bench/long_separation.py measures it). ``chunk_seconds=None`` runs every signal whole
  (what the papers evaluate; device memory then grows with the longest signal).
* **The model's window.** Unless the caller chooses, windows are 20 s, 4 per device call
  (:func:`default_window`), except for SPMamba: its full-band self-attention over frames grows with the square
  of the window (20 s x 4 took ~25 GB on CPU), so it gets its 4 s training crops, one per call (14 s of audio
  separated with the full-size model on CPU: 2.5 GB peak resident memory, against 6.3 GB with 4 per call).
* ``separate`` takes a mono waveform at any rate and resamples to the model's rate and back (soxr_hq).
* ``stream()`` gives chunk-by-chunk separation for the causal SepMamba (mamba_jax/inference/streaming.py).
"""

from __future__ import annotations

import copy
import functools
import pathlib
import warnings

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx
from tqdm.auto import tqdm

from mamba_jax.data.audio import resample, validate_waveform
from mamba_jax.inference.streaming import SeparationStream, StreamRunner
from mamba_jax.layers.waveform import fit_length
from mamba_jax.metrics.separation import best_permutation
from mamba_jax.typing import Array, Float, Int


@functools.partial(jax.jit, static_argnums=0)
def apply_model(graphdef: nnx.GraphDef, weights: nnx.State, x: Float[Array, "B T"],
                lengths: Int[Array, "B"] | None = None) -> Float[Array, "B S T"]:
    """The model's forward pass on right-padded rows of ``lengths`` samples (None: all of ``T``), jitted once
    per (model structure, input shape), shared by all Separators."""
    model = nnx.merge(graphdef, weights)
    return model(x) if lengths is None else model(x, lengths)


def align_permutation(reference: Float[np.ndarray, "S n"], estimate: Float[np.ndarray, "S n"]) -> np.ndarray:
    """The permutation ``p`` for which ``estimate[p]`` best matches ``reference``, source by source.

    Maximises ``sum_s corr(reference[s], estimate[p[s]])`` (normalised inner products, so a quiet source
    counts as much as a loud one) over all permutations (``metrics.separation.best_permutation``). Silent
    signals score 0 against everything, which leaves the identity. Returns ``int [S]``.
    """
    ref = np.asarray(reference, np.float64)
    est = np.asarray(estimate, np.float64)
    if ref.shape != est.shape or ref.ndim != 2:
        raise ValueError(f"align_permutation expects two [S, n] arrays of one shape, got {ref.shape} and {est.shape}")
    norm = np.linalg.norm(ref, axis=1)[:, None] * np.linalg.norm(est, axis=1)[None, :]
    score = (ref @ est.T) / np.maximum(norm, 1e-12)  # [S, S]
    return best_permutation(-score.T)[1]  # cost[i, j]: estimate i against reference j


def crossfade(n: int) -> np.ndarray:
    """Fade-in ramp ``sin^2(pi/2 (i + 1/2) / n)``, ``[n]``; ``1 - ramp`` fades out (the two sum to 1)."""
    return (np.sin(0.5 * np.pi * (np.arange(n) + 0.5) / n) ** 2).astype(np.float32)


def window_starts(length: int, chunk: int, hop: int) -> list[int]:
    """Starts of the overlap-add windows: every ``hop`` samples, the last one ending at ``length``."""
    if length <= chunk:
        return [0]
    return list(range(0, length - chunk, hop)) + [length - chunk]


def join_window(out: Float[np.ndarray, "S T"], y: Float[np.ndarray, "S n"], start: int, prev_end: int | None
                ) -> None:
    """Writes window ``y [S, n]`` into ``out`` at ``start`` (in place); ``out[:, :prev_end]`` holds the windows
    joined so far. On the overlap ``[start, prev_end)`` the sources of ``y`` are permuted to match ``out``
    (:func:`align_permutation`) and cross-faded in; after it ``y`` is copied."""
    if prev_end is None or prev_end <= start:
        out[:, start:start + y.shape[1]] = y
        return
    ov = prev_end - start
    y = y[align_permutation(out[:, start:prev_end], y[:, :ov])]
    ramp = crossfade(ov)
    out[:, start:prev_end] = (1.0 - ramp) * out[:, start:prev_end] + ramp * y[:, :ov]
    out[:, prev_end:start + y.shape[1]] = y[:, ov:]


# Overlap-add window (seconds) and windows per device call when the caller gives none (module docstring).
DEFAULT_WINDOW = (20.0, 4)
MODEL_WINDOWS = {"spmamba": (4.0, 1)}


def default_window(config: ml_collections.ConfigDict) -> tuple[float, int]:
    """``(chunk_seconds, batch_size)`` of the model ``config.model.name`` names, when the caller gives none."""
    return MODEL_WINDOWS.get(config.model.get("name"), DEFAULT_WINDOW)


class Separator:
    """A separation model, jitted, with length buckets, batching, overlap-add and resampling (module docstring).

    ``Separator(model, config)`` wraps a built model and its full config (``config.task``,
    ``config.data.sample_rate``); ``Separator.from_checkpoint(path)`` loads one. Keywords: ``chunk_seconds``
    (overlap-add window; default ``"model"``: :func:`default_window`, 20 s, SPMamba 4 s; None: every signal
    whole), ``hop_seconds`` (default 0.8 of the window), ``bucket_seconds`` (default 0.5 s; None: exact
    lengths), ``batch_size`` (windows or signals per device call; default: :func:`default_window`, 4, SPMamba
    1), ``progress`` (a tqdm bar on stderr for inputs that take several device calls, e.g. long recordings;
    default off). The model is put in eval mode (dropout off).
    """

    def __init__(self, model: nnx.Module, config: ml_collections.ConfigDict, *,
                 chunk_seconds: float | None | str = "model", hop_seconds: float | None = None,
                 bucket_seconds: float | None = 0.5, batch_size: int | None = None, progress: bool = False):
        if config.get("task") != "separation":
            raise ValueError(f"Separator needs a separation checkpoint; this one is task {config.get('task')!r} "
                             f"(model {config.model.get('name')!r}): use Transcriber")
        self.model = model
        if hasattr(model, "eval"):
            model.eval()  # dropout (if any) off
        self.config = config
        self.sample_rate = int(config.data.sample_rate)
        self.min_length = int(getattr(model, "min_length", 1))
        rate = self.sample_rate
        window, per_call = default_window(config)
        if chunk_seconds == "model":
            chunk_seconds = window
        elif isinstance(chunk_seconds, str):
            raise ValueError(f"chunk_seconds must be a number of seconds, None or 'model', got {chunk_seconds!r}")
        batch_size = per_call if batch_size is None else batch_size
        self.chunk_seconds = chunk_seconds
        if chunk_seconds is None:  # whole signals, never overlap-add
            self.chunk, self.hop = None, None
        else:
            self._set_chunk(chunk_seconds, hop_seconds)
        self.bucket = 0 if not bucket_seconds else max(1, int(round(bucket_seconds * rate)))
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = int(batch_size)
        self.progress = bool(progress)
        self._graphdef, self._weights = nnx.split(model)
        probe = jax.ShapeDtypeStruct((1, max(self.min_length, 1)), jnp.float32)
        self.num_sources = int(jax.eval_shape(apply_model, self._graphdef, self._weights, probe).shape[1])
        self._stream_runner: StreamRunner | None = None

    def _set_chunk(self, chunk_seconds: float, hop_seconds: float | None) -> None:
        rate = self.sample_rate
        self.chunk = int(round(chunk_seconds * rate))
        self.hop = int(round((0.8 * chunk_seconds if hop_seconds is None else hop_seconds) * rate))
        if self.chunk < self.min_length:
            raise ValueError(f"chunk_seconds={chunk_seconds} gives {self.chunk} samples, fewer than the model's "
                             f"minimum input of {self.min_length}")
        if not 0 < self.hop < self.chunk:
            raise ValueError(f"hop_seconds must be in (0, chunk_seconds) so that windows overlap (the overlap aligns "
                             f"the sources of consecutive windows); got hop {hop_seconds} s, chunk {chunk_seconds} s")

    def with_chunking(self, chunk_seconds: float | None, hop_seconds: float | None = None) -> Separator:
        """A Separator on the same model and compilations with another overlap-add window (None: whole signals)."""
        other = copy.copy(self)
        other.chunk_seconds = chunk_seconds
        if chunk_seconds is None:
            other.chunk, other.hop = None, None
        else:
            other._set_chunk(chunk_seconds, hop_seconds)
        return other

    @classmethod
    def from_checkpoint(cls, path: str | pathlib.Path, *, scan_impl: str = "auto", **kw) -> Separator:
        """From a workdir, its ``checkpoints/`` folder or a step folder (``mamba_jax.checkpoint.load_model``)."""
        from mamba_jax.checkpoint import load_model
        from mamba_jax.compile_cache import enable_compilation_cache

        enable_compilation_cache()  # persistent XLA cache; MAMBA_JAX_COMPILATION_CACHE=0 turns it off
        model, config = load_model(path, scan_impl=scan_impl)
        return cls(model, config, **kw)

    # ---- offline ------------------------------------------------------------------------------------------
    def padded_length(self, n: int) -> int:
        """The compiled length for a signal of ``n <= chunk`` samples (its bucket)."""
        n = max(n, self.min_length)
        return n if not self.bucket else -(-n // self.bucket) * self.bucket

    def _run(self, x: Float[np.ndarray, "b L"], lengths: list[int]) -> Float[np.ndarray, "b S L"]:
        """One device call on rows valid up to ``lengths``; rows padded to a power of two (at most
        ``batch_size``) so batch shapes repeat."""
        b = x.shape[0]
        rows = min(self.batch_size, 1 << (b - 1).bit_length())
        xp = np.zeros((rows, x.shape[1]), np.float32)
        xp[:b] = x
        n = np.full(rows, x.shape[1], np.int32)  # filler rows: zeros of the whole length, as before
        n[:b] = lengths
        return np.asarray(apply_model(self._graphdef, self._weights, jnp.asarray(xp), jnp.asarray(n)))[:b]

    def separate_batch(self, waves: Float[np.ndarray, "B T"], lengths=None) -> Float[np.ndarray, "B S T"]:
        """``[B, T]`` float at the model's rate (row b valid up to ``lengths[b]``, default T) -> ``[B, S, T]``
        float32, zero beyond each length. Rows of up to ``chunk`` samples (all rows when ``chunk_seconds`` is
        None) run whole, bucketed with their exact lengths; longer rows by overlap-add."""
        x = np.asarray(waves)
        if x.ndim != 2:
            raise ValueError(f"separate_batch expects waveforms of shape [B, T], got shape {x.shape}")
        if not np.issubdtype(x.dtype, np.floating):
            raise ValueError(f"separate_batch expects floating-point waveforms, got dtype {x.dtype}")
        n_rows, t = x.shape
        lengths = np.full(n_rows, t) if lengths is None else np.asarray(lengths).reshape(-1)
        if lengths.shape != (n_rows,) or np.any(lengths < 1) or np.any(lengths > t):
            raise ValueError(f"lengths must hold {n_rows} values in [1, {t}], got {lengths.tolist()}")
        for b in range(n_rows):
            if not np.all(np.isfinite(x[b, :lengths[b]])):
                raise ValueError(f"separate_batch: waveform {b} contains NaN or inf values")
        out = np.zeros((n_rows, self.num_sources, t), np.float32)
        jobs: dict[int, list[tuple[int, int, int]]] = {}  # compiled length -> [(row, start, samples)]
        for b, n in enumerate(int(v) for v in lengths):
            if self.chunk is None or n <= self.chunk:
                jobs.setdefault(self.padded_length(n), []).append((b, 0, n))
            else:
                jobs.setdefault(self.chunk, []).extend((b, s, self.chunk) for s in window_starts(n, self.chunk,
                                                                                                   self.hop))
        prev_end = {}  # row -> end of the part of out[row] written so far
        n_windows = sum(len(todo) for todo in jobs.values())
        bar = tqdm(total=n_windows, desc="separate", unit="window", leave=False,
                   disable=not self.progress or n_windows <= self.batch_size)
        for size, todo in jobs.items():
            for i in range(0, len(todo), self.batch_size):
                batch = todo[i:i + self.batch_size]
                xb = np.zeros((len(batch), size), np.float32)
                for j, (b, s, n) in enumerate(batch):
                    xb[j, :n] = x[b, s:s + n]
                yb = self._run(xb, [max(n, self.min_length) for _, _, n in batch])
                bar.update(len(batch))
                for (b, s, n), y in zip(batch, yb, strict=True):  # in order of start within a row
                    join_window(out[b], y[:, :n], s, prev_end.get(b))
                    prev_end[b] = s + n
        bar.close()
        return out

    def separate(self, wave: Float[np.ndarray, "T"], sample_rate: int) -> Float[np.ndarray, "S T"]:
        """Mono ``[T]`` float at ``sample_rate`` -> ``[S, T]`` float32 at the same rate (resampled to the model's
        rate and back, with a warning, when they differ). Inputs are checked as ``Transcriber``'s
        (``mamba_jax.data.audio.validate_waveform``: int16/int32 PCM scaled, ``[T, C]``/``[C, T]`` downmixed,
        each with a note)."""
        x, sample_rate = validate_waveform(wave, sample_rate, what="separate")
        if int(sample_rate) == self.sample_rate:
            return self.separate_batch(x[None])[0]
        warnings.warn(f"input at {sample_rate} Hz resampled to the model's {self.sample_rate} Hz (soxr_hq); the "
                      f"estimates are resampled back to {sample_rate} Hz", stacklevel=2)
        y = self.separate_batch(resample(x, int(sample_rate), self.sample_rate)[None])[0]
        back = np.stack([resample(s, self.sample_rate, int(sample_rate)) for s in y])
        return np.ascontiguousarray(fit_length(back, x.size))

    # ---- streaming ----------------------------------------------------------------------------------------
    def stream(self) -> SeparationStream:
        """A new chunk-by-chunk stream at the model's rate (causal SepMamba only; see inference/streaming.py)."""
        if self._stream_runner is None:
            self._stream_runner = StreamRunner(self.model)
        return SeparationStream(self._stream_runner)
