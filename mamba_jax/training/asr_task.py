"""ASR task of the ConMamba recipes for the training loop (docs/conmamba.md).

Per training step, inside the jitted step: waveform -> Fbank (``config.features``) -> the model's global
InputNormalization (statistics updated while ``epoch < norm_update_until_epoch``; the epoch is derived from
the normaliser's own call count, so a resumed run continues exactly) -> SpecAugment (``config.augment``) ->
ConMamba -> CTC (+ label-smoothed KL on the decoder) loss. Speed perturbation happens in the data pipeline.
Dropout masks come from ``nnx.reseed(model, dropout=fold_in(seed, step))``: a pure function of the step.

The tokenizer is ``config.tokenizer.model_dir`` when set; otherwise process 0 trains a SentencePiece model
(``config.tokenizer.kind`` / ``vocab_size``) on the training transcripts into ``<workdir>/tokenizer/``, where
``Transcriber.from_checkpoint`` finds it again. Validation decodes with ``config.decoding`` and reports WER
(corpus-level, in percent) and CER; the checkpoint score is ``-wer``.
"""

from __future__ import annotations

import functools
import pathlib

import grain
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx
from tqdm.auto import tqdm

from mamba_jax.data import pipeline
from mamba_jax.data.buckets import duration_batching_from
from mamba_jax.layers.fbank import fbank_config_from
from mamba_jax.layers.specaugment import SpecAugmentConfig, spec_augment
from mamba_jax.tokenizer import Tokenizer, check_vocab_size, train_tokenizer
from mamba_jax.training.asr_losses import asr_loss, make_decoder_io

TOKEN_MULTIPLE = 32  # token rows padded to a multiple of this (fewer distinct shapes to compile)


def training_transcripts(data_cfg: ml_collections.ConfigDict) -> list[str]:
    """Every transcript of the training subsets (the tokenizer's training text)."""
    return list(pipeline.librispeech_source(data_cfg, "train").texts)


def ensure_tokenizer(config: ml_collections.ConfigDict, workdir: pathlib.Path) -> Tokenizer:
    """The configured tokenizer, or the one trained for this workdir (process 0 trains, the others wait)."""
    tc = config.tokenizer
    if tc.model_dir:
        tok = Tokenizer(tc.model_dir)
    else:
        path = workdir / "tokenizer" / "tokenizer.model"
        if not path.is_file() and jax.process_index() == 0:
            train_tokenizer(training_transcripts(config.data), str(path.parent), kind=tc.kind,
                            vocab_size=tc.vocab_size)
        if jax.process_count() > 1:
            from jax.experimental import multihost_utils

            multihost_utils.sync_global_devices("mamba_jax tokenizer")
        tok = Tokenizer(str(path))
    check_vocab_size(tok, config.model.vocab_size, fix=(
        f"set --config.model.vocab_size={tok.vocab_size}" if tc.model_dir else
        f"set --config.model.vocab_size={tok.vocab_size}, or delete {workdir / 'tokenizer'} to train a new one"))
    return tok


