"""One call from an audio file to separated files, as SpeechBrain's ``separate_file`` and Asteroid's
``separate`` offer::

    from mamba_jax.inference import separate_file
    paths = separate_file("meeting.wav", "runs/quickstart", "separated/")   # [separated/meeting_s1.wav, ..._s2.wav]

The file may be any format and rate soundfile reads (stereo is averaged, other rates are resampled to the
model's and back, each with an :class:`mamba_jax.data.audio.AudioNote` warning). Estimates are written as
16-bit WAV at the input's rate, ``<out_dir>/<stem>_s<k>.wav``; an existing file is never replaced unless
``overwrite=True``. ``mamba-jax separate`` uses the same writer (:func:`write_estimates`).
"""

from __future__ import annotations

import os
import pathlib
import warnings

import numpy as np

from mamba_jax.data.audio import AudioNote, audio_info, encode_audio, load_audio
from mamba_jax.fileio import write_many_atomic

__all__ = ["estimate_paths", "separate_file", "write_estimates"]

PathLike = str | os.PathLike

_SEPARATORS: dict[tuple[str, str], object] = {}  # (absolute checkpoint path, scan_impl) -> Separator


def estimate_paths(out_dir: PathLike, stem: str, num_sources: int) -> list[pathlib.Path]:
    """``<out_dir>/<stem>_s1.wav ... _s<num_sources>.wav``."""
    return [pathlib.Path(out_dir) / f"{stem}_s{k + 1}.wav" for k in range(num_sources)]


def write_estimates(est: np.ndarray, sample_rate: int, dests: list[pathlib.Path], *, overwrite: bool = False
                    ) -> float:
    """Writes ``est [S, T]`` to ``dests`` (16-bit WAV). Refuses (``FileExistsError``, before writing anything)
    when one exists and ``overwrite`` is False. Estimates peaking above 0.999 are scaled down together (the
    scale-invariant training leaves their level free) so PCM_16 does not clip; returns that scale (1 if none).
    Written atomically, all or none: a failed write (disk full, read-only folder) leaves none of them and raises
    :class:`mamba_jax.fileio.OutputError` naming the file and the OS cause."""
    if len(dests) != est.shape[0]:
        raise ValueError(f"{est.shape[0]} estimates but {len(dests)} destinations")
    if not overwrite:
        existing = [str(d) for d in dests if d.exists()]
        if existing:
            raise FileExistsError(f"{existing[0]} already exists (pass --overwrite / overwrite=True to replace it, "
                                  f"or choose another output folder)")
    for d in dests:
        if d.parent.exists() and not d.parent.is_dir():
            raise NotADirectoryError(f"{d.parent} is a file, not a folder: choose another output folder")
    peak = float(np.max(np.abs(est)))
    scale = 0.999 / peak if peak > 0.999 else 1.0
    # all estimates or none: each under a temporary name, renamed once every one is written
    write_many_atomic([(d, encode_audio(e * scale, sample_rate)) for d, e in zip(dests, est, strict=True)])
    return scale


def _separator(checkpoint, scan_impl: str):
    from mamba_jax.inference.separator import Separator

    if isinstance(checkpoint, Separator):
        return checkpoint
    key = (str(pathlib.Path(checkpoint).expanduser().absolute()), scan_impl)
    if key not in _SEPARATORS:
        _SEPARATORS.clear()  # keep one model in memory
        _SEPARATORS[key] = Separator.from_checkpoint(key[0], scan_impl=scan_impl, progress=True)
    return _SEPARATORS[key]


def separate_file(path: PathLike, checkpoint, out_dir: PathLike, *, overwrite: bool = False,
                  scan_impl: str = "auto") -> list[pathlib.Path]:
    """Separates the audio file ``path`` with ``checkpoint`` (a training workdir, its ``checkpoints/`` folder,
    a step folder, or a :class:`mamba_jax.inference.Separator`) into ``<out_dir>/<stem>_s<k>.wav`` at the
    file's rate; returns those paths. The separator of a checkpoint path is kept for the next call. Long files
    are separated by overlap-add with a progress bar on stderr."""
    path = pathlib.Path(path)
    sep = _separator(checkpoint, scan_impl)
    dests = estimate_paths(out_dir, path.stem, sep.num_sources)
    if not overwrite:
        for d in dests:
            if d.exists():  # before the separation: fail fast
                raise FileExistsError(f"{d} already exists (pass overwrite=True to replace it)")
    wave = load_audio(path, None, on_stereo="downmix")
    rate = audio_info(path)[1]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*resampled to the model's.*")
        est = np.asarray(sep.separate(wave, rate))
    if rate != sep.sample_rate:
        warnings.warn(f"{path}: {rate} Hz resampled to the model's {sep.sample_rate} Hz; estimates written at "
                      f"{rate} Hz", AudioNote, stacklevel=2)
    scale = write_estimates(est, rate, dests, overwrite=overwrite)
    if scale != 1.0:
        warnings.warn(f"{path}: estimates scaled by {scale:.3f} to avoid clipping", AudioNote, stacklevel=2)
    return dests
