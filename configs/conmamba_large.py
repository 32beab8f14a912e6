"""ConMamba-L + Transformer decoder, LibriSpeech 960 h (docs/conmamba.md; Mamba-ASR hparams/S2S/conmamba_large.yaml).

    python train.py --config configs/conmamba_large.py            # 115,187,888 params
    python train.py --config configs/conmamba_large.py:smoke      # tiny, CPU, a few steps

Expected (paper, no LM): WER 2.8 / 6.7 on test-clean / test-other.

This file also holds ``asr_config``, the shared builder the other ConMamba configs call. Sub-blocks the
trainer reads besides the base fields: ``features`` (Fbank + normalisation), ``augment`` (speed perturbation
and SpecAugment), ``tokenizer``, ``decoding`` and ``recipe`` (epochs, dynamic batching, checkpoint averaging).
"""

from __future__ import annotations

import ml_collections

from mamba_jax.training.defaults import base_config


def asr_config(*, d_model: int, enc_layers: int, dec_layers: int, heads: int, d_ffn: int, decoder: str,
               vocab: int, n_fft: int, win_ms: float, arg: str | None) -> ml_collections.ConfigDict:
    """S2S ConMamba config (the CTC config overrides loss, tokenizer, augment and decoding)."""
    c = base_config("asr")
    c.model.name = "conmamba"
    c.model.update(dict(
        d_model=d_model, num_encoder_layers=enc_layers, num_decoder_layers=dec_layers, num_heads=heads,
        d_ffn=d_ffn, vocab_size=vocab, decoder=decoder, n_mels=80, cnn_channels=(64, 32), conv_kernel_size=31,
        dropout=0.1, d_state=16, d_conv=4, expand=2, max_len=2500,
        init="xavier",  # TransformerASR._init_params (A_log included); 'mamba' keeps the Mamba init
        inert_padding=True,  # padding never changes an output; False: the original's padded batches (docstring
                             # of mamba_jax/models/conmamba.py)
    ))
    c.loss.name = "ctc_attention"
    c.loss.ctc_weight = 0.3
    c.loss.label_smoothing = 0.1
    c.loss.reduction = "batchmean"  # SpeechBrain: summed over tokens, divided by the batch size
    c.loss.blank_id = 0
    c.optim.update(dict(name="adamw", lr=8e-4, weight_decay=0.01, b1=0.9, b2=0.98, eps=1e-9, clip_norm=5.0,
                        schedule="noam", warmup_steps=30000 // 8, grad_accum=8))
    c.train.precision = "bf16"
    c.train.eval_pad_multiple = 16000  # waveforms padded to whole seconds (train and valid): few shapes to compile
    c.features = ml_collections.ConfigDict(dict(
        sample_rate=16000, n_mels=80, n_fft=n_fft, win_length_ms=win_ms, hop_length_ms=10.0, top_db=80.0,
        norm_update_until_epoch=4,  # InputNormalization(global): running stats updated while epoch < 4
    ))
    c.model.norm_update_until_epoch = c.features.get_ref("norm_update_until_epoch")
    c.augment = ml_collections.ConfigDict(dict(
        speed_perturb=(95, 100, 105),  # percent; applied to the waveform in the data pipeline
        time_drop_count=(4, 4), time_drop_length=(15, 25),
        freq_drop_count=(4, 4), freq_drop_length=(10, 20),
        replace="mean", time_warp_window=5,  # 0 disables the warp (CTC recipe)
    ))
    c.data.speed_perturb = True
    c.tokenizer = ml_collections.ConfigDict(dict(
        kind="unigram", vocab_size=vocab, model_dir="",  # '' -> train one with `python -m mamba_jax.tokenizer`
        blank_id=0, bos_id=1, eos_id=2, pad_id=0,
    ))
    c.decoding = ml_collections.ConfigDict(dict(
        method="joint",  # 'joint' attention/CTC beam search | 'ctc_greedy' | 'ctc_beam'
        beam_size=10, ctc_weight=0.4, length_normalization=True, max_decode_ratio=1.0, min_decode_ratio=0.0,
        temperature=1.0, ctc_topk=0,  # 0: CTC-score the whole vocabulary; k: only the attention top-k
        test_beam_size=66,  # the paper's test search (with a TransformerLM, not ported: weight 0.6, temp 1.15)
    ))
    c.recipe = ml_collections.ConfigDict(dict(
        epochs=120, max_batch_seconds=500.0, max_batch_examples=256, avg_checkpoints=10, avg_by="valid_acc",
        num_buckets=8,  # duration batching: 8 padded shapes (the original's sampler: 60 buckets, any shapes)
    ))
    if arg == "smoke":
        shrink_for_smoke(c)
    elif arg:
        raise ValueError(f"unknown config arg {arg!r} (supported: 'smoke')")
    return c


def shrink_for_smoke(c: ml_collections.ConfigDict) -> None:
    """A few-second CPU variant: D 32, 2 encoder and 1 decoder layers, a 40-token vocabulary."""
    c.model.update(dict(d_model=32, num_encoder_layers=2, num_decoder_layers=min(c.model.num_decoder_layers, 1),
                        num_heads=2, d_ffn=64, vocab_size=40 if c.model.vocab_size > 40 else c.model.vocab_size,
                        conv_kernel_size=7, max_len=256))
    c.tokenizer.vocab_size = c.model.vocab_size
    c.train.update(dict(num_steps=2, batch_size=2, log_every_steps=1, eval_every_steps=2,
                        checkpoint_every_steps=2, precision="fp32", eval_batches=1))
    c.optim.update(dict(warmup_steps=2, grad_accum=1))
    c.decoding.update(dict(beam_size=2, test_beam_size=2))
    c.recipe.update(dict(epochs=1, max_batch_seconds=10.0, max_batch_examples=2, num_buckets=2))


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    return asr_config(d_model=512, enc_layers=12, dec_layers=6, heads=8, d_ffn=2048, decoder="transformer",
                      vocab=5000, n_fft=512, win_ms=32.0, arg=arg)
