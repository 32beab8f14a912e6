"""The training recipes of the model families; each ``configs/<name>.py`` is one size of one of them.

``configs/mambatasnet_s.py`` is ``get_config(arg) = mamba_tasnet("s", arg)``, and so on. The model sizes come
from the model modules' ``PRESETS`` (the paper tables, one record), the recipe from the original code
(docs/<family>.md). Every config is locked, so a mistyped ``--config.x.y=...`` fails, and every field is read
by the trainer (tests/training/test_train_configs.py checks both).

``arg``: ``None`` (the recipe), ``"smoke"`` (a tiny model that trains two CPU steps, validates one batch and
checkpoints; :func:`smoke`), and for SPMamba ``"nfft512"`` (combinable: ``"nfft512,smoke"``).
"""

from __future__ import annotations

import dataclasses

import ml_collections

from mamba_jax.models import dpmamba as dpmamba_model
from mamba_jax.models import mamba_tasnet as mamba_tasnet_model
from mamba_jax.models import sepmamba as sepmamba_model
from mamba_jax.models import spmamba as spmamba_model
from mamba_jax.training.defaults import base_config


def parse_arg(arg: str | None, allowed: tuple[str, ...]) -> set[str]:
    """``"a,b"`` -> ``{"a", "b"}``; a name outside ``allowed`` is a ``ValueError``."""
    args = set(filter(None, (arg or "").split(",")))
    if args - set(allowed):
        raise ValueError(f"unknown config arg {arg!r} (expected None or one of {', '.join(map(repr, allowed))})")
    return args


def preset(model_cfg: ml_collections.ConfigDict, size, fields: tuple[str, ...]) -> None:
    """Copies ``fields`` of a model module's ``PRESETS`` entry (a frozen dataclass) into ``config.model``."""
    values = dataclasses.asdict(size)
    model_cfg.update({f: values[f] for f in fields})


def smoke(c: ml_collections.ConfigDict, **model) -> None:
    """The ``:smoke`` variant of any config: ``model`` shrunk, two fp32 steps, one validation batch, a checkpoint
    at step 2; separation models use the sequential scan (compiles ~2x faster on CPU) on 0.5 s crops."""
    c.model.update(model)
    c.train.update(num_steps=2, eval_every_steps=2, checkpoint_every_steps=2, log_every_steps=1, eval_batches=1,
                   precision="fp32")
    if c.task == "separation":
        c.model.scan_impl = "sequential"
        c.data.segment_seconds = 0.5


# ---- separation ------------------------------------------------------------------------------------------


def _separation(name: str, *, loss: str, threshold_db: float | None, optim: dict, epochs: int,
                data: dict) -> ml_collections.ConfigDict:
    """Batch 1, fp32, validation and a checkpoint every 20k steps (an epoch of the WSJ0-2mix recipes)."""
    c = base_config("separation")
    c.model.update(name=name, num_spks=2)
    c.loss.name = loss
    c.loss.threshold_db = threshold_db
    c.optim.update(dict(clip_norm=5.0, **optim))
    c.train.update(batch_size=1, num_steps=epochs * 20_000, eval_every_steps=20_000, checkpoint_every_steps=20_000,
                   precision="fp32")
    c.data.update(data)
    return c


def mamba_tasnet(size: str, arg: str | None) -> ml_collections.ConfigDict:
    """Mamba-TasNet (docs/mamba_tasnet.md): SpeechBrain dynamic mixing with speed perturbation, full utterances,
    200 epochs of 20k mixtures at batch 1; Adam (L: lr 1e-4, else 1.5e-4), 20k warm-up + cosine to 0.01 lr;
    PIT zero-mean SI-SNR, examples below -40 dB dropped. ``reinit="mt_reset"`` reproduces the original's
    ``reset_parameters`` at training start (docs/mamba_tasnet.md)."""
    args = parse_arg(arg, ("smoke",))
    c = _separation("mamba_tasnet", loss="si_snr", threshold_db=-40.0, epochs=200,
                    optim=dict(name="adam", lr=1.0e-4 if size == "l" else 1.5e-4, weight_decay=0.0,
                               schedule="warmup_cosine", warmup_steps=20_000, min_lr_ratio=0.01),
                    data=dict(corpus="wsj0-dm", mode="min", dynamic_mixing=True, dm_recipe="speechbrain",
                              speed_perturb=True, segment_seconds=None, items_per_epoch=20_000))
    preset(c.model, mamba_tasnet_model.PRESETS[size], ("n_filters", "n_layer"))
    c.model.update(kernel_size=16, reinit="none")
    if "smoke" in args:
        smoke(c, n_filters=16, n_layer=2)
        c.optim.warmup_steps = 1
        c.data.items_per_epoch = 4
    c.lock()
    return c


