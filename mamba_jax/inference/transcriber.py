"""Speech to text with a trained ConMamba: waveform -> Fbank -> input normalisation -> search -> text.

    from mamba_jax.inference import Transcriber
    asr = Transcriber.from_checkpoint("runs/conmamba_small")       # workdir, checkpoints/ or a step folder
    text = asr.transcribe(wave, sample_rate=44100)                  # resampled to 16 kHz (with a notice)

Features follow ``config.features`` through the function training uses (``ConMambaASR.features``: Fbank, then
the model's own normalisation with its saved global statistics, evaluation mode). The search is
``config.decoding``'s (``mamba_jax.decoding.decode_batch``): ``method`` 'joint' (attention + CTC beam
search), 'ctc_beam' (CTC prefix beam search) or 'ctc_greedy'; a CTC-only model (``model.decoder == 'none'``)
accepts the two CTC methods only.

Batching and compilation. Waveforms are zero-padded on the right to a length bucket (1, 1.5, 2, 3, 4, 6, 8 ...
seconds: ``decoding.length_bucket``), so a stream of files of any lengths compiles a few shapes, and
``transcribe_batch`` runs several utterances in one encoder call. A model with ``model.inert_padding`` (the
default) makes that padding exact: each utterance gets the features, log-probabilities and text of its own
unpadded call (tests/inference/test_transcriber.py). A model configured with ``inert_padding=False`` (the
original's padding-dependent encoder) is run unpadded one utterance at a time by ``transcribe``, and
``transcribe_batch`` pads only to the longest utterance, as SpeechBrain's evaluation does.
"""

from __future__ import annotations

import dataclasses
import functools
import pathlib
import warnings
from collections.abc import Sequence

import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from mamba_jax.data.audio import resample, validate_waveform
from mamba_jax.decoding import beam_search_config_from, decode_batch, encode, length_bucket
from mamba_jax.layers.fbank import FbankConfig, fbank_config_from
from mamba_jax.tokenizer import Tokenizer, check_vocab_size
from mamba_jax.typing import Array, Float, Int

METHODS = ("joint", "ctc_beam", "ctc_greedy")


@functools.partial(nnx.jit, static_argnums=3)
def _features(model: nnx.Module, waves: Float[Array, "B T"], lengths: Int[Array, "B"], cfg: FbankConfig
              ) -> tuple[Float[Array, "B L F"], Int[Array, "B"]]:
    """``model.features`` in evaluation mode (Fbank + the saved normalisation), jitted."""
    return model.features(waves, lengths, cfg, train=False)


