"""Optimisers and learning-rate schedules of the four recipes (docs/mamba_tasnet.md, docs/conmamba.md,
docs/sepmamba.md, docs/spmamba.md), all optax.

``make_optimizer(opt, total_steps)``: global-norm clipping, Adam or AdamW (optionally accumulated over
``grad_accum`` micro-steps with ``optax.MultiSteps``), then the learning rate of the schedule, injected with
``optax.inject_hyperparams`` (its value is in the state: ``learning_rate(opt_state)``), all applied to the
parameters concatenated into one vector (``optax.flatten``: the moments are stored flat); with
``schedule="plateau"`` also a ReduceLROnPlateau scale (``optax.contrib.reduce_on_plateau``) fed the
validation loss by ``observe_validation``. Every bit of schedule state lives in ``opt_state``, so the
checkpointed train state resumes it exactly. The schedules, of the number of updates ``n`` made so far
(n = 0 for the first; a step whose update was skipped does not count). With ``grad_accum = k > 1`` an update is
every k-th micro-step (training step), so ``n`` is the micro-step count divided by k and ``warmup_steps`` counts
updates, as the recipes' schedulers do (SpeechBrain steps its Noam scheduler only when the optimiser steps,
xi-j/Mamba-ASR ``train_S2S.py`` ``on_fit_batch_end``); ``total_steps`` (micro-steps, ``train.num_steps``) gives
``total_steps // k`` updates:

* constant / plateau: ``lr``;
* warmup_cosine: linear warm-up to ``lr`` at update ``warmup_steps``, then cosine to ``min_lr_ratio * lr`` at
  update ``total_steps // k`` (Mamba-TasNet: HF constant-with-warm-up, then CosineAnnealingLR);
* noam: ``lr * sqrt(w) * min(m^-0.5, m * w^-1.5)`` with ``m = n + 1`` (ConMamba; peaks at ``lr`` at m = w);
* plateau: torch ``ReduceLROnPlateau`` (mode min, relative threshold 1e-4): the scale is multiplied by
  ``plateau_factor`` once ``plateau_patience + 1`` evaluations in a row did not improve on the best.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import optax
from optax.contrib import ReduceLROnPlateauState, reduce_on_plateau

SCHEDULES = ("constant", "warmup_cosine", "noam", "plateau")


def learning_rate_schedule(opt: ml_collections.ConfigDict, total_steps: int) -> optax.Schedule:
    """``n`` (updates made so far) -> the learning rate of update ``n + 1`` (see the module docstring)."""
    if opt.schedule in ("constant", "plateau"):
        return optax.constant_schedule(opt.lr)
    if opt.schedule == "warmup_cosine":
        w = max(opt.warmup_steps, 0)
        sched = optax.warmup_cosine_decay_schedule(
            init_value=0.0, peak_value=opt.lr, warmup_steps=w, decay_steps=w + max(total_steps - w, 1),
            end_value=opt.min_lr_ratio * opt.lr)
        return lambda n: sched(n + 1)
    if opt.schedule == "noam":
        w = max(opt.warmup_steps, 1)

        def noam(n):
            m = jnp.asarray(n, jnp.float32) + 1.0
            return opt.lr * w ** 0.5 * jnp.minimum(m ** -0.5, m * w ** -1.5)

        return noam
    raise ValueError(f"optim.schedule {opt.schedule!r} is not one of {', '.join(SCHEDULES)}")


def _plateau(opt: ml_collections.ConfigDict) -> optax.GradientTransformationExtraArgs:
    # optax reduces when `patience` evaluations in a row did not improve; torch when more than `patience` did.
    return reduce_on_plateau(factor=opt.plateau_factor, patience=opt.plateau_patience + 1, rtol=1e-4)


def _scale_by_plateau(opt: ml_collections.ConfigDict) -> optax.GradientTransformation:
    """Multiplies the updates by the plateau scale; its state changes only in ``observe_validation``."""
    return optax.GradientTransformation(
        _plateau(opt).init, lambda updates, state, params=None: (optax.tree.scale(state.scale, updates), state))


def make_optimizer(opt: ml_collections.ConfigDict, total_steps: int) -> optax.GradientTransformation:
    """The optimiser of ``config.optim`` for a run of ``total_steps`` (see the module docstring). Its state is
    ``(inject_hyperparams state, plateau state or EmptyState)``."""
    if opt.name not in ("adam", "adamw"):
        raise ValueError(f"optim.name must be 'adam' or 'adamw', got {opt.name!r}")

    def scheduled(learning_rate):
        if opt.name == "adam":
            base = optax.adam(1.0, b1=opt.b1, b2=opt.b2, eps=opt.eps)
            if opt.weight_decay:  # torch Adam's weight_decay is L2 added to the gradient (not decoupled)
                base = optax.chain(optax.add_decayed_weights(opt.weight_decay), base)
        else:
            base = optax.adamw(1.0, b1=opt.b1, b2=opt.b2, eps=opt.eps, weight_decay=opt.weight_decay)
        tx = optax.chain(optax.clip_by_global_norm(opt.clip_norm), base) if opt.clip_norm else base
        if opt.grad_accum > 1:  # zero updates on the first grad_accum - 1 micro-steps, then the mean's
            tx = optax.MultiSteps(tx, every_k_schedule=opt.grad_accum)
        # The unit-rate step times the scheduled rate, on all parameters concatenated into one vector: a few
        # large elementwise programs instead of several per parameter array, which XLA compiles faster
        # (the per-array work is the same arithmetic); Adam's moments are stored as such vectors.
        return optax.flatten(optax.chain(tx, optax.scale(learning_rate)))

    k = max(int(opt.grad_accum), 1)
    per_update = learning_rate_schedule(opt, max(total_steps // k, 1))
    # inject_hyperparams counts every micro-step; the update of micro-step n (0-based) is update n // k + 1.
    schedule = per_update if k == 1 else (lambda n: per_update(n // k))
    tx = optax.inject_hyperparams(scheduled)(learning_rate=schedule)
    return optax.chain(tx, _scale_by_plateau(opt) if opt.schedule == "plateau" else optax.identity())


def learning_rate(opt_state) -> jax.Array:
    """The learning rate of the last update made with ``opt_state`` (the plateau scale included)."""
    scheduled, plateau = opt_state
    lr = scheduled.hyperparams["learning_rate"]
    return lr * plateau.scale if isinstance(plateau, ReduceLROnPlateauState) else lr


def observe_validation(opt: ml_collections.ConfigDict, opt_state, val_loss: float):
    """``opt_state`` after a validation loss (lower is better): the plateau rule's step; unchanged for the
    other schedules."""
    if opt.schedule != "plateau":
        return opt_state
    scheduled, plateau = opt_state
    _, plateau = _plateau(opt).update((), plateau, value=jnp.asarray(val_loss, jnp.float32))
    return scheduled, plateau
