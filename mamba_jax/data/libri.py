"""Random-access sources over LibriSpeech (flac + ``*.trans.txt``) and LibriMix (metadata CSVs).

Layouts (docs/data.md):

* LibriSpeech: ``<root>/<split>/<spk>/<chap>/<spk>-<chap>-<utt4>.flac`` and one
  ``<spk>-<chap>.trans.txt`` per chapter (``ID TEXT`` lines). ``<root>`` may hold ``LibriSpeech/``.
* LibriMix: ``<root>/Libri{S}Mix/wav{8k,16k}/{min,max}/metadata/mixture_{split}_{type}.csv`` with
  ``mixture_ID,mixture_path,source_1_path,...[,noise_path],length``; audio under
  ``.../{min,max}/{split}/{mix_clean,...,s1,s2}/<utt1>_<utt2>.wav``. The CSV paths are absolute
  on the machine that generated them; a path that does not exist is re-rooted on the local tree
  by its last three components (``<split>/<folder>/<file>``).
"""

from __future__ import annotations

import csv
import pathlib
from collections.abc import Sequence

import numpy as np

from mamba_jax.data.audio import (
    AudioError, MissingCorpusError, PathLike, RatePolicy, audio_info, load_audio, require_dir,
    resampled_length)

__all__ = ["LibriMixSource", "LibriSpeechSource", "parse_trans_file", "resolve_librispeech_root"]


def parse_trans_file(path: PathLike) -> list[tuple[str, str]]:
    """``<spk>-<chap>.trans.txt`` -> ``[(utt_id, TEXT)]`` in file order; errors name the line."""
    rows = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            line = line.rstrip("\n").rstrip("\r")
            if not line.strip():
                continue
            uid, _, text = line.partition(" ")
            if not text or uid.count("-") != 2:
                raise ValueError(f"{path}:{lineno}: expected '<spk>-<chap>-<utt> TEXT', got {line!r}")
            rows.append((uid, text))
    return rows


def resolve_librispeech_root(root: PathLike) -> pathlib.Path:
    """The folder that holds the split folders (``train-clean-100`` ...)."""
    r = require_dir(root, "LibriSpeech root")
    return r / "LibriSpeech" if (r / "LibriSpeech").is_dir() else r


class LibriSpeechSource:
    """LibriSpeech utterances: item ``i`` -> ``{"wave": f32 [T], "text": str, "id": str}``.

    Args:
      root: see :func:`resolve_librispeech_root`.
      subsets: split folder names, e.g. ``("train-clean-100", "train-clean-360")``.
      sample_rate: target rate (LibriSpeech is 16 kHz).
    """

    def __init__(self, root: PathLike, subsets: Sequence[str] = ("train-clean-100",), *,
                 sample_rate: int = 16000, on_rate_mismatch: RatePolicy = "resample"):
        base = resolve_librispeech_root(root)
        self.base = base
        self.sample_rate = sample_rate
        self.on_rate_mismatch = on_rate_mismatch
        ids, texts, paths = [], [], []
        for sub in subsets:
            d = require_dir(base / sub, f"LibriSpeech split '{sub}'")
            trans = sorted(d.glob("*/*/*.trans.txt"))
            if not trans:
                raise MissingCorpusError(d, "no <spk>/<chap>/*.trans.txt transcripts found")
            for t in trans:
                for uid, text in parse_trans_file(t):
                    p = t.parent / f"{uid}.flac"
                    if not p.exists():
                        raise AudioError(p, f"listed in {t} but missing on disk")
                    ids.append(uid)
                    texts.append(text)
                    paths.append(p)
        self.ids, self.texts, self.paths = ids, texts, paths
        self._lengths: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.ids)

    def speaker(self, i: int) -> str:
        """Speaker id of item ``i`` (the first field of ``<spk>-<chap>-<utt>``)."""
        return self.ids[i].split("-")[0]

    def lengths(self) -> np.ndarray:
        """``int64 [N]`` lengths in samples at ``sample_rate`` (header reads; cached)."""
        if self._lengths is None:
            out = []
            for p in self.paths:
                frames, sr, _ = audio_info(p)
                out.append(resampled_length(frames, sr, self.sample_rate))
            self._lengths = np.asarray(out, np.int64)
        return self._lengths

    def __getitem__(self, i: int) -> dict:
        i = int(i)
        wave = load_audio(self.paths[i], self.sample_rate, on_rate_mismatch=self.on_rate_mismatch)
        return {"wave": wave, "text": self.texts[i], "id": self.ids[i]}


