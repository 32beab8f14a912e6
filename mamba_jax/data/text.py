"""An offline sentence source for the synthetic corpus: a small template grammar over an embedded
word list written for this project (public domain; no corpus download, no pip text package).

Sentences are plain declaratives ("THE OLD FARMER CARRIED A HEAVY BASKET TO THE MARKET") of a
chosen word count, drawn from a ``numpy.random.Generator`` so a corpus build is reproducible. The
transcript normalisation is LibriSpeech's: uppercase A-Z, apostrophe and space.

Two word lists: the basic one (the WSJ0 pool's text: the same sentences as before) and the ``extended``
one of the LibriSpeech transcripts, which adds words with X, Z and apostrophes so that every character of
the LibriSpeech alphabet (:data:`ALPHABET`) occurs and a character tokenizer trained on the transcripts has
all 31 pieces. ``cover`` steers a draw towards characters not yet seen (the corpus build passes the
characters its training transcripts still lack).
"""

from __future__ import annotations

import re
from collections.abc import Collection

import numpy as np

__all__ = ["ALPHABET", "make_sentence", "normalize_transcript", "VOCABULARY"]

ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ'"  # LibriSpeech transcripts: these and the space

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

# Extra words of the extended (LibriSpeech) lists: X, Z and apostrophes, plus a few more J/Q/K/V words.
_EXTRA = dict(
    det=["the captain's", "my neighbor's", "someone's", "everyone's", "nobody's", "six"],
    adj=["lazy", "frozen", "dizzy", "fuzzy", "complex", "exact", "extra", "relaxed", "jolly", "quaint"],
    noun=["fox", "box", "zebra", "wizard", "citizen", "taxi", "blizzard", "puzzle", "axe", "jacket",
          "queen", "violin"],
    verb_t=["fixed", "mixed", "seized", "explored", "organized", "examined", "amazed", "expected"],
    verb_i=["didn't stop", "couldn't wait", "won't rest", "wasn't there", "relaxed", "dozed", "froze"],
    adv=["next", "lazily", "exactly"],
)
_BASIC = dict(det=_DET, adj=_ADJ, noun=_NOUN, verb_t=_VERB_T, verb_i=_VERB_I, prep=_PREP, adv=_ADV)
_EXTENDED = {k: v + _EXTRA.get(k, []) for k, v in _BASIC.items()}

VOCABULARY: frozenset[str] = frozenset(
    w for group in _EXTENDED.values() for p in group for w in p.split())


def _np(rng: np.random.Generator, with_adj: bool, lists: dict) -> list[str]:
    words = str(rng.choice(lists["det"])).split()
    if with_adj:
        words.append(str(rng.choice(lists["adj"])))
    words.append(str(rng.choice(lists["noun"])))
    return words


def _pick(rng: np.random.Generator, seq: list[str]) -> list[str]:
    return str(seq[int(rng.integers(len(seq)))]).split()


def _draw(rng: np.random.Generator, n_words: int, lists: dict) -> str:
    for _ in range(100):
        words = _np(rng, bool(rng.random() < 0.5), lists)
        if rng.random() < 0.6:
            words += _pick(rng, lists["verb_t"]) + _np(rng, bool(rng.random() < 0.5), lists)
        else:
            words += _pick(rng, lists["verb_i"])
        while len(words) < n_words:
            r = rng.random()
            if r < 0.5 and n_words - len(words) >= 3:
                words += _pick(rng, lists["prep"]) + _np(rng, n_words - len(words) >= 4, lists)
            else:
                words += _pick(rng, lists["adv"])
        if len(words) == n_words:
            return normalize_transcript(" ".join(words))
        if len(words) > n_words and n_words <= 4:
            # short targets: subject + intransitive verb, padded with one-word adverbs
            words = _np(rng, n_words >= 4, lists) + _pick(rng, lists["verb_i"])
            if len(words) == n_words:
                return normalize_transcript(" ".join(words))
    raise RuntimeError(f"could not build a {n_words}-word sentence")  # pragma: no cover


def make_sentence(rng: np.random.Generator, n_words: int, *, extended: bool = False,
                  cover: Collection[str] = (), tries: int = 32) -> str:
    """A sentence of exactly ``max(n_words, 3)`` words, normalised like LibriSpeech.

    ``extended``: draw from the extended word list (every character of :data:`ALPHABET` occurs in it).
    ``cover``: characters to favour: of ``tries`` drawn sentences, the first holding the most of them is
    returned (with an empty ``cover`` exactly one sentence is drawn).
    """
    n_words = max(3, int(n_words))
    lists = _EXTENDED if extended else _BASIC
    best = _draw(rng, n_words, lists)
    want = set(cover)
    if want:
        score = len(want & set(best))
        for _ in range(tries - 1):
            if score == len(want):
                break
            s = _draw(rng, n_words, lists)
            if len(want & set(s)) > score:
                best, score = s, len(want & set(s))
    return best


def normalize_transcript(text: str) -> str:
    """Uppercase, keep A-Z, apostrophe and single spaces (LibriSpeech convention)."""
    t = re.sub(r"[^A-Z' ]+", " ", text.upper())
    return re.sub(r" +", " ", t).strip()
