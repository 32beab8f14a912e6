"""ConMamba-L CTC-only, character tokens (docs/conmamba.md; Mamba-ASR hparams/CTC/conmamba_large.yaml).

    python train.py --config configs/conmamba_ctc_large.py        # 31,555,519 params
    python train.py --config configs/conmamba_ctc_large.py:smoke

Expected (paper, no LM): WER 3.9 / 10.3. D 256, 18 encoder layers, no decoder, 31 characters
(blank 0 / bos 1 / eos 2), n_fft 512 with a 25 ms window, AdamW wd 5e-4 lr 1e-3, Noam 7500, grad-accum 4,
SpecAugment without warp (time-drop 1-5 x 6-12 frames, freq-drop 1-3 x 10-20 bins), CTC prefix beam 100.
"""

from __future__ import annotations

import ml_collections

from configs.conmamba_large import asr_config, shrink_for_smoke


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = asr_config(d_model=256, enc_layers=18, dec_layers=0, heads=4, d_ffn=1024, decoder="none",
                   vocab=31, n_fft=512, win_ms=25.0, arg=None)
    c.loss.name = "ctc"
    c.loss.ctc_weight = 1.0
    c.loss.label_smoothing = 0.0
    c.loss.reduction = "mean"  # torch ctc_loss 'mean': each loss / its target length, then batch mean
    c.optim.update(dict(name="adamw", lr=1e-3, weight_decay=5e-4, warmup_steps=7500, grad_accum=4))
    c.augment.update(dict(time_drop_count=(1, 5), time_drop_length=(6, 12), freq_drop_count=(1, 3),
                          freq_drop_length=(10, 20), time_warp_window=0))
    c.tokenizer.update(dict(kind="char", vocab_size=31))
    c.decoding.update(dict(method="ctc_beam", beam_size=100, test_beam_size=100, ctc_weight=1.0,
                           beam_prune_logp=-12.0, token_prune_min_logp=-1.2))
    c.recipe.update(dict(epochs=500, max_batch_seconds=850.0, max_batch_examples=256, avg_by="valid_wer"))
    if arg == "smoke":
        shrink_for_smoke(c)
    elif arg:
        raise ValueError(f"unknown config arg {arg!r} (supported: 'smoke')")
    return c
