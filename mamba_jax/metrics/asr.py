"""Word and character error rates (jiwer), per utterance and corpus-level.

Corpus-level rates are total edits over total reference words/characters (not a mean of per-utterance
rates). Text is compared as given: normalise (case, punctuation) before calling.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import jiwer


@dataclasses.dataclass(frozen=True)
class ErrorCounts:
    """Edit counts against a reference of ``ref_len`` units (words or characters)."""

    substitutions: int
    deletions: int
    insertions: int
    ref_len: int

    @property
    def errors(self) -> int:
        return self.substitutions + self.deletions + self.insertions

    @property
    def rate(self) -> float:
        return self.errors / self.ref_len if self.ref_len else float(self.errors > 0)


def _counts(ref: str, hyp: str, unit: str) -> ErrorCounts:
    ref_units = ref.split() if unit == "word" else list(ref)
    hyp_units = hyp.split() if unit == "word" else list(hyp)
    if not ref_units:  # jiwer rejects empty references: every hypothesis unit is an insertion
        return ErrorCounts(0, 0, len(hyp_units), 0)
    if not hyp_units:
        return ErrorCounts(0, len(ref_units), 0, len(ref_units))
    out = jiwer.process_words(ref, hyp) if unit == "word" else jiwer.process_characters(ref, hyp)
    return ErrorCounts(out.substitutions, out.deletions, out.insertions, len(ref_units))


def utterance_wer(ref: str, hyp: str) -> ErrorCounts:
    return _counts(ref, hyp, "word")


def utterance_cer(ref: str, hyp: str) -> ErrorCounts:
    return _counts(ref, hyp, "char")


def _corpus(refs: Sequence[str], hyps: Sequence[str], unit: str) -> float:
    if len(refs) != len(hyps):
        raise ValueError(f"{len(refs)} references but {len(hyps)} hypotheses")
    counts = [_counts(r, h, unit) for r, h in zip(refs, hyps)]
    total = sum(c.ref_len for c in counts)
    errors = sum(c.errors for c in counts)
    return errors / total if total else float(errors > 0)


def corpus_wer(refs: Sequence[str], hyps: Sequence[str]) -> float:
    """Total word edits / total reference words."""
    return _corpus(refs, hyps, "word")


def corpus_cer(refs: Sequence[str], hyps: Sequence[str]) -> float:
    """Total character edits / total reference characters (spaces count)."""
    return _corpus(refs, hyps, "char")