class LibriMixSource:
    """LibriMix split from its metadata CSV: item -> ``{"mix", "sources" [S, T], "name"}``.

    Args:
      root: folder holding ``Libri{S}Mix/`` or ``wav8k/`` directly.
      split: ``train-360``, ``train-100``, ``dev`` or ``test`` (``train``/``valid``/``test`` map to
        ``train-100``/``dev``/``test``).
      mixture: ``mix_clean``, ``mix_both`` (noise is not returned as a source) or ``mix_single``.
    """

    SPLITS = {"train": "train-100", "valid": "dev", "test": "test"}

    def __init__(self, root: PathLike, split: str = "train-100", *, sample_rate: int = 8000,
                 mode: str = "min", num_sources: int = 2, mixture: str = "mix_clean",
                 on_rate_mismatch: RatePolicy = "resample"):
        split = self.SPLITS.get(split, split)
        r = require_dir(root, "LibriMix root")
        cand = [r / f"Libri{num_sources}Mix", r]
        base = next((c for c in cand if (c / "wav8k").is_dir() or (c / "wav16k").is_dir()), None)
        if base is None:
            raise MissingCorpusError(r, f"no Libri{num_sources}Mix/wav8k or wav16k folder")
        rate_dir = base / f"wav{sample_rate // 1000}k"
        if not rate_dir.is_dir():
            other = [d for d in ("wav8k", "wav16k") if (base / d).is_dir()]
            if on_rate_mismatch == "error" or not other:
                raise MissingCorpusError(rate_dir, f"missing corpus folder for {sample_rate} Hz")
            rate_dir = base / other[0]
        self._rate_matches = rate_dir.name == f"wav{sample_rate // 1000}k"
        self.dir = require_dir(rate_dir / mode, f"LibriMix {mode} folder")
        self.sample_rate, self.on_rate_mismatch = sample_rate, on_rate_mismatch
        self.num_sources = 1 if mixture == "mix_single" else num_sources
        csv_path = self.dir / "metadata" / f"mixture_{split}_{mixture}.csv"
        if not csv_path.is_file():
            raise MissingCorpusError(csv_path, "LibriMix metadata CSV not found")
        self.csv_path = csv_path
        self.names: list[str] = []
        self.rows: list[list[pathlib.Path]] = []
        lengths = []
        with open(csv_path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            need = ["mixture_ID", "mixture_path"] + [f"source_{k + 1}_path"
                                                     for k in range(self.num_sources)]
            missing = [c for c in need if c not in (reader.fieldnames or [])]
            if missing:
                raise ValueError(f"{csv_path}: missing columns {missing}")
            for row in reader:
                self.names.append(row["mixture_ID"])
                self.rows.append([self._local(row[c]) for c in need[1:]])
                lengths.append(int(row["length"]) if row.get("length") else -1)
        self._csv_lengths = np.asarray(lengths, np.int64)
        self._lengths: np.ndarray | None = None

    def _local(self, p: str) -> pathlib.Path:
        q = pathlib.Path(p)
        if q.is_absolute() and q.exists():
            return q
        local = self.dir.joinpath(*q.parts[-3:])
        if not local.exists():
            raise AudioError(local, f"file named in {self.csv_path} not found (CSV path {p})")
        return local

    def __len__(self) -> int:
        return len(self.names)

    def lengths(self) -> np.ndarray:
        """``int64 [N]`` lengths at ``sample_rate`` (CSV ``length`` column when the rate matches)."""
        if self._lengths is None and self._rate_matches and np.all(self._csv_lengths >= 0):
            self._lengths = self._csv_lengths
        if self._lengths is None:
            out = []
            for row in self.rows:
                frames, sr, _ = audio_info(row[0])
                out.append(resampled_length(frames, sr, self.sample_rate))
            self._lengths = np.asarray(out, np.int64)
        return self._lengths

    def __getitem__(self, i: int) -> dict:
        i = int(i)
        kw = dict(on_rate_mismatch=self.on_rate_mismatch)
        mix, *srcs = [load_audio(p, self.sample_rate, **kw) for p in self.rows[i]]
        t = min([len(mix)] + [len(s) for s in srcs])
        return {"mix": mix[:t], "sources": np.stack([s[:t] for s in srcs]), "name": self.names[i]}
