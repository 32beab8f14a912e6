"""The embedded default corpus: synthetic speech written in the *real* on-disk layouts.

``ensure_corpus()`` builds (once, cached) a tree that the real-corpus readers read unchanged::

    <root>/wsj0/si_tr_s/<spk>/<utt>.wav            train speakers, 16 kHz (raw-WSJ0 pool)
    <root>/wsj0/si_dt_05/<spk>/<utt>.wav           valid speakers, 16 kHz
    <root>/wsj0/si_et_05/<spk>/<utt>.wav           test speakers, 16 kHz
    <root>/wsj0-2mix/2speakers/wav8k/min/{tr,cv,tt}/{mix,s1,s2}/<u1>_<snr1>_<u2>_<snr2>.wav
    <root>/wsj0-2mix/mix_2_spk_{tr,cv,tt}.txt
    <root>/LibriSpeech/{train-clean-100,dev-clean,test-clean}/<spk>/<chap>/<spk>-<chap>-NNNN.flac
    <root>/LibriSpeech/.../<spk>-<chap>.trans.txt, SPEAKERS.TXT
    <root>/MANIFEST.json                            written last: a killed build is rebuilt

**Speech**: espeak-ng through the pip wheel ``espeakng-loader`` (:mod:`mamba_jax.data.tts`).
A speaker's identity is an espeak voice variant (``+m1``, ``+f3``, ``+klatt2``, ``+Alicia``...) with
its own base pitch, pitch range, speaking rate and English accent; each utterance jitters pitch
and rate slightly (docs/data.md: variant as identity, pitch/rate as jitter).
**Text**: the embedded grammar of :mod:`mamba_jax.data.text` (no download). The LibriSpeech
transcripts use its extended word list and, while some character of the LibriSpeech alphabet (A-Z and
the apostrophe) is still missing from the training transcripts, favour sentences that hold it, so a
character tokenizer trained on ``train-clean-100`` has all 31 pieces (3 specials, space, 26 letters,
apostrophe). The WSJ0 pool keeps the basic word list and its sentences; its audio differs slightly from
format 1's all the same, as espeak-ng carries state from one synthesis to the next.

**Speaker split** (differs from real WSJ0 on purpose): train, valid and test speakers are
disjoint. Real wsj0-2mix ``cv`` reuses the ``tr`` speakers (closed set) and ``tt`` uses
si_dt_05 + si_et_05; here ``cv`` is mixed from the valid speakers (written under si_dt_05) and
``tt`` from the test speakers (under si_et_05), so both evaluate on unseen voices and the
dynamic-mixing pool (si_tr_s) holds training speakers only. LibriSpeech uses the same split.

wsj0-2mix mixing follows the MERL/pywsj0-mix recipe: each source scaled by ``1/sqrt(activlev)``
and ``10**(snr/20)`` with ``snr1 ~ U(0, 2.5)``, ``snr2 = -snr1`` (text ``'%.5g'``), truncated to the
shorter (``min``), divided by ``max(1, peak)/0.9``, written as PCM_16. The first mixture of each
split gets a tiny SNR (``x.xxxxe-07``) so names in exponent form (as in three real names) occur.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import os
import pathlib
import shutil
import time
from collections.abc import Sequence

import numpy as np

from mamba_jax.data.audio import resample, write_audio
from mamba_jax.data.mixing import active_level
from mamba_jax.data.text import ALPHABET, make_sentence

__all__ = ["SyntheticSpec", "VOICES", "build_corpus", "default_cache_dir", "ensure_corpus"]

FORMAT_VERSION = 2  # 2: LibriSpeech text covers the whole alphabet (A-Z, apostrophe)
MANIFEST = "MANIFEST.json"
STAMP = ".mamba_jax_synthetic"  # written first: marks a folder this module may wipe and rebuild

# espeak-ng English variants used as speaker identities (first 40 of them by default).
VOICES: tuple[str, ...] = (
    "m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "f1", "f2", "f3", "f4", "f5",
    "klatt", "klatt2", "klatt3", "klatt4", "klatt6", "Alicia", "Andy", "Annie", "Denis", "Gene",
    "Jacky", "Lee", "Mario", "Michael", "anika", "belinda", "benjamin", "caleb", "david",
    "edward", "grandpa", "ian", "john", "linda", "max", "norbert", "paul", "quincy", "rob",
    "steph", "travis", "victor", "zac")
ACCENTS = ("en-us", "en", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-us-nyc")


@dataclasses.dataclass(frozen=True)
class SyntheticSpec:
    """Sizes of the synthetic corpus (defaults: the quickstart corpus, ~20 s to build on 2 cores).

    Speakers are split ``n_train / n_valid / n_test`` (disjoint). ``*_utts`` are utterances per
    speaker in the WSJ0 pool; ``*_mixtures`` are wsj0-2mix items per split; ``libri_*`` are
    LibriSpeech utterances per speaker (two chapters each).
    """
    seed: int = 1234
    n_train: int = 28
    n_valid: int = 6
    n_test: int = 6
    train_utts: int = 16
    eval_utts: int = 10
    tr_mixtures: int = 400
    cv_mixtures: int = 60
    tt_mixtures: int = 60
    libri_train_utts: int = 10
    libri_eval_utts: int = 5
    min_seconds: float = 1.0
    max_seconds: float = 3.0
    pool_rate: int = 16000
    mix_rates: tuple[int, ...] = (8000,)

    def __post_init__(self):
        if self.n_train + self.n_valid + self.n_test > len(VOICES):
            raise ValueError(f"at most {len(VOICES)} synthetic speakers")
        if min(self.n_train, self.n_valid, self.n_test) < 2:
            raise ValueError("each split needs at least 2 speakers (mixtures are 2 distinct speakers)")


def default_cache_dir() -> pathlib.Path:
    """``$MAMBA_JAX_DATA`` or ``~/.cache/mamba_jax``, plus ``synthetic-v{FORMAT_VERSION}``."""
    base = os.environ.get("MAMBA_JAX_DATA") or os.path.join(os.path.expanduser("~"), ".cache",
                                                            "mamba_jax")
    return pathlib.Path(base) / f"synthetic-v{FORMAT_VERSION}"


@dataclasses.dataclass(frozen=True)
class _Speaker:
    wsj_id: str       # 3 characters, as WSJ0 (speaker = stem[:3])
    libri_id: int
    voice: str        # accent+variant
    pitch: int
    pitch_range: int
    rate: int
    split: str        # train / valid / test


def _speakers(spec: SyntheticSpec) -> list[_Speaker]:
    rng = np.random.default_rng([spec.seed, 0])
    n = spec.n_train + spec.n_valid + spec.n_test
    order = rng.permutation(n)  # which variants go to which split
    out = []
    for k in range(n):
        v = VOICES[int(order[k])]
        split = "train" if k < spec.n_train else "valid" if k < spec.n_train + spec.n_valid else "test"
        out.append(_Speaker(
            wsj_id=f"{k // 26:01d}{'abcdefghijklmnopqrstuvwxyz'[k % 26]}{k % 10}",
            libri_id=100 + 37 * k, voice=f"{ACCENTS[int(rng.integers(len(ACCENTS)))]}+{v}",
            pitch=int(rng.integers(25, 76)), pitch_range=int(rng.integers(30, 80)),
            rate=int(rng.integers(150, 201)), split=split))
    return out


def _trim(x: np.ndarray, thresh: float = 1e-3, pad: int = 200) -> np.ndarray:
    idx = np.flatnonzero(np.abs(x) > thresh)
    if idx.size == 0:
        return x
    return x[max(0, idx[0] - pad): idx[-1] + pad]


def _utterance(tts, spk: _Speaker, rng: np.random.Generator, spec: SyntheticSpec, *,
               extended: bool = False, cover: set[str] | None = None) -> tuple[str, np.ndarray]:
    """(transcript, float32 [T] at tts rate) whose duration lies in [min_seconds, max_seconds].

    ``extended`` / ``cover``: as :func:`mamba_jax.data.text.make_sentence`."""
    n_words = int(rng.integers(3, 8))
    for _ in range(12):
        text = make_sentence(rng, n_words, extended=extended, cover=cover or ())
        x = tts.synth(text, spk.voice, rate=spk.rate + int(rng.integers(-10, 11)),
                      pitch=int(np.clip(spk.pitch + rng.integers(-4, 5), 0, 99)),
                      pitch_range=spk.pitch_range)
        x = _trim(x)
        dur = len(x) / tts.sample_rate
        if dur > spec.max_seconds:
            n_words = max(3, n_words - 1)
        elif dur < spec.min_seconds:
            n_words += 1
        else:
            break
    x = x[: int(spec.max_seconds * tts.sample_rate)]
    gain = 10.0 ** (rng.uniform(-6.0, 0.0) / 20.0) * 0.9 / max(float(np.max(np.abs(x))), 1e-6)
    return text, (x * gain).astype(np.float32)


def _snr_text(rng: np.random.Generator, tiny: bool) -> str:
    v = float(rng.uniform(0.0, 2.5)) * (1e-7 if tiny else 1.0)
    return f"{v:.5g}"


def _write_wsj0mix(root: pathlib.Path, split: str, pool: dict, n_mix: int, rates: Sequence[int],
                   rng: np.random.Generator, bar) -> None:
    """``pool``: spk -> list of (relative wav path, utt id, float32 [T] at 16 kHz)."""
    spks = sorted(pool)
    lines, seen = [], set()
    cache: dict[tuple[str, int], np.ndarray] = {}

    levels: dict[tuple[str, int], float] = {}

    def at(rel: str, x: np.ndarray, sr: int) -> tuple[np.ndarray, float]:
        """The utterance at ``sr`` and its P.56 active level (cached: utterances recur)."""
        if (rel, sr) not in cache:
            cache[rel, sr] = resample(x, 16000, sr)
            levels[rel, sr] = active_level(cache[rel, sr], sr)
        return cache[rel, sr], levels[rel, sr]

    for m in range(n_mix):
        for _ in range(1000):
            a, b = rng.choice(len(spks), size=2, replace=False)
            ua = pool[spks[a]][int(rng.integers(len(pool[spks[a]])))]
            ub = pool[spks[b]][int(rng.integers(len(pool[spks[b]])))]
            if (ua[1], ub[1]) not in seen:
                break
        seen.add((ua[1], ub[1]))
        snr1 = _snr_text(rng, tiny=(m == 0))
        snr2 = snr1[1:] if snr1.startswith("-") else "-" + snr1
        name = f"{ua[1]}_{snr1}_{ub[1]}_{snr2}.wav"
        lines.append(f"{ua[0]} {snr1} {ub[0]} {snr2}")
        for sr in rates:
            xs = [at(ua[0], ua[2], sr), at(ub[0], ub[2], sr)]
            t = min(len(x) for x, _ in xs)
            srcs = [x[:t] / np.sqrt(lev) * 10.0 ** (float(s) / 20.0)
                    for (x, lev), s in zip(xs, (snr1, snr2))]
            mix = srcs[0] + srcs[1]
            scale = 0.9 / max(1.0, float(np.max(np.abs(mix))),
                              *(float(np.max(np.abs(s))) for s in srcs))
            d = root / "wsj0-2mix" / "2speakers" / f"wav{sr // 1000}k" / "min" / split
            write_audio(d / "mix" / name, mix * scale, sr)
            write_audio(d / "s1" / name, srcs[0] * scale, sr)
            write_audio(d / "s2" / name, srcs[1] * scale, sr)
        bar.update(1)
    (root / "wsj0-2mix" / f"mix_2_spk_{split}.txt").write_text("\n".join(lines) + "\n")


def build_corpus(root: pathlib.Path, spec: SyntheticSpec = SyntheticSpec(), *,
                 progress: bool = True) -> dict:
    """Synthesize the whole tree into ``root`` (assumed empty). Returns the manifest dict."""
    from tqdm.auto import tqdm

    from mamba_jax.data.tts import Espeak

    t0 = time.time()
    tts = Espeak.get()
    speakers = _speakers(spec)
    wsj_dir = {"train": "si_tr_s", "valid": "si_dt_05", "test": "si_et_05"}
    libri_dir = {"train": "train-clean-100", "valid": "dev-clean", "test": "test-clean"}
    n_wsj = sum(spec.train_utts if s.split == "train" else spec.eval_utts for s in speakers)
    n_lib = sum(2 * (spec.libri_train_utts if s.split == "train" else spec.libri_eval_utts)
                for s in speakers)
    n_mix = spec.tr_mixtures + spec.cv_mixtures + spec.tt_mixtures
    bar = tqdm(total=n_wsj + n_lib + n_mix, desc="synthetic corpus", unit="file",
               disable=not progress)
    pools: dict[str, dict] = {"train": {}, "valid": {}, "test": {}}
    uncovered = set(ALPHABET)  # characters not yet in a training transcript
    for k, spk in enumerate(speakers):
        rng = np.random.default_rng([spec.seed, 1, k])
        n_utt = spec.train_utts if spk.split == "train" else spec.eval_utts
        for u in range(n_utt):
            _, x = _utterance(tts, spk, rng, spec)
            x = resample(x, tts.sample_rate, spec.pool_rate)
            uid = f"{spk.wsj_id}c{u:04x}"
            rel = f"wsj0/{wsj_dir[spk.split]}/{spk.wsj_id}/{uid}.wav"
            write_audio(root / rel, x, spec.pool_rate)
            pools[spk.split].setdefault(spk.wsj_id, []).append(
                (rel, uid, x if spec.pool_rate == 16000 else resample(x, spec.pool_rate, 16000)))
            bar.update(1)
        n_lib_utt = spec.libri_train_utts if spk.split == "train" else spec.libri_eval_utts
        for c in range(2):
            chap = spk.libri_id * 10 + c + 1
            d = root / "LibriSpeech" / libri_dir[spk.split] / str(spk.libri_id) / str(chap)
            lines = []
            for u in range(n_lib_utt):
                text, x = _utterance(tts, spk, rng, spec, extended=True,
                                     cover=uncovered if spk.split == "train" else None)
                if spk.split == "train":
                    uncovered -= set(text)
                uid = f"{spk.libri_id}-{chap}-{u:04d}"
                write_audio(d / f"{uid}.flac", resample(x, tts.sample_rate, 16000), 16000)
                lines.append(f"{uid} {text}")
                bar.update(1)
            (d / f"{spk.libri_id}-{chap}.trans.txt").write_text("\n".join(lines) + "\n")
    (root / "LibriSpeech").mkdir(parents=True, exist_ok=True)
    (root / "LibriSpeech" / "SPEAKERS.TXT").write_text(
        ";ID  |SEX| SUBSET           |MINUTES| NAME\n" + "".join(
            f"{s.libri_id:<5}| {'F' if '+f' in s.voice else 'M'} | {libri_dir[s.split]:<17}| "
            f"0.00 | espeak {s.voice}\n" for s in speakers))
    rng = np.random.default_rng([spec.seed, 2])
    for split, key, n in (("tr", "train", spec.tr_mixtures), ("cv", "valid", spec.cv_mixtures),
                          ("tt", "test", spec.tt_mixtures)):
        _write_wsj0mix(root, split, pools[key], n, spec.mix_rates, rng, bar)
    bar.close()
    return {
        "format_version": FORMAT_VERSION,
        "spec": dataclasses.asdict(spec),
        "speakers": [dataclasses.asdict(s) for s in speakers],
        "counts": {"wsj0_utterances": n_wsj, "librispeech_utterances": n_lib,
                   "wsj0_2mix": {"tr": spec.tr_mixtures, "cv": spec.cv_mixtures,
                                 "tt": spec.tt_mixtures}},
        "tts": "espeak-ng (espeakng-loader wheel), 22050 Hz resampled",
        "train_text_missing_characters": "".join(sorted(uncovered)),
        "build_seconds": round(time.time() - t0, 2),
    }


def _manifest_ok(root: pathlib.Path, spec: SyntheticSpec) -> bool:
    try:
        m = json.loads((root / MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    return m.get("format_version") == FORMAT_VERSION and m.get("spec") == json.loads(
        json.dumps(dataclasses.asdict(spec)))


def ensure_corpus(root: str | os.PathLike | None = None, *, progress: bool = True,
                  spec: SyntheticSpec | None = None) -> pathlib.Path:
    """Return the synthetic corpus root, building it first if needed.

    Args:
      root: where the corpus lives; ``None`` = :func:`default_cache_dir`.
      progress: show a tqdm bar while building.
      spec: sizes (:class:`SyntheticSpec`); a cached corpus with other sizes is rebuilt.

    The build holds an exclusive ``flock`` on ``<root>.lock`` (concurrent callers wait and then
    reuse it) and writes ``MANIFEST.json`` last. A folder without the stamp file that is not empty
    is never wiped: that raises ``FileExistsError`` instead.
    """
    spec = spec or SyntheticSpec()
    root = pathlib.Path(root) if root is not None else default_cache_dir()
    if _manifest_ok(root, spec):
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    with open(str(root) + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _manifest_ok(root, spec):
            return root
        if root.exists() and any(root.iterdir()):
            if not (root / STAMP).exists():
                raise FileExistsError(f"{root}: not empty and not a synthetic corpus folder; "
                                      "refusing to overwrite it (choose another root)")
            for child in root.iterdir():
                shutil.rmtree(child) if child.is_dir() else child.unlink()
        root.mkdir(parents=True, exist_ok=True)
        (root / STAMP).write_text("built by mamba_jax.data.synthetic; safe to delete\n")
        manifest = build_corpus(root, spec, progress=progress)
        tmp = root / (MANIFEST + ".tmp")
        tmp.write_text(json.dumps(manifest, indent=1))
        os.replace(tmp, root / MANIFEST)
    return root
