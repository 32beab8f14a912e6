"""Config values checked when a config is loaded, before anything is built or written.

A value that the trainer would only trip over later (a 29-line grain error for ``batch_size=0``), or that would
silently misbehave (``num_steps=-5`` trains nothing and exits 0; ``lr=-1`` ascends the loss to NaN), is one line
naming the field, its value and the rule. ``train.py`` prints each such line and exits 2; ``train_and_evaluate``
raises ``ConfigValueError`` with all of them.

The rules cover every numeric field of the config families (``configs/_families.py``) and of
``mamba_jax.training.defaults.base_config``; a block a config does not have is skipped.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import ml_collections

__all__ = ["ConfigValueError", "check_config", "config_problems"]


class ConfigValueError(ValueError):
    """One or more config values are out of range; the message has one ``field=value: rule`` per problem."""


def _num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _finite(v) -> bool:
    return _num(v) and math.isfinite(v)


def _int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


Rule = tuple[str, Callable[[object], bool], str]

# (field, predicate, rule as the user reads it); None passes where the field is optional.
_RULES: list[Rule] = [
    ("train.num_steps", lambda v: _int(v) and v > 0, "must be an integer > 0"),
    ("train.batch_size", lambda v: _int(v) and v >= 1, "must be an integer >= 1"),
    ("train.seed", lambda v: _int(v) and v >= 0, "must be an integer >= 0"),
    ("train.log_every_steps", lambda v: _int(v) and v >= 1, "must be an integer >= 1"),
    ("train.eval_every_steps", lambda v: _int(v) and v >= 1, "must be an integer >= 1"),
    ("train.checkpoint_every_steps", lambda v: _int(v) and v >= 1, "must be an integer >= 1"),
    ("train.max_to_keep", lambda v: _int(v) and v >= 1, "must be an integer >= 1"),
    ("train.keep_best", lambda v: _int(v) and v >= 0, "must be an integer >= 0 (0: keep no best-score steps)"),
    ("train.eval_batches", lambda v: v is None or (_int(v) and v >= 1), "must be None (the whole split) or >= 1"),
    ("train.eval_pad_multiple", lambda v: _int(v) and v >= 1, "must be an integer >= 1"),
    ("train.precision", lambda v: v in ("fp32", "bf16"), "must be 'fp32' or 'bf16'"),
    ("optim.name", lambda v: v in ("adam", "adamw"), "must be 'adam' or 'adamw'"),
    # 0 is allowed: a run whose weights must not move (tests/training/test_loop.py checks init_from with it)
    ("optim.lr", lambda v: _finite(v) and v >= 0, "must be >= 0 (a negative learning rate ascends the loss)"),
    ("optim.weight_decay", lambda v: _finite(v) and v >= 0, "must be >= 0"),
    ("optim.b1", lambda v: _finite(v) and 0 <= v < 1, "must be in [0, 1)"),
    ("optim.b2", lambda v: _finite(v) and 0 <= v < 1, "must be in [0, 1)"),
    ("optim.eps", lambda v: _finite(v) and v > 0, "must be > 0"),
    ("optim.clip_norm", lambda v: _finite(v) and v >= 0, "must be >= 0 (0: no clipping)"),
    ("optim.schedule", lambda v: v in ("constant", "warmup_cosine", "plateau", "noam"),
     "must be 'constant', 'warmup_cosine', 'plateau' or 'noam'"),
    ("optim.warmup_steps", lambda v: _int(v) and v >= 0, "must be an integer >= 0"),
    ("optim.min_lr_ratio", lambda v: _finite(v) and 0 <= v <= 1, "must be in [0, 1]"),
    ("optim.plateau_patience", lambda v: _int(v) and v >= 0, "must be an integer >= 0"),
    ("optim.plateau_factor", lambda v: _finite(v) and 0 < v <= 1, "must be in (0, 1]"),
    ("optim.grad_accum", lambda v: _int(v) and v >= 1, "must be an integer >= 1 (1: no accumulation)"),
    ("loss.threshold_db", lambda v: v is None or _finite(v), "must be None or a finite number of dB"),
    ("loss.ctc_weight", lambda v: _finite(v) and 0 <= v <= 1, "must be in [0, 1]"),
    ("loss.label_smoothing", lambda v: _finite(v) and 0 <= v < 1, "must be in [0, 1)"),
    ("loss.blank_id", lambda v: _int(v) and v >= 0, "must be an integer >= 0"),
    ("data.segment_seconds", lambda v: v is None or (_finite(v) and v > 0),
     "must be None (whole utterances) or > 0 seconds"),
    ("data.eval_segment_seconds", lambda v: v is None or (_finite(v) and v > 0),
     "must be None (whole utterances) or > 0 seconds"),
    ("data.items_per_epoch", lambda v: v is None or (_int(v) and v >= 1), "must be None or an integer >= 1"),
    ("data.read_threads", lambda v: _int(v) and v >= 1, "must be an integer >= 1"),
    ("data.num_workers", lambda v: _int(v) and v >= 0, "must be an integer >= 0 (0: in-process)"),
    ("data.num_sources", lambda v: _int(v) and v >= 1, "must be an integer >= 1"),
    ("data.sample_rate", lambda v: _int(v) and v > 0 and v % 1000 == 0, "must be a positive multiple of 1000 Hz"),
    ("features.sample_rate", lambda v: _int(v) and v > 0, "must be an integer > 0 (Hz)"),
    ("features.n_mels", lambda v: _int(v) and v >= 1, "must be an integer >= 1"),
    ("features.n_fft", lambda v: _int(v) and v >= 1, "must be an integer >= 1"),
    ("features.win_length_ms", lambda v: _finite(v) and v > 0, "must be > 0 ms"),
    ("features.hop_length_ms", lambda v: _finite(v) and v > 0, "must be > 0 ms"),
    ("features.top_db", lambda v: _finite(v) and v > 0, "must be > 0 dB"),
    ("features.norm_update_until_epoch", lambda v: _int(v) and v >= 0, "must be an integer >= 0"),
    ("augment.time_warp_window", lambda v: _int(v) and v >= 0, "must be an integer >= 0 (0: no warp)"),
    ("recipe.max_batch_seconds", lambda v: _finite(v) and v > 0, "must be > 0 seconds"),
    ("recipe.max_batch_examples", lambda v: _int(v) and v >= 1, "must be an integer >= 1"),
    ("recipe.num_buckets", lambda v: _int(v) and v >= 1, "must be an integer >= 1"),
    ("tokenizer.vocab_size", lambda v: _int(v) and v >= 2, "must be an integer >= 2"),
    ("decoding.beam_size", lambda v: _int(v) and v >= 1, "must be an integer >= 1"),
    ("decoding.ctc_weight", lambda v: _finite(v) and 0 <= v <= 1, "must be in [0, 1]"),
    ("decoding.max_decode_ratio", lambda v: _finite(v) and v > 0, "must be > 0"),
    ("decoding.ctc_topk", lambda v: _int(v) and v >= 0, "must be an integer >= 0 (0: the whole vocabulary)"),
]

# SpecAugment (min, max) pairs: counts and lengths.
_RANGES = ("augment.time_drop_count", "augment.time_drop_length", "augment.freq_drop_count",
           "augment.freq_drop_length")
# Integer model fields that may be 0; every other integer model field (widths, layers, kernels, heads) is >= 1.
_MODEL_MAY_BE_ZERO = ("num_decoder_layers", "norm_update_until_epoch")


def _get(config: dict, key: str):
    """``(True, value)`` for a dotted key the config has, else ``(False, None)``."""
    node = config
    for part in key.split("."):
        if not hasattr(node, "keys") or part not in node.keys():
            return False, None
        node = node[part]
    return True, node


def config_problems(config: ml_collections.ConfigDict) -> list[str]:
    """One ``field=value: rule`` line per out-of-range value of ``config`` (empty when all are valid).

    Reads a plain-dict copy (``to_dict``), so these reads are not the trainer's: tests/training/
    test_train_configs.py records which fields the trainer reads."""
    config = config.to_dict() if hasattr(config, "to_dict") else config
    problems = []
    for key, ok, rule in _RULES:
        present, value = _get(config, key)
        if present and not ok(value):
            problems.append(f"{key}={value!r}: {rule}")
    for key in _RANGES:
        present, value = _get(config, key)
        if present and not (isinstance(value, (tuple, list)) and len(value) == 2 and all(_int(v) for v in value)
                            and 0 <= value[0] <= value[1]):
            problems.append(f"{key}={value!r}: must be a pair (min, max) of integers with 0 <= min <= max")
    if "model" in config:
        for name, value in sorted(config["model"].items()):
            if name == "dropout" and not (_finite(value) and 0 <= value < 1):
                problems.append(f"model.dropout={value!r}: must be in [0, 1)")
            elif _int(value) and value < (0 if name in _MODEL_MAY_BE_ZERO else 1):
                problems.append(f"model.{name}={value!r}: must be an integer >= "
                                f"{0 if name in _MODEL_MAY_BE_ZERO else 1}")
            elif isinstance(value, tuple) and value and all(_int(v) for v in value) and min(value) < 1:
                problems.append(f"model.{name}={value!r}: every entry must be >= 1")
    return problems


def check_config(config: ml_collections.ConfigDict) -> None:
    """Raises ``ConfigValueError`` listing every out-of-range value of ``config``."""
    problems = config_problems(config)
    if problems:
        raise ConfigValueError("invalid config: " + "; ".join(problems))
