"""Optimisers and learning-rate schedules of the four recipes (docs/mamba_tasnet.md, docs/conmamba.md,
docs/sepmamba.md, docs/spmamba.md).

The learning rate is computed on the host (``LrSchedule.lr``) and passed into the jitted step, so every
schedule, including validation-driven ReduceLROnPlateau, is one mechanism whose state is a few numbers saved
with the checkpoint.
"""

from __future__ import annotations

import dataclasses
import math

import jax.numpy as jnp
import ml_collections
import optax


def make_optimizer(opt: ml_collections.ConfigDict) -> optax.GradientTransformation:
    """Global-norm clipping, then Adam/AdamW with an injected learning rate, with optional gradient accumulation."""
    if opt.name == "adam":
        base = optax.inject_hyperparams(optax.adam)(learning_rate=opt.lr, b1=opt.b1, b2=opt.b2, eps=opt.eps)
        if opt.weight_decay:
            # torch Adam's weight_decay is L2 added to the gradient (not decoupled).
            base = optax.chain(optax.add_decayed_weights(opt.weight_decay), base)
    elif opt.name == "adamw":
        base = optax.inject_hyperparams(optax.adamw)(learning_rate=opt.lr, b1=opt.b1, b2=opt.b2, eps=opt.eps,
                                                     weight_decay=opt.weight_decay)
    else:
        raise ValueError(f"optim.name must be 'adam' or 'adamw', got {opt.name!r}")
    tx = optax.chain(optax.clip_by_global_norm(opt.clip_norm), base) if opt.clip_norm else base
    if opt.grad_accum > 1:
        tx = optax.MultiSteps(tx, every_k_schedule=opt.grad_accum)
    return tx


def set_learning_rate(opt_state, lr: float | object):
    """Returns ``opt_state`` with the injected learning rate replaced (works through chain/MultiSteps)."""

    def visit(s):
        if hasattr(s, "_fields") and "hyperparams" in s._fields and "learning_rate" in s.hyperparams:
            old = s.hyperparams["learning_rate"]
            return s._replace(hyperparams={**s.hyperparams, "learning_rate": jnp.asarray(lr, old.dtype)})
        if isinstance(s, optax.MultiStepsState):
            return s._replace(inner_opt_state=visit(s.inner_opt_state))
        if isinstance(s, tuple) and not hasattr(s, "_fields"):
            return tuple(visit(x) for x in s)
        return s

    return visit(opt_state)


@dataclasses.dataclass
class LrSchedule:
    """Host-side schedule. ``scale`` and the plateau counters are its only state (checkpointed as JSON).

    * constant: lr.
    * warmup_cosine: linear warm-up over ``warmup_steps``, then cosine to ``min_lr_ratio * lr`` at
      ``total_steps`` (Mamba-TasNet: HF constant-with-warm-up, then CosineAnnealingLR).
    * noam: ``lr * sqrt(w) * min(step^-0.5, step * w^-1.5)`` (ConMamba; peaks at ``lr`` at step w).
    * plateau: lr * scale, where ``scale`` halves after ``plateau_patience`` evaluations without improvement.
    """

    opt: ml_collections.ConfigDict
    total_steps: int
    scale: float = 1.0
    best: float = math.inf
    bad_evals: int = 0

    def lr(self, step: int) -> float:
        o, s = self.opt, step + 1  # the lr used for the update that produces step s
        if o.schedule in ("constant", "plateau"):
            return o.lr * self.scale
        if o.schedule == "warmup_cosine":
            w = max(o.warmup_steps, 0)
            if s <= w:
                return o.lr * s / max(w, 1)
            frac = min(1.0, (s - w) / max(self.total_steps - w, 1))
            return o.lr * (o.min_lr_ratio + (1 - o.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * frac)))
        if o.schedule == "noam":
            w = max(o.warmup_steps, 1)
            return o.lr * math.sqrt(w) * min(s ** -0.5, s * w ** -1.5)
        raise ValueError(f"optim.schedule {o.schedule!r} is not one of constant, warmup_cosine, noam, plateau")

    def observe(self, val_loss: float) -> None:
        """Feeds a validation loss (lower is better) to the plateau rule."""
        if self.opt.schedule != "plateau":
            return
        if val_loss < self.best:
            self.best, self.bad_evals = val_loss, 0
        else:
            self.bad_evals += 1
            if self.bad_evals > self.opt.plateau_patience:
                self.scale *= self.opt.plateau_factor
                self.bad_evals = 0

    def state_dict(self) -> dict:
        return dict(scale=self.scale, best=self.best if math.isfinite(self.best) else None, bad_evals=self.bad_evals)

    def load_state_dict(self, d: dict) -> None:
        self.scale, self.bad_evals = d["scale"], d["bad_evals"]
        self.best = math.inf if d["best"] is None else d["best"]
