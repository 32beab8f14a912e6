"""Random-access sources over the WSJ0 family: wsj0-2mix/3mix trees and the raw-WSJ0 pool.

Layouts (docs/data.md):

* wsj0-2mix: ``<root>/wav{8k,16k}/{min,max}/{tr,cv,tt}/{mix,s1,s2}/NAME.wav`` with
  ``NAME = {utt1}_{snr1}_{utt2}_{snr2}``; SNRs are verbatim list text and may be in exponent
  form (``5.2094e-07``), so names are split on ``_``. ``s1`` is the first utterance. The optional
  lists ``mix_2_spk_{tr,cv,tt}.txt`` (``path1 snr1 path2 snr2`` per line) fix the order.
  ``<root>`` may also be the folder holding ``2speakers/`` or ``wsj0-2mix/2speakers/``.
* raw WSJ0 pool: ``<root>/si_tr_s/<spk>/<utt>.wav`` (converted from SPHERE ``.wv1``); the speaker
  is the first three characters of the file stem. ``<root>`` may also hold ``wsj0/``.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from collections.abc import Sequence

import numpy as np

from mamba_jax.data.audio import (
    AudioError, MissingCorpusError, PathLike, RatePolicy, SphereFileError, audio_info, load_audio,
    require_dir, resampled_length)

__all__ = ["MixName", "Wsj0MixSource", "Wsj0PoolSource", "format_mix_name", "parse_mix_list",
           "parse_mix_name", "resolve_wsj0mix_root", "resolve_wsj0_root"]

SPLIT_DIRS = {"train": "tr", "valid": "cv", "test": "tt", "tr": "tr", "cv": "cv", "tt": "tt"}


@dataclasses.dataclass(frozen=True)
class MixName:
    """Parsed wsj0-mix name: utterance ids and the SNR texts (verbatim) and values."""
    utts: tuple[str, ...]
    snr_texts: tuple[str, ...]

    @property
    def snrs(self) -> tuple[float, ...]:
        return tuple(float(s) for s in self.snr_texts)


def parse_mix_name(name: str) -> MixName:
    """Split ``40na010x_1.9857_01xo031a_-1.9857`` (``.wav`` optional) into utts and SNRs.

    Exponent SNRs (``5.2094e-07``) parse because the split is on ``_`` only.
    """
    stem = name[:-4] if name.endswith(".wav") else name
    parts = stem.split("_")
    if len(parts) < 4 or len(parts) % 2:
        raise ValueError(f"not a wsj0-mix name (utt_snr_utt_snr...): {name!r}")
    utts, snrs = tuple(parts[0::2]), tuple(parts[1::2])
    for s in snrs:
        float(s)  # raises ValueError naming the bad token
    return MixName(utts, snrs)


def format_mix_name(utts: Sequence[str], snr_texts: Sequence[str]) -> str:
    """Inverse of :func:`parse_mix_name` (without extension)."""
    return "_".join(f"{u}_{s}" for u, s in zip(utts, snr_texts))


def parse_mix_list(path: PathLike) -> list[tuple[tuple[str, ...], tuple[str, ...]]]:
    """Read ``mix_2_spk_*.txt``: per line ``(source paths, snr texts)``; errors name the line."""
    rows = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            tok = line.split()
            if not tok:
                continue
            if len(tok) % 2:
                raise ValueError(f"{path}:{lineno}: expected 'path snr path snr ...', got {line!r}")
            try:
                [float(t) for t in tok[1::2]]
            except ValueError as e:
                raise ValueError(f"{path}:{lineno}: bad SNR in {line.strip()!r}") from e
            rows.append((tuple(tok[0::2]), tuple(tok[1::2])))
    return rows


def _first_dir(candidates: Sequence[pathlib.Path]) -> pathlib.Path | None:
    for c in candidates:
        if c.is_dir():
            return c
    return None


def resolve_wsj0mix_root(root: PathLike, num_sources: int = 2) -> pathlib.Path:
    """Find the folder holding ``wav8k``/``wav16k`` under ``root`` (accepts three depths)."""
    r = require_dir(root, "wsj0-mix root")
    spk = f"{num_sources}speakers"
    found = _first_dir([r / d / spk for d in ("wsj0-2mix", "wsj0-mix", f"wsj0-{num_sources}mix")]
                       + [r / spk, r])
    assert found is not None
    if not any((found / w).is_dir() for w in ("wav8k", "wav16k")):
        raise MissingCorpusError(found, f"no wav8k/ or wav16k/ folder (expected the wsj0-mix "
                                 f"tree <root>/{spk}/wav8k/min/tr/mix)")
    return found


def resolve_wsj0_root(root: PathLike) -> pathlib.Path:
    """Find the raw-WSJ0 folder (the one holding ``si_tr_s``) under ``root``."""
    r = require_dir(root, "WSJ0 root")
    found = _first_dir([r / "wsj0", r / "WSJ0", r / "csr_1" / "wsj0", r])
    assert found is not None
    return found


class Wsj0MixSource:
    """Static wsj0-mix split: item ``i`` -> ``{"mix": f32 [T], "sources": f32 [S, T], "name": str}``.

    Args:
      root: see :func:`resolve_wsj0mix_root`.
      split: ``tr``/``cv``/``tt`` (or ``train``/``valid``/``test``).
      sample_rate: 8000 reads ``wav8k``, 16000 ``wav16k``. When that folder is missing and the
        policy is ``"resample"``, the other rate's folder is read and resampled.
      mode: ``min`` or ``max``.
      list_file: a ``mix_2_spk_*.txt`` to order/validate the items; ``"auto"`` looks for
        ``mix_{S}_spk_{split}.txt`` beside the tree (up to three levels up); ``None`` ignores lists.
    """

    def __init__(self, root: PathLike, split: str = "tr", *, sample_rate: int = 8000,
                 mode: str = "min", num_sources: int = 2, on_rate_mismatch: RatePolicy = "resample",
                 list_file: PathLike | None | str = "auto"):
        if split not in SPLIT_DIRS:
            raise ValueError(f"split must be one of {sorted(SPLIT_DIRS)}, got {split!r}")
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        self.split = SPLIT_DIRS[split]
        self.sample_rate = sample_rate
        self.num_sources = num_sources
        self.on_rate_mismatch = on_rate_mismatch
        base = resolve_wsj0mix_root(root, num_sources)
        self.base = base
        want = f"wav{sample_rate // 1000}k"
        rate_dir = base / want
        if not rate_dir.is_dir():
            other = [d for d in ("wav8k", "wav16k") if (base / d).is_dir()]
            if on_rate_mismatch == "error" or not other:
                raise MissingCorpusError(rate_dir, f"missing corpus folder for {sample_rate} Hz "
                                         f"(have: {other}); set on_rate_mismatch='resample' to "
                                         "resample another rate on load")
            rate_dir = base / other[0]
        self.dir = require_dir(rate_dir / mode / self.split, f"wsj0-mix {mode}/{self.split}")
        sub = ["mix"] + [f"s{k + 1}" for k in range(num_sources)]
        for s in sub:
            require_dir(self.dir / s, f"wsj0-mix '{s}' folder")
        names = sorted(p.name for p in os.scandir(self.dir / "mix") if p.name.endswith(".wav"))
        lst = self._find_list(list_file)
        self.list_file = lst
        if lst is not None:
            listed = [format_mix_name([pathlib.Path(p).stem for p in paths], snrs) + ".wav"
                      for paths, snrs in parse_mix_list(lst)]
            have = set(names)
            missing = [n for n in listed if n not in have]
            if missing:
                raise AudioError(self.dir / "mix" / missing[0],
                                 f"listed in {lst} but missing on disk ({len(missing)} missing)")
            names = listed
        if not names:
            raise MissingCorpusError(self.dir / "mix", "no .wav mixtures in the folder")
        for n in names:  # matched by name: every mixture needs its sources
            for s in sub[1:]:
                if not os.path.exists(self.dir / s / n):
                    raise AudioError(self.dir / s / n, f"source file missing for mixture {n}")
        self.names = names
        self._lengths: np.ndarray | None = None

    def _find_list(self, list_file: PathLike | None | str) -> pathlib.Path | None:
        if list_file is None:
            return None
        if list_file != "auto":
            p = pathlib.Path(list_file)
            if not p.is_file():
                raise MissingCorpusError(p, "mix list file not found")
            return p
        fname = f"mix_{self.num_sources}_spk_{self.split}.txt"
        d = self.dir
        for _ in range(6):
            if (d / fname).is_file():
                return d / fname
            d = d.parent
        return None

    def __len__(self) -> int:
        return len(self.names)

    def paths(self, i: int) -> list[pathlib.Path]:
        """``[mix, s1, ..., sS]`` paths of item ``i``."""
        n = self.names[i]
        return [self.dir / "mix" / n] + [self.dir / f"s{k + 1}" / n for k in range(self.num_sources)]

    def parsed_name(self, i: int) -> MixName:
        """Utterance ids and SNRs of item ``i`` (from its file name)."""
        return parse_mix_name(self.names[i])

    def lengths(self) -> np.ndarray:
        """``int64 [N]`` mixture lengths at ``sample_rate`` (header reads; cached)."""
        if self._lengths is None:
            out = []
            for i in range(len(self)):
                frames, sr, _ = audio_info(self.paths(i)[0])
                out.append(resampled_length(frames, sr, self.sample_rate))
            self._lengths = np.asarray(out, np.int64)
        return self._lengths

    def __getitem__(self, i: int) -> dict:
        ps = self.paths(int(i))
        kw = dict(on_rate_mismatch=self.on_rate_mismatch)
        mix = load_audio(ps[0], self.sample_rate, **kw)
        srcs = [load_audio(p, self.sample_rate, **kw) for p in ps[1:]]
        t = min([len(mix)] + [len(s) for s in srcs])
        if any(len(s) != len(mix) for s in srcs):
            # resampling paths of different lengths can differ by one sample; anything else is bad
            if max(abs(len(s) - len(mix)) for s in srcs) > 1:
                raise AudioError(ps[0], f"mixture and sources differ in length "
                                 f"({len(mix)} vs {[len(s) for s in srcs]})")
        return {"mix": mix[:t], "sources": np.stack([s[:t] for s in srcs]), "name": self.names[i]}


class Wsj0PoolSource:
    """Raw-WSJ0 utterance pool for dynamic mixing: ``load(i) -> float32 [T]`` at ``sample_rate``.

    Attributes:
      files: sorted utterance paths; speakers: sorted speaker ids (``stem[:3]``);
      speaker_files: per speaker, the indices into ``files``; file_speaker: ``int [N]``.
    """

    def __init__(self, root: PathLike, subsets: Sequence[str] = ("si_tr_s",), *,
                 sample_rate: int = 8000, on_rate_mismatch: RatePolicy = "resample"):
        base = resolve_wsj0_root(root)
        self.base = base
        self.sample_rate = sample_rate
        self.on_rate_mismatch = on_rate_mismatch
        files: list[pathlib.Path] = []
        for sub in subsets:
            d = require_dir(base / sub, f"WSJ0 '{sub}' folder of speaker folders")
            wavs = sorted(d.glob("*/*.wav"))
            if not wavs:
                sph = sorted(d.glob("*/*.wv[12]"))
                if sph:
                    raise SphereFileError(sph[0], f"{len(sph)} NIST SPHERE .wv1/.wv2 files and no "
                                          ".wav under " f"{d}; convert each with "
                                          "`sph2pipe -f wav X.wv1 X.wav` (same tree)")
                raise MissingCorpusError(d, "no <spk>/*.wav utterances found")
            files.extend(wavs)
        self.files = files
        spk_of = [p.stem[:3] for p in files]
        self.speakers = sorted(set(spk_of))
        index = {s: k for k, s in enumerate(self.speakers)}
        self.file_speaker = np.asarray([index[s] for s in spk_of], np.int64)
        self.speaker_files = [np.flatnonzero(self.file_speaker == k) for k in range(len(self.speakers))]

    def __len__(self) -> int:
        return len(self.files)

    def load(self, i: int) -> np.ndarray:
        """Utterance ``i`` as ``float32 [T]`` at ``sample_rate``."""
        return load_audio(self.files[int(i)], self.sample_rate,
                          on_rate_mismatch=self.on_rate_mismatch)