class _Tokenize(grain.transforms.Map):
    """Batch dict with transcripts -> numeric batch with ``tokens [B, U]`` and ``token_lengths [B]``."""

    def __init__(self, tokenizer_path: str, keep_text: bool):
        self.tokenizer_path, self.keep_text = tokenizer_path, keep_text
        self._tok = None

    def map(self, batch: dict) -> dict:
        if self._tok is None:
            self._tok = Tokenizer(self.tokenizer_path)
        ids = [self._tok.encode(str(t)) for t in batch["text"]]
        u = max(max(len(x) for x in ids), int(batch.get("text_chars", 0)))  # duration buckets: fixed per bucket
        u = max(TOKEN_MULTIPLE, -(-u // TOKEN_MULTIPLE) * TOKEN_MULTIPLE)
        tokens = np.zeros((len(ids), u), np.int32)
        for b, x in enumerate(ids):
            tokens[b, :len(x)] = x
        out = dict(wave=batch["wave"], wave_lengths=batch["wave_lengths"], tokens=tokens,
                   token_lengths=np.asarray([len(x) for x in ids], np.int32))
        if self.keep_text:
            out["text"] = batch["text"]
        return out


@functools.partial(nnx.jit, static_argnums=0)
def eval_step(task: AsrTask, model, batch: dict):
    """Teacher-forced validation loss, features and frame counts of one batch. Module-level with the task
    static, so the evaluations of a run share their compilations (one per padded batch shape)."""
    feats, lengths = task.features(model, batch["wave"], batch["wave_lengths"], train=False)
    loss, _ = task._loss_from(model, batch, feats, lengths)
    return loss, feats, lengths


class AsrTask:
    """Waveform + transcript in, CTC/attention loss out; validation reports WER and CER."""

    def __init__(self, config: ml_collections.ConfigDict, workdir: str | pathlib.Path):
        self.config = config
        self.tokenizer = ensure_tokenizer(config, pathlib.Path(workdir))
        self.fbank_cfg = fbank_config_from(config.features)
        self.augment_cfg = SpecAugmentConfig.from_config(config.augment) if "augment" in config else None
        self.pad_multiple = int(config.train.get("eval_pad_multiple", 4000))
        self._steps_per_epoch = None
        self.duration = duration_batching_from(config, jax.device_count())  # recipe.max_batch_seconds

    def dataset(self, split: str, *, batch_size: int, seed: int, process_index: int = 0, process_count: int = 1,
                **kw):
        ds = pipeline.asr_dataset(self.config.data, split, batch_size=batch_size, seed=seed,
                                  process_index=process_index, process_count=process_count,
                                  pad_multiple=self.pad_multiple,
                                  duration=self.duration if split == "train" else None, **kw)
        if self._steps_per_epoch is None and split == "train":
            self._steps_per_epoch = max(1, pipeline.steps_per_epoch(
                self.config.data, "train", batch_size=batch_size, process_count=process_count,
                duration=self.duration))
        return ds.map(_Tokenize(str(self.tokenizer.path), keep_text=split != "train"))

    def features(self, model, wave: jax.Array, wave_lengths: jax.Array, *, train: bool, rng=None):
        """Normalised (and, in training, augmented) Fbank features and their valid frame counts."""
        epoch = model.normalizer.count[...] // (self._steps_per_epoch or 1)
        feats, lengths = model.features(wave, wave_lengths, self.fbank_cfg, epoch=epoch, train=train)
        if train and self.augment_cfg is not None:
            feats = spec_augment(rng, feats, self.augment_cfg)
        return feats, lengths

    def _loss_from(self, model, batch: dict, feats, lengths):
        lc = self.config.loss
        tokens, token_lengths = batch["tokens"], batch["token_lengths"]
        tokens_in = None
        if lc.name == "ctc_attention":
            tokens_in, _, _ = make_decoder_io(tokens, token_lengths, bos_id=self.config.tokenizer.bos_id,
                                              eos_id=self.config.tokenizer.eos_id, pad_id=self.config.tokenizer.pad_id)
        out = model(feats, lengths, tokens_in, pad_id=self.config.tokenizer.pad_id)
        return asr_loss(out, tokens, token_lengths, name=lc.name, ctc_weight=lc.ctc_weight,
                        label_smoothing=lc.label_smoothing, reduction=lc.get("reduction", "batchmean"),
                        blank_id=lc.get("blank_id", 0), eos_id=self.config.tokenizer.eos_id)

    def loss(self, model, batch: dict, rng: jax.Array):
        aug_key, drop_key = jax.random.split(rng)
        nnx.reseed(model, dropout=drop_key)
        model.train()
        feats, lengths = self.features(model, batch["wave"], batch["wave_lengths"], train=True, rng=aug_key)
        loss, aux = self._loss_from(model, batch, feats, lengths)
        aux = {k: v for k, v in aux.items() if k != "loss"}
        return loss, aux

    def evaluate(self, model, *, max_batches: int | None = None) -> dict[str, float]:
        """Teacher-forced loss and decoded WER/CER over the valid split (``config.decoding``), one utterance per
        batch as in the separation task (``max_batches``, from ``train.eval_batches``, counts utterances)."""
        from mamba_jax.decoding import beam_search_config_from, decode_batch
        from mamba_jax.metrics.asr import corpus_cer, corpus_wer

        model.eval()
        dc = self.config.decoding
        search = beam_search_config_from(dc, self.config.tokenizer)
        method = "ctc_greedy" if self.config.model.decoder == "none" and dc.method == "joint" else dc.method

        ds = self.dataset("valid", batch_size=1, seed=0, drop_remainder=False)
        losses, refs, hyps = [], [], []
        with pipeline.iterate(ds, max_batches) as batches:
            for batch in tqdm(batches, desc="valid", leave=False, disable=jax.process_index() != 0):
                texts = [str(t) for t in batch.pop("text")]
                loss, feats, lengths = eval_step(self, model, {k: jnp.asarray(v) for k, v in batch.items()})
                losses.append(float(loss))
                for ids in decode_batch(model, feats, lengths, search, method=method):
                    hyps.append(self.tokenizer.decode(ids))
                refs.extend(texts)
        model.train()
        if not losses:
            raise ValueError("validation split is empty")
        wer = 100.0 * corpus_wer(refs, hyps)
        return dict(loss=float(np.mean(losses)), wer=wer, cer=100.0 * corpus_cer(refs, hyps), score=-wer)
