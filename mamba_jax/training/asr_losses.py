"""ASR losses of the ConMamba recipes (docs/conmamba.md): CTC and KL-divergence with label smoothing.

* S2S: ``loss = w·CTC + (1 - w)·KL`` with ``w = 0.3``; label smoothing 0.1 (large) / 0.0 (small);
  ``reduction='batchmean'`` = summed over frames/tokens and divided by the batch size (SpeechBrain).
* CTC-only: ``reduction='mean'`` = torch's ctc_loss 'mean' (each loss over its target length, then averaged).

CTC uses ``optax.ctc_loss``; utterances whose labels cannot fit in their frames (fewer frames than labels plus
repeats) get loss 0, as torch's ``zero_infinity=True``.

Decoder targets: ``tokens_in = [bos, y_1..y_U]`` (pad 0) and ``targets = [y_1..y_U, eos]``, length U + 1.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from mamba_jax.typing import Array, Float, Int


def make_decoder_io(tokens: Int[Array, "B U"], lengths: Int[Array, "B"], *, bos_id: int = 1, eos_id: int = 2,
                    pad_id: int = 0) -> tuple[Int[Array, "B U1"], Int[Array, "B U1"], Int[Array, "B"]]:
    """``(tokens_in, targets, target_lengths)`` from padded ``tokens`` (see the module docstring)."""
    b, u = tokens.shape
    valid = jnp.arange(u)[None] < lengths[:, None]
    tok = jnp.where(valid, tokens, pad_id)
    tokens_in = jnp.concatenate([jnp.full((b, 1), bos_id, tokens.dtype), tok], axis=1)
    padded = jnp.concatenate([tok, jnp.full((b, 1), pad_id, tokens.dtype)], axis=1)
    targets = jnp.where(jnp.arange(u + 1)[None] == lengths[:, None], eos_id, padded)
    return tokens_in, targets, lengths + 1


def _reduce(per_utt: jax.Array, norm: jax.Array, reduction: str) -> jax.Array:
    if reduction == "batchmean":
        return jnp.sum(per_utt) / per_utt.shape[0]
    if reduction == "mean":
        return jnp.mean(per_utt / jnp.maximum(norm, 1).astype(per_utt.dtype))
    if reduction == "sum":
        return jnp.sum(per_utt)
    if reduction == "none":
        return per_utt
    raise ValueError(f"reduction must be batchmean|mean|sum|none, got {reduction!r}")


def ctc_loss(logprobs: Float[Array, "B L V"], enc_lengths: Int[Array, "B"], labels: Int[Array, "B U"],
             label_lengths: Int[Array, "B"], *, blank_id: int = 0, reduction: str = "batchmean") -> jax.Array:
    """CTC negative log-likelihood; ``reduction``: 'batchmean' | 'mean' | 'sum' | 'none' ([B])."""
    b, t = logprobs.shape[:2]
    u = labels.shape[1]
    logit_pad = (jnp.arange(t)[None] >= enc_lengths[:, None]).astype(jnp.float32)
    label_valid = jnp.arange(u)[None] < label_lengths[:, None]
    per_utt = optax.ctc_loss(logprobs.astype(jnp.float32), logit_pad, labels,
                             (~label_valid).astype(jnp.float32), blank_id=blank_id)
    repeats = jnp.sum((labels[:, 1:] == labels[:, :-1]) & label_valid[:, 1:], axis=1)
    feasible = enc_lengths >= label_lengths + repeats
    per_utt = jnp.where(feasible, per_utt, 0.0)
    return _reduce(per_utt, label_lengths, reduction)


def kldiv_loss(logprobs: Float[Array, "B U V"], targets: Int[Array, "B U"], lengths: Int[Array, "B"], *,
               label_smoothing: float = 0.0, reduction: str = "batchmean") -> jax.Array:
    """KL(q || p) per token, q = 1 - ls on the target and ls/(V-1) elsewhere (ls = 0: NLL), masked by length."""
    v = logprobs.shape[-1]
    lp = logprobs.astype(jnp.float32)
    conf, other = 1.0 - label_smoothing, label_smoothing / (v - 1)
    tgt_lp = jnp.take_along_axis(lp, targets[..., None], axis=-1)[..., 0]  # [B, U]
    if label_smoothing > 0:
        ent = conf * jnp.log(conf) + (v - 1) * other * jnp.log(other)  # sum_v q log q
        cross = other * (jnp.sum(lp, axis=-1) - tgt_lp) + conf * tgt_lp  # sum_v q log p
        tok = ent - cross
    else:
        tok = -tgt_lp
    mask = jnp.arange(targets.shape[1])[None] < lengths[:, None]
    per_utt = jnp.sum(jnp.where(mask, tok, 0.0), axis=1)
    return _reduce(per_utt, lengths, reduction)


def asr_loss(outputs: dict[str, jax.Array], tokens: Int[Array, "B U"], token_lengths: Int[Array, "B"], *,
             name: str = "ctc_attention", ctc_weight: float = 0.3, label_smoothing: float = 0.1,
             reduction: str = "batchmean", blank_id: int = 0, eos_id: int = 2
             ) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Loss and metrics from the model's output dict. ``tokens`` are the bare labels (no bos/eos); the model
    must have been called with ``make_decoder_io(tokens, ...)[0]`` as ``tokens_in`` for 'ctc_attention'."""
    l_ctc = ctc_loss(outputs["ctc_logprobs"], outputs["enc_lengths"], tokens, token_lengths, blank_id=blank_id,
                     reduction=reduction)
    metrics = dict(ctc_loss=l_ctc)
    if name == "ctc":
        return l_ctc, dict(metrics, loss=l_ctc)
    if name != "ctc_attention":
        raise ValueError(f"asr loss name must be 'ctc' or 'ctc_attention', got {name!r}")
    _, targets, tgt_len = make_decoder_io(tokens, token_lengths, eos_id=eos_id)
    att = outputs["attn_logprobs"]
    l_att = kldiv_loss(att, targets, tgt_len, label_smoothing=label_smoothing, reduction=reduction)
    mask = jnp.arange(targets.shape[1])[None] < tgt_len[:, None]
    acc = jnp.sum((jnp.argmax(att, -1) == targets) & mask) / jnp.maximum(jnp.sum(mask), 1)
    loss = ctc_weight * l_ctc + (1.0 - ctc_weight) * l_att
    return loss, dict(metrics, attn_loss=l_att, acc=acc, loss=loss)
