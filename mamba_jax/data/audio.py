"""Audio file I/O for the data pipeline (soundfile in, librosa/soxr for resampling).

Every loader returns a mono ``float32 [T]`` array in [-1, 1] at the requested rate. Each bad
input raises an :class:`AudioError` subclass whose message names the file and says what to do:

==========================  ===========================================================
condition                   error
==========================  ===========================================================
NIST SPHERE header          :class:`SphereFileError` (convert with ``sph2pipe -f wav``)
unreadable / corrupt        :class:`CorruptAudioError`
zero samples                :class:`EmptyAudioError`
all samples exactly zero    :class:`SilentAudioError`
rate != requested           :class:`SampleRateError` when ``on_rate_mismatch="error"``
more than one channel       :class:`ChannelError` when ``on_stereo="error"``
missing corpus folder       :class:`MissingCorpusError` (see :func:`require_dir`)
==========================  ===========================================================
"""

from __future__ import annotations

import io
import math
import numbers
import os
import pathlib
import re
import warnings
from typing import Literal

import numpy as np
import soundfile as sf

__all__ = [
    "AUDIO_EXTENSIONS",
    "AudioError",
    "AudioNote",
    "ChannelError",
    "CorruptAudioError",
    "EmptyAudioError",
    "MissingCorpusError",
    "SampleRateError",
    "SilentAudioError",
    "SphereFileError",
    "audio_info",
    "is_sphere",
    "load_audio",
    "require_dir",
    "resample",
    "encode_audio",
    "validate_waveform",
    "write_audio",
]

RatePolicy = Literal["resample", "error"]
StereoPolicy = Literal["downmix", "error"]
PathLike = str | os.PathLike

SPHERE_MAGIC = b"NIST_1A"

# File extensions that folder scans pick up: those of the formats this libsndfile decodes.
_EXTENSIONS = {"WAV": (".wav",), "FLAC": (".flac",), "MP3": (".mp3",), "OGG": (".ogg", ".oga", ".opus"),
               "AIFF": (".aif", ".aiff", ".aifc"), "AU": (".au", ".snd"), "CAF": (".caf",), "W64": (".w64",),
               "RF64": (".rf64",)}
AUDIO_EXTENSIONS = tuple(sorted(e for f in sf.available_formats() for e in _EXTENSIONS.get(f, ())))


class AudioNote(UserWarning):
    """Something about an input was adjusted (downmixed, rescaled, truncated file read as far as it goes)."""


class AudioError(ValueError):
    """Base class for a bad audio input; ``path`` is the offending file or folder."""

    def __init__(self, path: PathLike, message: str):
        self.path = str(path)
        super().__init__(f"{self.path}: {message}")


class SphereFileError(AudioError):
    """The file is NIST SPHERE (raw WSJ0 ``.wv1``/``.wv2``), usually shorten-compressed."""


class CorruptAudioError(AudioError):
    """soundfile could not open or decode the file."""


class EmptyAudioError(AudioError):
    """The file holds zero samples."""


class SilentAudioError(AudioError):
    """Every sample is exactly zero."""


class SampleRateError(AudioError):
    """The file's sample rate differs from the requested one and the policy is ``"error"``."""


class ChannelError(AudioError):
    """The file has more than one channel and the policy is ``"error"``."""


class MissingCorpusError(AudioError, FileNotFoundError):
    """A corpus folder the configuration points at does not exist."""


def require_dir(path: PathLike, what: str) -> pathlib.Path:
    """Return ``path`` as a Path, or raise :class:`MissingCorpusError` naming it and ``what``."""
    p = pathlib.Path(path)
    if not p.is_dir():
        raise MissingCorpusError(
            p, f"missing corpus folder ({what}); check the data root in the config "
            "(root=None builds and uses the embedded synthetic corpus)")
    return p


def is_sphere(path: PathLike) -> bool:
    """True when the file starts with the NIST SPHERE magic ``NIST_1A``."""
    try:
        with open(path, "rb") as f:
            return f.read(len(SPHERE_MAGIC)) == SPHERE_MAGIC
    except OSError:
        return False


def _sphere_error(path: PathLike) -> SphereFileError:
    return SphereFileError(
        path, "NIST SPHERE file (raw WSJ0 is shorten-compressed SPHERE, which soundfile cannot "
        "decode). Convert it first: `sph2pipe -f wav IN.wv1 OUT.wav` (keep the tree, "
        "change the extension to .wav), as the wsj0-2mix scripts expect.")