def dpmamba(size: str, arg: str | None) -> ml_collections.ConfigDict:
    """Dual-path Mamba (arXiv 2403.18257): the Mamba-TasNet S recipe with the dual-path model (chunk 250)."""
    args = parse_arg(arg, ("smoke",))
    c = mamba_tasnet("s", arg)
    sizes = dataclasses.asdict(dpmamba_model.PRESETS[size])
    model = dict(name="dpmamba", scan_impl=c.model.scan_impl, n_filters=sizes["n_filters"], n_dp=sizes["n_dp"],
                 n_mamba_dp=2, chunk_size=250, skip_around_intra=sizes["skip_around_intra"], num_spks=2,
                 kernel_size=16, reinit="none")
    if "smoke" in args:
        model.update(n_filters=16, n_dp=1, chunk_size=20)
    with c.unlocked():
        c.model = ml_collections.ConfigDict(model)
        c.model.dtype = c.train.get_ref("precision")
    c.lock()
    return c


def sepmamba(size: str, arg: str | None, *, extra_args: tuple[str, ...] = ()) -> ml_collections.ConfigDict:
    """SepMamba (docs/sepmamba.md): SepMamba dynamic mixing (random 4 s crops, speed perturbation), 500 epochs
    of 20k mixtures at batch 1; AdamW lr 1.5e-4, weight decay 0.01, constant lr; PIT SI-SDR without mean
    removal, no threshold. ``extra_args`` lets a size file add its own variants; the config comes unlocked
    then (the caller locks it)."""
    args = parse_arg(arg, ("smoke",) + extra_args)
    c = _separation("sepmamba", loss="si_sdr", threshold_db=None, epochs=500,
                    optim=dict(name="adamw", lr=1.5e-4, weight_decay=0.01, schedule="constant", warmup_steps=0),
                    data=dict(corpus="wsj0-dm", dynamic_mixing=True, dm_recipe="sepmamba", speed_perturb=True,
                              segment_seconds=4.0, items_per_epoch=20_000))
    preset(c.model, sepmamba_model.PRESETS[size], ("dim", "num_blocks", "causal"))
    c.model.update(kernel_size=16, stride=2)
    if "smoke" in args:
        smoke(c, dim=8, num_blocks=1)
        c.data.items_per_epoch = 4
    if not extra_args:
        c.lock()
    return c


def spmamba(arg: str | None) -> ml_collections.ConfigDict:
    """SPMamba (docs/spmamba.md): static WSJ0-2mix, random 4 s segments (shorter utterances dropped); Adam lr
    1e-3, ReduceLROnPlateau (patience 10, factor 0.5) on the validation loss; PIT negative SNR; bf16."""
    args = parse_arg(arg, ("nfft512", "smoke"))
    c = _separation("spmamba", loss="snr", threshold_db=None, epochs=500,
                    optim=dict(name="adam", lr=1e-3, weight_decay=0.0, schedule="plateau", plateau_patience=10,
                               plateau_factor=0.5),
                    data=dict(corpus="wsj0-2mix", mode="min", dynamic_mixing=False, speed_perturb=False,
                              segment_seconds=4.0, drop_shorter=True))
    c.train.precision = "bf16"
    preset(c.model, spmamba_model.PRESETS["nfft512" if "nfft512" in args else "wsj0"], ("n_fft", "hop"))
    c.model.update(n_layers=6, attn_n_head=4, attn_approx_qk_dim=512, emb_dim=16, emb_ks=8, emb_hs=1,
                   mamba_expand=4)
    if "smoke" in args:
        smoke(c, n_fft=64, hop=16, n_layers=1, attn_n_head=2, attn_approx_qk_dim=32, emb_dim=4, emb_ks=4)
        c.data.drop_shorter = False
    c.lock()
    return c


# ---- ASR -------------------------------------------------------------------------------------------------

CONMAMBA = {  # d_model, encoder layers, decoder layers, heads, d_ffn, vocabulary, n_fft, window (ms)
    "large": (512, 12, 6, 8, 2048, 5000, 512, 32.0),
    "small": (144, 12, 4, 4, 1024, 5000, 400, 25.0),
    "ctc_large": (256, 18, 0, 4, 1024, 31, 512, 25.0),
}


