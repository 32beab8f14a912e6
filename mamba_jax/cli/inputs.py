"""The audio inputs of ``separate`` and ``transcribe``: files and folders expanded, unique output names,
loading with notes, per-file errors reported and skipped."""

from __future__ import annotations

import pathlib
import warnings
from collections.abc import Callable, Sequence

from mamba_jax.cli.errors import UsageError, error, note, one_line


def expand_inputs(inputs: Sequence[str], exclude: pathlib.Path | None = None
                  ) -> list[tuple[pathlib.Path, pathlib.Path]]:
    """``(file, name relative to the output folder)`` for every file argument and every audio file under a
    folder argument (sorted; the extensions of ``mamba_jax.data.audio.AUDIO_EXTENSIONS``), except those under
    the folder ``exclude`` (the output folder: a re-run must not separate its own estimates). A missing path or
    a folder without audio is a ``UsageError``. Names that two inputs share (``a.wav`` and ``a.flac``, or one
    name given from two folders) are made unique: the extension joins the stem (``a_wav``), then a counter."""
    from mamba_jax.data.audio import AUDIO_EXTENSIONS

    skip = None if exclude is None else exclude.expanduser().resolve()

    def excluded(f: pathlib.Path) -> bool:
        return skip is not None and (f.parent.resolve() / f.name).is_relative_to(skip)

    out = []
    for arg in inputs:
        p = pathlib.Path(arg).expanduser()
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in AUDIO_EXTENSIONS)
            files = [f for f in found if not excluded(f)]
            if not files:
                raise UsageError(f"{p}: folder holds no audio file" + (
                    f" outside the output folder {exclude}" if found else f" ({', '.join(AUDIO_EXTENSIONS)})"))
            out.extend((f, f.relative_to(p)) for f in files)
        elif p.is_file():
            out.append((p, pathlib.Path(p.name)))
        else:
            raise UsageError(f"{p}: no such file or folder")
    return _unique_names(out)


def _unique_names(files: list[tuple[pathlib.Path, pathlib.Path]]) -> list[tuple[pathlib.Path, pathlib.Path]]:
    """Output names (``rel`` without suffix) made unique, with a note for each renamed input: inputs that differ
    only in extension get it added to the stem (``a.wav``, ``a.flac`` -> ``a_wav``, ``a_flac``); others sharing a
    name (the same name from two folders) get a counter after the first (``b``, ``b_2``)."""
    def key(rel):
        return (rel.parent / rel.stem).as_posix().lower()  # case-insensitive file systems collide too

    groups: dict[str, list[str]] = {}
    for _, rel in files:
        groups.setdefault(key(rel), []).append(rel.suffix.lower())
    out, taken = [], set()
    for path, rel in files:
        suffixes = groups[key(rel)]
        new = rel
        if len(suffixes) > 1 and len(set(suffixes)) == len(suffixes):
            new = rel.with_name(f"{rel.stem}_{rel.suffix.lstrip('.').lower()}{rel.suffix}")
        base, k = new, 2
        while key(new) in taken:
            new = base.with_name(f"{base.stem}_{k}{base.suffix}")
            k += 1
        taken.add(key(new))
        if len(suffixes) > 1:
            note(f"{path}: another input has the same name; its estimates are {new.with_suffix('')}_s<k>.wav")
        out.append((path, new))
    return out


def load_input(path: pathlib.Path):
    """``(mono float32 [T], sample rate)`` of ``path``; downmix warnings become notes; NaN or infinite samples
    are a ``ValueError``."""
    import numpy as np

    from mamba_jax.data.audio import audio_info, load_audio

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        wave = load_audio(path, None, on_stereo="downmix")
    for w in caught:
        note(str(w.message))
    if not np.all(np.isfinite(wave)):  # a float WAV/FLAC can hold them; say so here, naming the file
        raise ValueError(f"the audio holds NaN or infinite samples ({int(np.sum(~np.isfinite(wave)))} of "
                         f"{wave.size}): a float file with invalid values; fix or re-export it")
    return wave, audio_info(path)[1]


def run_files(files: list[tuple[pathlib.Path, pathlib.Path]], fn: Callable[[pathlib.Path, pathlib.Path], None]
               ) -> int:
    """Applies ``fn`` to every file; bad audio and per-file errors are reported and skipped."""
    from mamba_jax.data.audio import AudioError
    from mamba_jax.fileio import OutputError

    failed = []
    for i, (path, rel) in enumerate(files):
        try:
            fn(path, rel)
        except AudioError as e:
            error(one_line(e))
            failed.append(str(path))
        except OutputError as e:  # names the output file and the OS cause; nothing of it was left behind
            error(f"{path}: {e}")
            failed.append(str(path))
            if e.folder_fault:  # full, read-only or unwritable: every further write would fail the same way
                error(f"stopped: {i + 1 - len(failed)} of {len(files)} input(s) written; the output folder "
                      f"cannot be written to ({e.cause})")
                return 1
        except (ValueError, OSError) as e:  # includes FileExistsError: an estimate that is already there
            error(f"{path}: {one_line(e)}")
            failed.append(str(path))
    if failed:
        error(f"{len(failed)} of {len(files)} file(s) failed: " + ", ".join(failed))
        return 1
    return 0
