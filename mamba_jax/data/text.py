"""An offline sentence source for the synthetic corpus: a small template grammar over an embedded
word list written for this project (public domain; no corpus download, no pip text package).

Sentences are plain declaratives ("THE OLD FARMER CARRIED A HEAVY BASKET TO THE MARKET") of a
chosen word count, drawn from a ``numpy.random.Generator`` so a corpus build is reproducible. The
transcript normalisation is LibriSpeech's: uppercase A-Z, apostrophe and space.
"""

from __future__ import annotations

import re

import numpy as np

__all__ = ["make_sentence", "normalize_transcript", "VOCABULARY"]

_DET = ["the", "a", "this", "that", "every", "one", "my", "our", "her", "his", "their", "some"]
_ADJ = ["old", "young", "quiet", "bright", "heavy", "small", "large", "green", "cold", "warm",
        "busy", "gentle", "simple", "early", "late", "tired", "careful", "happy", "narrow",
        "wooden", "golden", "distant", "silent", "strong", "clever", "ancient", "empty", "broad",
        "yellow", "patient", "curious", "honest", "dark", "sudden", "friendly", "final"]
_NOUN = ["farmer", "teacher", "river", "village", "garden", "letter", "window", "horse", "doctor",
         "captain", "market", "bridge", "basket", "kitchen", "student", "soldier", "forest",
         "engine", "painter", "harbor", "mountain", "traveler", "neighbor", "station", "lantern",
         "island", "library", "sailor", "wagon", "orchard", "journal", "merchant", "meadow",
         "stranger", "council", "factory", "valley", "carpenter", "museum", "signal", "morning",
         "winter", "journey", "question", "answer", "machine", "picture", "castle", "company"]
_VERB_T = ["carried", "found", "opened", "painted", "watched", "followed", "repaired", "visited",
           "noticed", "described", "remembered", "built", "cleaned", "moved", "measured",
           "answered", "checked", "praised", "sold", "borrowed", "counted", "signed", "crossed",
           "carried away", "picked up", "looked at"]
_VERB_I = ["waited", "laughed", "arrived", "listened", "worked", "rested", "returned", "agreed",
           "stopped", "smiled", "traveled", "spoke", "wandered", "slept", "hurried", "paused"]
_PREP = ["near", "behind", "across", "beside", "inside", "under", "before", "after", "without",
         "along", "toward", "above"]
_ADV = ["slowly", "quickly", "again", "today", "yesterday", "quietly", "early", "later",
        "carefully", "together", "once more", "at last", "before dawn", "all day"]

VOCABULARY: frozenset[str] = frozenset(
    w for group in (_DET, _ADJ, _NOUN, _VERB_T, _VERB_I, _PREP, _ADV) for p in group
    for w in p.split())


def _np(rng: np.random.Generator, with_adj: bool) -> list[str]:
    words = [str(rng.choice(_DET))]
    if with_adj:
        words.append(str(rng.choice(_ADJ)))
    words.append(str(rng.choice(_NOUN)))
    return words


def _pick(rng: np.random.Generator, seq: list[str]) -> list[str]:
    return str(seq[int(rng.integers(len(seq)))]).split()


def make_sentence(rng: np.random.Generator, n_words: int) -> str:
    """A sentence of exactly ``max(n_words, 3)`` words, normalised like LibriSpeech."""
    n_words = max(3, int(n_words))
    for _ in range(100):
        words = _np(rng, bool(rng.random() < 0.5))
        if rng.random() < 0.6:
            words += _pick(rng, _VERB_T) + _np(rng, bool(rng.random() < 0.5))
        else:
            words += _pick(rng, _VERB_I)
        while len(words) < n_words:
            r = rng.random()
            if r < 0.5 and n_words - len(words) >= 3:
                words += _pick(rng, _PREP) + _np(rng, n_words - len(words) >= 4)
            else:
                words += _pick(rng, _ADV)
        if len(words) == n_words:
            return normalize_transcript(" ".join(words))
        if len(words) > n_words and n_words <= 4:
            # short targets: subject + intransitive verb, padded with one-word adverbs
            words = _np(rng, n_words >= 4) + _pick(rng, _VERB_I)
            if len(words) == n_words:
                return normalize_transcript(" ".join(words))
    raise RuntimeError(f"could not build a {n_words}-word sentence")  # pragma: no cover


def normalize_transcript(text: str) -> str:
    """Uppercase, keep A-Z, apostrophe and single spaces (LibriSpeech convention)."""
    t = re.sub(r"[^A-Z' ]+", " ", text.upper())
    return re.sub(r" +", " ", t).strip()