class Transcriber:
    """A ConMamba model, its config and its tokenizer, ready to decode waveforms.

    ``Transcriber(model, config, tokenizer)`` wraps an in-memory model (e.g. straight after training; ``tokenizer``
    a ``Tokenizer`` or the path of its ``.model``); ``Transcriber.from_checkpoint(path)`` loads one."""

    def __init__(self, model: nnx.Module, config: ml_collections.ConfigDict, tokenizer: Tokenizer | str):
        if config.get("task") != "asr":
            raise ValueError(f"Transcriber needs an ASR (ConMamba) checkpoint; this one is task "
                             f"{config.get('task')!r} (model {config.model.get('name')!r}): use Separator")
        if not isinstance(tokenizer, Tokenizer):
            tokenizer = Tokenizer(str(tokenizer))
        check_vocab_size(tokenizer, config.model.vocab_size,
                         fix="wrong tokenizer for this checkpoint (pass the one it was trained with)")
        self.model = model
        self.model.eval()  # dropout off; normalize() does not update statistics outside training
        self.config = config
        self.tokenizer = tokenizer
        self.features_cfg = fbank_config_from(config.features)
        self.sample_rate = self.features_cfg.sample_rate
        self.ctc_only = config.model.get("decoder", "transformer") == "none"
        method = config.decoding.method
        self.default_method = "ctc_beam" if self.ctc_only and method == "joint" else method
        self.default_beam_size = int(config.decoding.beam_size)
        self.inert_padding = bool(getattr(getattr(model, "cfg", None), "inert_padding", False))

    @classmethod
    def from_checkpoint(cls, path: str | pathlib.Path, *, tokenizer: str | pathlib.Path | None = None,
                        scan_impl: str = "auto") -> Transcriber:
        """Loads the latest checkpoint under ``path`` (``load_model``) and its tokenizer (``find_tokenizer``:
        ``<workdir>/tokenizer/tokenizer.model``, else ``config.tokenizer.model_dir``), unless ``tokenizer``
        names a ``.model`` file or its folder."""
        from mamba_jax.checkpoint import find_tokenizer, load_model, read_config

        config, _ = read_config(path)
        if config.get("task") != "asr":
            raise ValueError(f"{path}: a {config.get('task')!r} checkpoint (model {config.model.get('name')!r}), "
                             f"not an ASR one")
        model, _ = load_model(path, config, scan_impl=scan_impl)
        tok_path = tokenizer if tokenizer is not None else find_tokenizer(path, config)
        return cls(model, config, Tokenizer(str(tok_path)))

    # ---- features ------------------------------------------------------------------------------------------
    def features(self, waves: Float[Array, "B T"], lengths: Int[Array, "B"]
                 ) -> tuple[Float[Array, "B L F"], Int[Array, "B"]]:
        """Normalised Fbank features of 16 kHz waves (zero-padded) and their valid frame counts."""
        return _features(self.model, jnp.asarray(waves, jnp.float32), jnp.asarray(lengths, jnp.int32),
                         self.features_cfg)

    def _pad(self, xs: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """``[B, T]`` zero-padded batch and lengths; T is a length bucket when padding is inert."""
        t = max(x.size for x in xs)
        if self.inert_padding:
            t = length_bucket(t, minimum=self.sample_rate)
        batch = np.zeros((len(xs), t), np.float32)
        for b, x in enumerate(xs):
            batch[b, :x.size] = x
        return batch, np.array([x.size for x in xs], np.int32)

    def log_probs(self, waves: Sequence[np.ndarray], sample_rate: int) -> list[np.ndarray]:
        """CTC log-probabilities ``[L_i, V]`` (float32, valid encoder frames only) of each utterance; one encoder
        call on the padded batch."""
        xs = [self._prepare(w, sample_rate, f"log_probs[{b}]") for b, w in enumerate(waves)]
        if not xs:
            return []
        feats, frames = self.features(*self._pad(xs))
        _, enc_len, ctc = encode(self.model, feats, frames)
        ctc, enc_len = np.asarray(ctc), np.asarray(enc_len)
        return [ctc[b, :int(enc_len[b])] for b in range(len(xs))]

    def _prepare(self, wave: np.ndarray, sample_rate: int, what: str) -> np.ndarray:
        # The same checks as Separator.separate (int PCM scaled, [T, C]/[C, T] downmixed, rate a whole number).
        x, sample_rate = validate_waveform(wave, sample_rate, what=what)
        if sample_rate != self.sample_rate:
            warnings.warn(f"{what}: resampling {sample_rate} Hz -> {self.sample_rate} Hz (the model's rate)",
                          stacklevel=3)
            x = resample(x, int(sample_rate), self.sample_rate)
        return x

    # ---- decoding ------------------------------------------------------------------------------------------
    def _method(self, method: str | None) -> str:
        method = method or self.default_method
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {method!r}")
        if method == "joint" and self.ctc_only:
            raise ValueError("method 'joint' needs an attention decoder; this model is CTC-only "
                             "(use 'ctc_beam' or 'ctc_greedy')")
        return method

    def decode_features(self, feats: Float[Array, "B L F"], frames: Int[Array, "B"], *,
                        method: str | None = None, beam_size: int | None = None) -> list[str]:
        """Texts for already normalised features (``features``)."""
        method = self._method(method)
        search = beam_search_config_from(self.config.decoding, self.config.tokenizer)
        if beam_size is not None:
            if beam_size < 1:
                raise ValueError(f"beam_size must be >= 1, got {beam_size}")
            search = dataclasses.replace(search, beam_size=int(beam_size))
        ids = decode_batch(self.model, feats, frames, search, method=method)
        return [self.tokenizer.decode(i) for i in ids]

    def transcribe(self, wave: np.ndarray, sample_rate: int, *, method: str | None = None,
                   beam_size: int | None = None) -> str:
        """Text of one utterance ``wave [T]`` at ``sample_rate`` (resampled to the model's rate if needed)."""
        x = self._prepare(wave, sample_rate, "transcribe")
        feats, frames = self.features(*self._pad([x]))
        return self.decode_features(feats, frames, method=method, beam_size=beam_size)[0]

    def transcribe_batch(self, waves: Sequence[np.ndarray] | np.ndarray, sample_rate: int, *,
                         lengths: Sequence[int] | None = None, method: str | None = None,
                         beam_size: int | None = None) -> list[str]:
        """Texts of several utterances: a list of ``[T_i]`` arrays, or a zero-padded ``[B, T]`` array with
        ``lengths``. The encoder runs once on the padded batch (see the module docstring on padding)."""
        if isinstance(waves, np.ndarray) and waves.ndim == 2:
            n = [waves.shape[1]] * waves.shape[0] if lengths is None else [int(v) for v in lengths]
            waves = [waves[b, :n[b]] for b in range(waves.shape[0])]
        elif lengths is not None:
            raise ValueError("lengths goes with a padded [B, T] array, not a list of waveforms")
        xs = [self._prepare(w, sample_rate, f"transcribe_batch[{b}]") for b, w in enumerate(waves)]
        if not xs:
            return []
        feats, frames = self.features(*self._pad(xs))
        return self.decode_features(feats, frames, method=method, beam_size=beam_size)

    # ---- long recordings -----------------------------------------------------------------------------------
    def transcribe_long(self, wave: np.ndarray, sample_rate: int, *, chunk_seconds: float = 20.0,
                        method: str | None = None, beam_size: int | None = None, progress: bool = True) -> str:
        """Text of a recording of any length: cut into pieces of at most ``chunk_seconds`` at the quietest
        10 ms within the last quarter of each piece (``split_points``), each piece transcribed on its own
        (a progress bar on stderr over the pieces), the texts joined with spaces. The model never sees more than
        ``chunk_seconds`` at once, so memory stays flat; a word cut at a piece boundary can be misrecognised,
        which the quiet cut point makes rare."""
        from tqdm.auto import tqdm

        x = self._prepare(wave, sample_rate, "transcribe_long")
        cuts = split_points(x, self.sample_rate, chunk_seconds)
        pieces = [x[a:b] for a, b in zip([0] + cuts, cuts + [x.size])]
        texts = []
        for piece in tqdm(pieces, desc="transcribe", unit="chunk", disable=not progress or len(pieces) < 2,
                          leave=False):
            texts.append(self.transcribe(piece, self.sample_rate, method=method, beam_size=beam_size))
        return " ".join(t for t in texts if t)


def split_points(x: np.ndarray, sample_rate: int, chunk_seconds: float) -> list[int]:
    """Sample indices that cut ``x`` into pieces of at most ``chunk_seconds``: each cut is the start of the
    quietest 10 ms frame (least energy) in the last quarter of the piece it ends."""
    chunk = int(round(chunk_seconds * sample_rate))
    if chunk < 4 * (sample_rate // 100):
        raise ValueError(f"chunk_seconds must be at least 0.04 s, got {chunk_seconds}")
    hop = sample_rate // 100
    cuts, start = [], 0
    while x.size - start > chunk:
        lo, hi = start + chunk - chunk // 4, start + chunk  # search the last quarter
        frames = (hi - lo) // hop
        energy = np.square(x[lo:lo + frames * hop].astype(np.float64)).reshape(frames, hop).sum(1)
        cut = lo + int(np.argmin(energy)) * hop
        cuts.append(cut)
        start = cut
    return cuts


_TRANSCRIBERS: dict[tuple[str, str | None], Transcriber] = {}  # (absolute checkpoint, tokenizer) -> Transcriber


def transcribe_file(path: str | pathlib.Path, checkpoint: str | pathlib.Path | Transcriber, *,
                    method: str | None = None, beam_size: int | None = None, chunk_seconds: float = 20.0,
                    tokenizer: str | pathlib.Path | None = None, progress: bool = True) -> str:
    """Text of the audio file ``path`` (any format and rate soundfile reads; stereo averaged, other rates
    resampled, each with a warning), with the checkpoint under ``checkpoint`` (a training workdir, its
    ``checkpoints/`` or a step folder; loaded once per process and reused) or a ``Transcriber``. Recordings
    longer than ``chunk_seconds`` are transcribed in pieces with a progress bar (``Transcriber.transcribe_long``).

        from mamba_jax.inference.transcriber import transcribe_file
        text = transcribe_file("interview.flac", "runs/conmamba_small")
    """
    from mamba_jax.data.audio import audio_info, load_audio

    if isinstance(checkpoint, Transcriber):
        asr = checkpoint
    else:
        key = (str(pathlib.Path(checkpoint).expanduser().absolute()), None if tokenizer is None else str(tokenizer))
        if key not in _TRANSCRIBERS:
            _TRANSCRIBERS[key] = Transcriber.from_checkpoint(key[0], tokenizer=tokenizer)
        asr = _TRANSCRIBERS[key]
    wave = load_audio(path, None, on_stereo="downmix")
    rate = audio_info(path)[1]
    return asr.transcribe_long(wave, rate, chunk_seconds=chunk_seconds, method=method, beam_size=beam_size,
                               progress=progress)
