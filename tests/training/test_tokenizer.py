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
