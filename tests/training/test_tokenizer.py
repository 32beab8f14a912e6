"""Tokenizer training command: char (31 with LibriSpeech's alphabet) and unigram."""

from __future__ import annotations

import string

import numpy as np

from mamba_jax.tokenizer import Tokenizer, main


def _transcripts(path, n=400):
    rng = np.random.default_rng(0)
    words = ["THE", "CAT'S", "QUICK", "BROWN", "FOX", "JUMPS", "OVER", "LAZY", "DOG", "ZEBRA", "VIXEN", "WHY"]
    with open(path, "w") as f:
        f.write(f"0-0-0 {string.ascii_uppercase} '\n")  # every LibriSpeech character appears
        for i in range(n):
            f.write(f"1-2-{i:04d} " + " ".join(rng.choice(words, size=8)) + "\n")


def test_char_and_unigram(tmp_path):
    tr = tmp_path / "a.trans.txt"
    _transcripts(tr)
    main(["train", "--transcripts", str(tr), "--strip-ids", "--kind", "char", "--vocab", "31",
          "--out", str(tmp_path / "char")])
    char = Tokenizer(str(tmp_path / "char"))
    assert char.vocab_size == 31
    assert [char.id_to_piece(i) for i in range(3)] == ["<unk>", "<s>", "</s>"]
    ids = char.encode("THE LAZY FOX'S")
    assert min(ids) > 2 and char.decode([1] + ids + [2]) == "THE LAZY FOX'S"
    main(["train", "--transcripts", str(tr), "--strip-ids", "--kind", "unigram", "--vocab", "40",
          "--out", str(tmp_path / "uni")])
    uni = Tokenizer(str(tmp_path / "uni"))
    assert uni.vocab_size == 40 and uni.decode(uni.encode("THE QUICK DOG")) == "THE QUICK DOG"


def test_vocab_size_rule_is_shared(tmp_path):
    """One rule (equality) in the trainer and the Transcriber, with a message that names the fix."""
    import ml_collections
    import pytest

    from mamba_jax.tokenizer import check_vocab_size, train_tokenizer
    from mamba_jax.training.asr_task import ensure_tokenizer

    # no X, Z or apostrophe in the text: 3 specials + space + 23 letters = 27 pieces
    texts = ["THE OLD FARMER CARRIED A HEAVY BASKET", "A QUIET JOURNEY BEGAN WITH VIVID SONGS", "MY BIG UNCLE"]
    tok = Tokenizer(train_tokenizer(texts, str(tmp_path / "tok"), kind="char", vocab_size=31))
    assert tok.vocab_size == 27
    check_vocab_size(tok, 27)
    with pytest.raises(ValueError, match=r"has 27 pieces but model.vocab_size=31.*set --config.model.vocab_size=27"):
        check_vocab_size(tok, 31, fix="set --config.model.vocab_size=27")
    config = ml_collections.ConfigDict(dict(model=dict(vocab_size=31), tokenizer=dict(model_dir=str(tmp_path / "tok"))))
    with pytest.raises(ValueError, match="has 27 pieces but model.vocab_size=31"):  # was accepted (27 < 31)
        ensure_tokenizer(config, tmp_path / "run")
    config.model.vocab_size = 27
    assert ensure_tokenizer(config, tmp_path / "run").vocab_size == 27
