"""SentencePiece tokenisers of the ConMamba recipes, trained from transcripts.

* ``unigram`` 5000 (S2S; the original downloads SpeechBrain's LibriSpeech tokenizer, here it is trained
  locally from the training transcripts);
* ``char`` 31 (CTC): ``<unk>`` = blank 0, ``<s>`` = bos 1, ``</s>`` = eos 2, then ``▁`` (space), 26 letters and
  the apostrophe for LibriSpeech text.

Ids 0/1/2 are unk(=blank=pad)/bos/eos in both, as in the recipes' ``blank_index 0, bos 1, eos 2``.

A model's output layer is its tokenizer's vocabulary: ``model.vocab_size`` must equal the tokenizer's piece
count. ``check_vocab_size`` is that one rule, applied by the trainer (at the start, before any step) and by
``Transcriber`` alike.

    python -m mamba_jax.tokenizer train --transcripts a.txt b.trans.txt --strip-ids \\
        --kind unigram --vocab 5000 --out tokenizers/unigram5000

writes ``DIR/tokenizer.model`` (and ``.vocab``). ``--strip-ids`` drops the first field of each line
(LibriSpeech ``*.trans.txt``: ``ID WORDS``).
"""

from __future__ import annotations

import argparse
import os
import tempfile
from collections.abc import Iterable, Sequence

import sentencepiece as spm

BLANK_ID, BOS_ID, EOS_ID = 0, 1, 2


def _read_lines(paths: Iterable[str], strip_ids: bool) -> list[str]:
    lines = []
    for p in paths:
        with open(p, encoding="utf-8") as f:
            for line in f:
                line = line.strip()
                if strip_ids:
                    line = line.split(maxsplit=1)[1] if " " in line else ""
                if line:
                    lines.append(line)
    return lines


def train_tokenizer(texts: Sequence[str], out_dir: str, *, kind: str = "unigram", vocab_size: int = 5000,
                    seed_sentencepiece_size: int | None = None) -> str:
    """Trains a SentencePiece model on ``texts``; returns the ``.model`` path."""
    if kind not in ("unigram", "char", "bpe"):
        raise ValueError(f"kind must be unigram|char|bpe, got {kind!r}")
    os.makedirs(out_dir, exist_ok=True)
    prefix = os.path.join(out_dir, "tokenizer")
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False, encoding="utf-8") as f:
        f.write("\n".join(texts) + "\n")
        corpus = f.name
    try:
        kwargs = dict(input=corpus, model_prefix=prefix, model_type=kind, vocab_size=vocab_size,
                      character_coverage=1.0, unk_id=BLANK_ID, bos_id=BOS_ID, eos_id=EOS_ID, pad_id=-1,
                      num_threads=1, minloglevel=2, input_sentence_size=10_000_000, shuffle_input_sentence=True)
        if kind == "char":
            kwargs["hard_vocab_limit"] = False  # vocab = the characters present (+3 specials)
        if seed_sentencepiece_size:
            kwargs["seed_sentencepiece_size"] = seed_sentencepiece_size
        spm.SentencePieceTrainer.train(**kwargs)
    finally:
        os.unlink(corpus)
    return prefix + ".model"


class Tokenizer:
    """Thin wrapper over a trained SentencePiece model."""

    def __init__(self, model_path: str):
        if os.path.isdir(model_path):
            model_path = os.path.join(model_path, "tokenizer.model")
        if not os.path.isfile(model_path):
            raise FileNotFoundError(f"tokenizer model {model_path} does not exist")
        self.path = model_path
        self.sp = spm.SentencePieceProcessor(model_file=model_path)
        self.blank_id, self.bos_id, self.eos_id = BLANK_ID, BOS_ID, EOS_ID

    @property
    def vocab_size(self) -> int:
        return self.sp.get_piece_size()

    def encode(self, text: str) -> list[int]:
        return self.sp.encode(text)

    def decode(self, ids: Sequence[int]) -> str:
        """Drops blank/bos/eos before detokenising."""
        return self.sp.decode([int(i) for i in ids if int(i) > EOS_ID])

    def id_to_piece(self, i: int) -> str:
        return self.sp.id_to_piece(int(i))


def check_vocab_size(tokenizer: Tokenizer, vocab_size: int, *, fix: str = "") -> None:
    """Raises ``ValueError`` unless ``tokenizer`` has exactly ``vocab_size`` pieces (the model's output size).

    ``fix``: what the caller's user can do about it, appended to the message."""
    n = tokenizer.vocab_size
    if n != int(vocab_size):
        raise ValueError(f"tokenizer {tokenizer.path} has {n} pieces but model.vocab_size={vocab_size} (the "
                         f"model's output layer must match the tokenizer)" + (f": {fix}" if fix else ""))


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m mamba_jax.tokenizer")
    sub = ap.add_subparsers(dest="cmd", required=True)
    tr = sub.add_parser("train", help="train a tokenizer from transcript files")
    tr.add_argument("--transcripts", nargs="+", required=True)
    tr.add_argument("--kind", choices=["unigram", "char", "bpe"], default="unigram")
    tr.add_argument("--vocab", type=int, default=5000)
    tr.add_argument("--out", required=True)
    tr.add_argument("--strip-ids", action="store_true", help="drop the first field of each line")
    args = ap.parse_args(argv)
    path = train_tokenizer(_read_lines(args.transcripts, args.strip_ids), args.out, kind=args.kind,
                           vocab_size=args.vocab)
    print(f"{path}: vocab {Tokenizer(path).vocab_size}")


if __name__ == "__main__":
    main()