def audio_info(path: PathLike) -> tuple[int, int, int]:
    """Read the header only: ``(frames, sample_rate, channels)``; raises like :func:`load_audio`."""
    if not os.path.exists(path):
        raise CorruptAudioError(path, "file does not exist")
    if is_sphere(path):
        raise _sphere_error(path)
    try:
        info = sf.info(str(path))
    except Exception as e:  # soundfile raises LibsndfileError/RuntimeError/TypeError
        raise CorruptAudioError(path, f"unreadable audio file ({e})") from e
    return int(info.frames), int(info.samplerate), int(info.channels)


def resample(x: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Resample ``float32 [T] -> float32 [ceil(T * target_sr / orig_sr)]`` with librosa (soxr_hq)."""
    if orig_sr == target_sr:
        return x
    import librosa  # imported lazily: it pulls numba/llvmlite in

    y = librosa.resample(np.asarray(x, np.float32), orig_sr=orig_sr, target_sr=target_sr,
                         res_type="soxr_hq")
    return np.asarray(y, np.float32)


def load_audio(
    path: PathLike,
    sample_rate: int | None,
    *,
    on_rate_mismatch: RatePolicy = "resample",
    on_stereo: StereoPolicy = "downmix",
    allow_silent: bool = False,
) -> np.ndarray:
    """Load a file as mono ``float32 [T]``.

    Args:
      path: audio file (any format libsndfile reads: wav, flac, ...).
      sample_rate: requested rate; ``None`` keeps the file's rate.
      on_rate_mismatch: ``"resample"`` (librosa soxr_hq) or ``"error"``.
      on_stereo: ``"downmix"`` (channel mean, with a warning naming the file) or ``"error"``.
      allow_silent: accept a file whose samples are all exactly zero.

    Returns:
      ``float32 [T]``; ``T`` is the resampled length when resampling happened.
    """
    if on_rate_mismatch not in ("resample", "error"):
        raise ValueError(f"on_rate_mismatch must be 'resample' or 'error', got {on_rate_mismatch!r}")
    if on_stereo not in ("downmix", "error"):
        raise ValueError(f"on_stereo must be 'downmix' or 'error', got {on_stereo!r}")
    if not os.path.exists(path):
        raise CorruptAudioError(path, "file does not exist")
    if os.path.getsize(path) == 0:
        raise EmptyAudioError(path, "empty file (0 bytes)")
    if is_sphere(path):
        raise _sphere_error(path)
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)
        _note_truncation(path)
    except Exception as e:
        raise CorruptAudioError(path, f"unreadable or corrupt audio file ({e})") from e
    if data.shape[0] == 0:
        raise EmptyAudioError(path, "audio file holds no samples")
    if data.shape[1] > 1:
        if on_stereo == "error":
            raise ChannelError(path, f"{data.shape[1]} channels; expected mono "
                               "(set on_stereo='downmix' to average the channels)")
        warnings.warn(f"{path}: {data.shape[1]} channels, downmixed to mono by averaging", AudioNote,
                      stacklevel=2)
    x = data.mean(axis=1, dtype=np.float32) if data.shape[1] > 1 else data[:, 0]
    if not allow_silent and not np.any(x):
        raise SilentAudioError(path, "every sample is zero (silent file)")
    if sample_rate is not None and sr != sample_rate:
        if on_rate_mismatch == "error":
            raise SampleRateError(path, f"sample rate {sr} Hz, expected {sample_rate} Hz "
                                  "(set on_rate_mismatch='resample' to convert on load)")
        x = resample(x, sr, sample_rate)
    return np.ascontiguousarray(x, dtype=np.float32)


def _note_truncation(path: PathLike) -> None:
    """Warns (:class:`AudioNote`) when the header promises more audio than the file holds (a cut-off download
    or copy): libsndfile then reads what is there without an error."""
    m = re.search(r"data\s*:\s*(\d+)\s*\(should be (\d+)\)", sf.info(str(path)).extra_info)
    if m and int(m.group(2)) < int(m.group(1)):
        warnings.warn(f"{path}: truncated file: the header declares {int(m.group(1))} bytes of audio but only "
                      f"{int(m.group(2))} are present; using those", AudioNote, stacklevel=3)


_INT_SCALE = {np.dtype(np.int16): 2.0 ** 15, np.dtype(np.int32): 2.0 ** 31}


def validate_waveform(wave: np.ndarray, sample_rate: float, *, what: str = "waveform",
                      max_channels: int = 8) -> tuple[np.ndarray, int]:
    """The one input check of ``Separator`` and ``Transcriber``: ``(mono float32 [T], int sample rate)``.

    * ``float16/32/64`` is taken as is (full scale = 1); ``int16``/``int32`` PCM is scaled by ``2**-15`` /
      ``2**-31`` to [-1, 1] with an :class:`AudioNote`; other dtypes (uint8, bool, complex) are refused.
    * ``[T]`` is mono; ``[T, C]`` (soundfile's layout) and ``[C, T]`` (torchaudio's) with ``2 <= C <=
      max_channels`` channels are averaged to mono with a note; ``[T, 1]``/``[1, T]`` are squeezed. A 2-D shape
      whose channel axis cannot be told (both or neither dimension <= ``max_channels``) is refused.
    * ``sample_rate`` must be a positive integer (``16000.0`` is accepted, ``8000.5`` is not).
    * Empty, NaN or infinite inputs are refused. Every refusal is a ``ValueError`` starting with ``what``.
    """
    x = np.asarray(wave)
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, numbers.Real) or \
            not float(sample_rate).is_integer() or sample_rate <= 0:
        raise ValueError(f"{what}: sample_rate must be a positive whole number of Hz, got {sample_rate!r}")
    rate = int(sample_rate)
    if x.dtype in _INT_SCALE:
        warnings.warn(f"{what}: {x.dtype} PCM scaled by 1/{int(_INT_SCALE[x.dtype])} to [-1, 1]", AudioNote,
                      stacklevel=3)
        x = x.astype(np.float64) / _INT_SCALE[x.dtype]
    elif not np.issubdtype(x.dtype, np.floating):
        raise ValueError(f"{what}: expected float samples in [-1, 1] (or int16/int32 PCM), got dtype {x.dtype}")
    if x.ndim == 2:
        if 1 in x.shape:
            x = x.reshape(-1)
        else:
            t_axis = [a for a in (0, 1) if x.shape[a] > max_channels and x.shape[1 - a] <= max_channels]
            if len(t_axis) != 1:
                raise ValueError(f"{what}: cannot tell channels from time in shape {x.shape}: pass a mono [T] "
                                 f"waveform (or [T, C] / [C, T] with at most {max_channels} channels)")
            layout = "[T, C]" if t_axis[0] == 0 else "[C, T]"
            warnings.warn(f"{what}: {x.shape[1 - t_axis[0]]} channels ({layout} {x.shape}) downmixed to mono by "
                          f"averaging", AudioNote, stacklevel=3)
            x = x.mean(axis=1 - t_axis[0])
    if x.ndim != 1:
        raise ValueError(f"{what}: expected a mono waveform [T] (or [T, C] / [C, T]), got shape {x.shape}")
    if x.size == 0:
        raise ValueError(f"{what}: empty waveform")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{what}: the waveform contains NaN or infinite samples")
    return np.ascontiguousarray(x, dtype=np.float32), rate


def resampled_length(frames: int, orig_sr: int, target_sr: int) -> int:
    """Length soxr produces when resampling ``frames`` samples (``ceil(frames * t / o)``)."""
    if orig_sr == target_sr:
        return frames
    return int(math.ceil(frames * target_sr / orig_sr))


def encode_audio(x: np.ndarray, sample_rate: int, fmt: str = "WAV", subtype: str = "PCM_16") -> bytes:
    """The bytes of an audio file (``fmt`` ``"WAV"`` or ``"FLAC"``) holding mono ``float32 [T]`` as PCM_16
    (``int16(round(2**15 x))``, as wsj0-2mix)."""
    q = np.clip(np.round(np.asarray(x, np.float64) * 32768.0), -32768, 32767).astype(np.int16)
    buf = io.BytesIO()
    sf.write(buf, q, sample_rate, subtype=subtype, format=fmt)
    return buf.getvalue()


def write_audio(path: PathLike, x: np.ndarray, sample_rate: int, subtype: str = "PCM_16", *,
                fsync: bool = False) -> None:
    """Write mono ``float32 [T]`` as PCM_16 (``int16(round(2**15 x))``, as wsj0-2mix) WAV or FLAC.

    The format follows the extension (``.wav`` or ``.flac``); parents are created. The file is encoded in memory
    and renamed into place (``mamba_jax.fileio``): a failed write leaves no file and raises
    :class:`mamba_jax.fileio.OutputError` naming the file and the OS cause (soundfile's own writer says only
    "System error")."""
    from mamba_jax.fileio import write_atomic

    p = pathlib.Path(path)
    fmt = "FLAC" if p.suffix.lower() == ".flac" else "WAV"
    write_atomic(p, encode_audio(x, sample_rate, fmt, subtype), fsync=fsync)
