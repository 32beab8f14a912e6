"""Resuming a workdir with a config that may differ from the one its checkpoint was written with.

What the checkpoint's train state depends on may not change: the task, the model (except ``scan_impl`` and
``dtype``, which change how it computes, not its parameters), the input shape (``data.sample_rate``,
``data.num_sources``, the ASR ``features``) and the tokenizer. A change there refuses to resume with a short
diff. Everything else (learning rate, batch size, number of steps, data paths, ...) is accepted and listed in
one line, so a changed command line is never taken silently.
"""

from __future__ import annotations

import json
import pathlib

import jax
import ml_collections

STRUCTURAL = ("task", "model.", "features.", "data.sample_rate", "data.num_sources", "tokenizer.kind",
              "tokenizer.vocab_size", "tokenizer.model_dir")
NOT_STRUCTURAL = ("model.scan_impl", "model.dtype")


class ConfigMismatchError(ValueError):
    """The workdir's checkpoint was trained with a different model or data shape."""


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def config_changes(stored: dict, new: dict) -> list[tuple[str, object, object]]:
    """``(key, stored value, new value)`` for every leaf that differs (a missing leaf is ``<unset>``)."""
    a = _flatten(json.loads(json.dumps(stored, default=str)))
    b = _flatten(json.loads(json.dumps(new, default=str)))
    unset = "<unset>"
    return [(k, a.get(k, unset), b.get(k, unset)) for k in sorted(set(a) | set(b))
            if a.get(k, unset) != b.get(k, unset)]


def is_structural(key: str) -> bool:
    return key not in NOT_STRUCTURAL and any(key == s or (s.endswith(".") and key.startswith(s)) for s in STRUCTURAL)


def check_resume(stored: dict, config: ml_collections.ConfigDict, workdir: str | pathlib.Path) -> str | None:
    """Raises ``ConfigMismatchError`` (with the diff) if the change is structural; otherwise prints and returns
    the one-line list of accepted changes (None when there is none)."""
    changes = config_changes(stored, config.to_dict())
    refused = [c for c in changes if is_structural(c[0])]
    if refused:
        diff = "\n".join(f"  {k}: {a!r} -> {b!r}" for k, a, b in refused)
        raise ConfigMismatchError(
            f"cannot resume {workdir}: its checkpoint was trained with a different model/data config:\n{diff}\n"
            f"Use a new --workdir, or --config.train.init_from={workdir} to start from its weights.")
    if not changes:
        return None
    line = "resuming with a changed config: " + ", ".join(f"{k} {a!r} -> {b!r}" for k, a, b in changes)
    if jax.process_index() == 0:
        print(line, flush=True)
    return line