def conmamba(size: str, decoder: str, arg: str | None) -> ml_collections.ConfigDict:
    """ConMamba on LibriSpeech (docs/conmamba.md; Mamba-ASR hparams/{S2S,CTC}/*.yaml). ``size``: ``large``,
    ``small`` (Adam lr 1e-3 without weight decay, Noam 25000, no accumulation, no label smoothing) or
    ``ctc_large`` (``decoder="none"``: CTC only, characters); ``decoder``: ``transformer``, ``mamba``, ``none``.

    Blocks besides the base fields: ``features`` (Fbank + normalisation; ``model.n_mels`` follows
    ``features.n_mels``), ``augment`` (SpecAugment; speed perturbation is ``data.speed_perturb``),
    ``tokenizer``, ``decoding`` and ``recipe`` (duration batching, ``mamba_jax.data.buckets``)."""
    args = parse_arg(arg, ("smoke",))
    d_model, enc, dec, heads, d_ffn, vocab, n_fft, win_ms = CONMAMBA[size]
    c = base_config("asr")
    c.features = ml_collections.ConfigDict(dict(
        sample_rate=16000, n_mels=80, n_fft=n_fft, win_length_ms=win_ms, hop_length_ms=10.0, top_db=80.0,
        norm_update_until_epoch=4,  # InputNormalization(global): running stats updated while epoch < 4
    ))
    c.model.update(dict(
        name="conmamba", d_model=d_model, num_encoder_layers=enc, num_decoder_layers=dec, num_heads=heads,
        d_ffn=d_ffn, vocab_size=vocab, decoder=decoder, cnn_channels=(64, 32), conv_kernel_size=31, dropout=0.1,
        d_state=16, d_conv=4, expand=2, max_len=2500,
        init="xavier",  # TransformerASR._init_params (A_log included); 'mamba' keeps the Mamba init
        inert_padding=True,  # padding never changes an output; False: the original's padded batches (docstring
                             # of mamba_jax/models/conmamba.py)
    ))
    c.model.n_mels = c.features.get_ref("n_mels")
    c.model.norm_update_until_epoch = c.features.get_ref("norm_update_until_epoch")
    c.optim.update(dict(name="adamw", lr=8e-4, weight_decay=0.01, b1=0.9, b2=0.98, eps=1e-9, clip_norm=5.0,
                        schedule="noam", warmup_steps=30000 // 8, grad_accum=8))
    c.train.precision = "bf16"
    c.train.eval_pad_multiple = 16000  # waveforms padded to whole seconds (train and valid): few shapes to compile
    c.augment = ml_collections.ConfigDict(dict(
        time_drop_count=(4, 4), time_drop_length=(15, 25), freq_drop_count=(4, 4), freq_drop_length=(10, 20),
        replace="mean", time_warp_window=5,  # 0 disables the warp (CTC recipe)
    ))
    c.data.speed_perturb = True  # percent (95, 100, 105), applied to the waveform in the data pipeline
    c.tokenizer = ml_collections.ConfigDict(dict(
        kind="unigram", vocab_size=vocab, model_dir="",  # '' -> train one with `python -m mamba_jax.tokenizer`
        blank_id=0, bos_id=1, eos_id=2, pad_id=0,
    ))
    c.decoding = ml_collections.ConfigDict(dict(
        method="joint",  # 'joint' attention/CTC beam search | 'ctc_greedy' | 'ctc_beam'
        beam_size=10, ctc_weight=0.4, length_normalization=True, max_decode_ratio=1.0,
        ctc_topk=0,  # 0: CTC-score the whole vocabulary; k: only the attention top-k
    ))
    c.recipe = ml_collections.ConfigDict(dict(
        max_batch_seconds=500.0, max_batch_examples=256,
        num_buckets=8,  # duration batching: 8 padded shapes (the original's sampler: 60 buckets, any shapes)
    ))
    if size == "small":
        c.loss.label_smoothing = 0.0
        c.optim.update(dict(name="adam", lr=1e-3, weight_decay=0.0, warmup_steps=25000, grad_accum=1))
        c.recipe.update(dict(max_batch_seconds=900.0, max_batch_examples=128))
    elif size == "ctc_large":
        c.loss.update(name="ctc", ctc_weight=1.0, label_smoothing=0.0,
                      reduction="mean")  # torch ctc_loss 'mean': each loss / its target length, then batch mean
        c.optim.update(dict(name="adamw", lr=1e-3, weight_decay=5e-4, warmup_steps=7500, grad_accum=4))
        c.augment.update(dict(time_drop_count=(1, 5), time_drop_length=(6, 12), freq_drop_count=(1, 3),
                              freq_drop_length=(10, 20), time_warp_window=0))
        c.tokenizer.update(dict(kind="char", vocab_size=31))
        c.decoding.update(dict(method="ctc_beam", beam_size=100, ctc_weight=1.0, beam_prune_logp=-12.0,
                               token_prune_min_logp=-1.2))
        c.recipe.update(dict(max_batch_seconds=850.0, max_batch_examples=256))
    if "smoke" in args:  # D 32, 2 encoder and at most 1 decoder layers, at most 40 tokens
        smoke(c, d_model=32, num_encoder_layers=2, num_decoder_layers=min(dec, 1), num_heads=2, d_ffn=64,
              vocab_size=min(vocab, 40), conv_kernel_size=7, max_len=256)
        c.tokenizer.vocab_size = c.model.vocab_size
        c.train.batch_size = 2
        c.optim.update(dict(warmup_steps=2, grad_accum=1))
        c.decoding.beam_size = 2
        # One length bucket: both steps have one batch shape, so the training step compiles once (two buckets
        # compiled it twice, ~1/3 of a smoke run's CPU); several buckets are tested in tests/data.
        c.recipe.update(dict(max_batch_seconds=10.0, max_batch_examples=2, num_buckets=1))
    c.lock()
    return c
