"""Every ASR config's smoke variant: forward + backward (jitted) and decoding on CPU."""

from __future__ import annotations

import importlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from mamba_jax.decoding import beam_search_config_from, decode_batch
from mamba_jax.layers.fbank import fbank, fbank_config_from
from mamba_jax.layers.normalization import InputNormalization
from mamba_jax.layers.specaugment import SpecAugmentConfig, spec_augment
from mamba_jax.models import build_model
from mamba_jax.training.asr_losses import asr_loss, make_decoder_io

CONFIGS = ["conmamba_small", "conmamba_large", "conmambamamba_small", "conmambamamba_large", "conmamba_ctc_large"]
# All five run only with ``-m slow`` (``pytestmark``); by default, their models train and decode elsewhere.
# conmamba_small (Transformer decoder, joint search) and conmamba_ctc_large (CTC only, CTC beam search) run by
# default in tests/training/test_train_configs.py: the same smoke models through the training step (forward +
# backward) and then validation decoding with the config's search. conmambamamba_small (Mamba decoder) trains by
# default in tests/test_learning.py (``bench/learning.py conmamba_mamba --smoke``: that config file with a narrower
# encoder, two training steps with finite losses, then greedy CTC, attention and joint CTC/attention beam
# searches). The two large ones differ from their small counterparts only in what is tested on its own: label
# smoothing (tests/training/test_asr_losses.py) and a 512-point fbank (tests/layers/test_fbank.py).
pytestmark = pytest.mark.slow


@pytest.mark.parametrize("name", CONFIGS)
def test_smoke_forward_backward_decode(name):
    cfg = importlib.import_module(f"configs.{name}").get_config("smoke")
    model = build_model(cfg.model, rngs=nnx.Rngs(0))
    wav = jax.random.normal(jax.random.key(1), (2, 8000)) * 0.1
    # The training front end, compiled (eagerly, each of its ops would compile on its own).
    feats = jax.jit(lambda w: fbank(w, fbank_config_from(cfg.features)))(wav)  # [2, 51, 80]
    feat_len = jnp.array([51, 40])
    norm = InputNormalization(cfg.features.n_mels, update_until_epoch=cfg.features.norm_update_until_epoch)
    feats = nnx.jit(lambda n, f, k: n(f, k, epoch=0, train=True))(norm, feats, feat_len)
    feats = jax.jit(lambda k, f: spec_augment(k, f, SpecAugmentConfig.from_config(cfg.augment)))(
        jax.random.key(2), feats)
    tokens = jnp.array([[5, 6, 7, 3], [8, 9, 0, 0]])
    tok_len = jnp.array([4, 2])
    tokens_in = make_decoder_io(tokens, tok_len)[0]
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)

    @jax.jit
    def loss_fn(params, rest, key):
        m = nnx.merge(graphdef, params, rest)
        m.set_attributes(deterministic=False, raise_if_not_found=False)
        out = m(feats, feat_len, tokens_in if cfg.loss.name != "ctc" else None)
        loss, _ = asr_loss(out, tokens, tok_len, name=cfg.loss.name, ctc_weight=cfg.loss.ctc_weight,
                           label_smoothing=cfg.loss.label_smoothing, reduction=cfg.loss.reduction)
        return loss

    loss, grads = jax.jit(jax.value_and_grad(loss_fn))(params, rest, jax.random.key(3))
    assert np.isfinite(float(loss))
    leaves = {jax.tree_util.keystr(path): np.asarray(g) for path, g in jax.tree_util.tree_leaves_with_path(grads)}
    assert all(np.isfinite(g).all() for g in leaves.values())
    # every parameter leaf reaches the loss (a summed norm > 0 passed with whole branches detached); a CTC-only
    # config has no decoder, and the joint loss trains both heads
    dead = sorted(path for path, g in leaves.items() if not np.any(g))
    assert dead == [], f"parameters with an all-zero gradient: {dead}"

    model.eval()
    bcfg = beam_search_config_from(cfg.decoding, cfg.tokenizer)
    method = cfg.decoding.method
    hyps = decode_batch(model, feats, feat_len, bcfg, method=method)
    assert len(hyps) == 2 and all(all(0 < t < cfg.model.vocab_size for t in h) for h in hyps)
    if method == "joint":
        assert len(decode_batch(model, feats, feat_len, bcfg, method="ctc_greedy")) == 2
