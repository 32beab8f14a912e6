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
import sys

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


class NewestReadable:
    """Resume from the newest checkpoint that can be read: a step with a truncated or corrupt file (a copy cut
    short, a crash of the file system) is passed over for the one before it. Once a step restores, each newer
    unreadable step is one warning line naming it and the problem, and is renamed ``<step>.unreadable``
    (kept for inspection; no longer a step, so the run can write that step again). When no step can be read,
    ``CheckpointReadError`` names the workdir and nothing is renamed."""

    def __init__(self, ckpt, workdir: str | pathlib.Path):
        self.ckpt, self.workdir = ckpt, pathlib.Path(workdir)
        self.unreadable: dict[int, str] = {}

    def _candidates(self) -> list[int]:
        return [s for s in self.ckpt.steps() if s not in self.unreadable]

    def _none_readable(self):
        from mamba_jax.checkpoint import CheckpointReadError

        problems = "; ".join(f"step {s}: {p}" for s, p in sorted(self.unreadable.items(), reverse=True))
        return CheckpointReadError(f"cannot resume {self.workdir}: no checkpoint in {self.ckpt.directory} can be "
                                   f"read ({problems}). Move them away to start from step 0.")

    def stored_config(self) -> dict | None:
        """The config stored with the newest step whose files read (None: no checkpoint)."""
        from mamba_jax.checkpoint import CheckpointReadError

        for step in self._candidates():
            try:
                return self.ckpt.stored_config(step)
            except CheckpointReadError as e:
                self.unreadable[step] = str(e)
        if self.unreadable:
            raise self._none_readable()
        return None

    def restore(self, restore_step) -> tuple[int, dict] | None:
        """``(step, restore_step(step))`` for the newest step that restores (None: no checkpoint)."""
        from mamba_jax.checkpoint import CheckpointReadError

        for step in self._candidates():
            try:
                state = restore_step(step)
            except CheckpointReadError as e:
                self.unreadable[step] = str(e)
                continue
            for bad in sorted(self.unreadable, reverse=True):
                moved = self.ckpt.set_aside(bad)
                if jax.process_index() == 0:
                    print(f"warning: checkpoint step {bad} in {self.ckpt.directory} cannot be read "
                          f"({self.unreadable[bad]}); resuming from step {step} (the unreadable step is kept as "
                          f"{moved.name})", file=sys.stderr, flush=True)
            return step, state
        if self.unreadable:
            raise self._none_readable()
        return None


class InitFromError(ValueError):
    """``train.init_from`` names no checkpoint, an unreadable one, or one of another model."""


def check_init_from(config: ml_collections.ConfigDict) -> None:
    """Before anything is built: ``train.init_from`` exists, holds a checkpoint, and of this config's task and
    model (the shapes are checked when its weights are loaded)."""
    from mamba_jax.checkpoint import CheckpointReadError, read_config

    path = config.train.init_from
    setting = f"train.init_from={path}"
    if not pathlib.Path(path).expanduser().exists():
        raise InitFromError(f"{setting}: no such file or folder (a checkpoint to fine-tune from: a workdir, its "
                            f"checkpoints/ folder or a step folder)")
    try:
        stored, step = read_config(path)
    except (FileNotFoundError, CheckpointReadError) as e:
        raise InitFromError(f"{setting}: {e}") from None
    theirs = (stored.get("task"), stored.get("model", {}).get("name"))
    ours = (config.task, config.model.get("name"))
    if theirs != ours:
        raise InitFromError(f"{setting}: its checkpoint (step {step}) is a {theirs[1]!r} {theirs[0]} model; this "
                            f"config trains a {ours[1]!r} {ours[0]} model")
