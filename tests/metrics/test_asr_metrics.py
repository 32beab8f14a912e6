"""WER/CER per utterance and corpus-level."""

from __future__ import annotations

import pytest

from mamba_jax.metrics.asr import corpus_cer, corpus_wer, utterance_cer, utterance_wer


def test_utterance_and_corpus():
    refs = ["the cat sat on the mat", "hello world", ""]
    hyps = ["the cat sat on mat", "hello there world", "uh"]
    u = utterance_wer(refs[0], hyps[0])
    assert (u.substitutions, u.deletions, u.insertions, u.ref_len) == (0, 1, 0, 6)
    assert utterance_wer(refs[1], hyps[1]).rate == pytest.approx(0.5)
    assert utterance_wer(refs[2], hyps[2]).errors == 1
    assert corpus_wer(refs, hyps) == pytest.approx((1 + 1 + 1) / 8)
    assert utterance_cer("abc", "abd").rate == pytest.approx(1 / 3)
    assert corpus_cer(["ab", "cd"], ["ab", "c"]) == pytest.approx(1 / 4)
    assert corpus_wer(["a b"], ["a b"]) == 0.0
