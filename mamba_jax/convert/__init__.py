"""Conversion of the original PyTorch checkpoints into mamba-jax weights.

One module per model family, ``mamba_jax.convert.<model_cfg.name>``, exposes

* ``convert(state_dict: dict[str, np.ndarray], model_cfg) -> (params, rest)``: maps the original key names
  and layouts (docs/mamba.md) onto our parameter tree, built with ``common.StateDictMapper`` so that every
  missing, unexpected or mis-shaped key is reported in one error;
* optionally ``CKPT_FILES``: the module files of a SpeechBrain ``CKPT+...`` folder (``encoder.ckpt``, ...)
  whose keys are prefixed with the file's stem, or ``read(path) -> state_dict`` for its own file layout.

``convert_checkpoint`` reads a checkpoint (torch zip format, weights only, no torch needed), converts it
and writes it with ``mamba_jax.checkpoint.save_params`` (into a temporary folder renamed into place; an
existing ``checkpoints/`` is refused unless ``overwrite``), so ``load_params``/``load_model``, the inference
classes and ``train.py`` fine-tuning read it like any of our checkpoints.
"""

from __future__ import annotations

import importlib
import pathlib
import shutil
from types import ModuleType

import jax
import numpy as np

from mamba_jax.convert import torch_zip
from mamba_jax.convert.common import ConversionError, StateDictMapper, strip_prefix

__all__ = ["ConversionError", "StateDictMapper", "convert_checkpoint", "convert_state_dict", "existing_checkpoints",
           "read_state_dict"]

# Wrappers around a model's state_dict in the original training code: Lightning / look2hear
# (``state_dict``), SepMamba's MetricLogger (``model_state_dict``).
_NESTED = ("state_dict", "model_state_dict", "model")
_PREFIXES = ("audio_model.", "module.")


def _family(name: str) -> ModuleType:
    try:
        return importlib.import_module(f"mamba_jax.convert.{name}")
    except ModuleNotFoundError as err:
        if err.name != f"mamba_jax.convert.{name}":
            raise
        raise ValueError(f"no converter for model {name!r} (no module mamba_jax.convert.{name})") from err


def convert_state_dict(state_dict: dict[str, np.ndarray], model_cfg) -> tuple[dict, dict]:
    """``(params, rest)`` numpy pure dicts of ``model_cfg``'s model from an original ``state_dict``.

    Raises ``ConversionError`` naming every missing, unexpected or mis-shaped key."""
    return _family(model_cfg.name).convert(state_dict, model_cfg)


def _is_state_dict(obj) -> bool:
    return isinstance(obj, dict) and bool(obj) and all(isinstance(v, np.ndarray) for v in obj.values())


def unwrap(obj, source: str) -> dict[str, np.ndarray]:
    """The model state_dict inside a loaded checkpoint object: the object itself, or its ``state_dict`` /
    ``model_state_dict`` / ``model`` entry; ``audio_model.`` (Lightning) and ``module.`` (DDP) prefixes
    removed."""
    seen = obj
    while not _is_state_dict(seen):
        if not isinstance(seen, dict):
            raise ValueError(f"{source}: expected a state_dict (dict of tensors), got {type(seen).__name__}")
        inner = next((seen[k] for k in _NESTED if isinstance(seen.get(k), dict)), None)
        if inner is None:
            raise ValueError(f"{source}: no state_dict found; top-level keys {sorted(map(str, seen))[:20]}, "
                             f"expected tensors or one of {_NESTED}")
        seen = inner
    sd = dict(seen)
    for prefix in _PREFIXES:
        sd = strip_prefix(sd, prefix)
    return sd


def read_state_dict(path: str | pathlib.Path, model_cfg) -> dict[str, np.ndarray]:
    """The original state_dict stored at ``path`` for ``model_cfg``'s family.

    A file: a torch zip checkpoint (``.pth``/``.ckpt``/``.pt``), see ``unwrap``. A directory: a SpeechBrain
    ``CKPT+...`` folder whose ``<stem>.ckpt`` files (the family's ``CKPT_FILES``) are merged with keys
    ``<stem>.<key>``."""
    path = pathlib.Path(path)
    family = _family(model_cfg.name)
    if hasattr(family, "read"):
        return family.read(path)
    if not path.is_dir():
        return unwrap(torch_zip.load(path), str(path))
    stems = getattr(family, "CKPT_FILES", None)
    if not stems:
        raise ValueError(f"{path} is a directory, but model {model_cfg.name!r} checkpoints are single files")
    missing = [f"{s}.ckpt" for s in stems if not (path / f"{s}.ckpt").is_file()]
    if missing:
        raise FileNotFoundError(f"{path}: SpeechBrain checkpoint folder without {', '.join(missing)}")
    out: dict[str, np.ndarray] = {}
    for stem in stems:
        f = path / f"{stem}.ckpt"
        out.update({f"{stem}.{k}": v for k, v in unwrap(torch_zip.load(f), str(f)).items()})
    return out


def convert_checkpoint(config, torch_checkpoint: str | pathlib.Path, out_dir: str | pathlib.Path, *,
                       overwrite: bool = False) -> pathlib.Path:
    """Reads the original checkpoint ``torch_checkpoint``, converts it for ``config.model`` and writes
    ``<out_dir>/checkpoints/0/`` with ``save_params`` (``config`` is the full experiment ConfigDict that goes
    with the weights). Returns the step directory.

    A ``<out_dir>/checkpoints/`` that already holds anything (an earlier conversion, a training run) is refused
    with ``FileExistsError`` before reading, unless ``overwrite``: then it is replaced as a whole, so no older
    or later step stays beside the new weights. The folder is written under a temporary name beside it and
    renamed into place: a failed write (disk full, read-only) leaves the old one, or none, and raises
    :class:`mamba_jax.fileio.OutputError` naming the folder and the OS cause."""
    from mamba_jax.checkpoint import save_params
    from mamba_jax.fileio import atomic_dir, check_space, check_writable

    dest = pathlib.Path(out_dir).absolute() / "checkpoints"
    held = existing_checkpoints(dest)
    if held and not overwrite:
        raise FileExistsError(f"{dest} already holds {held}: pass --overwrite (overwrite=True) to replace them, "
                              f"or choose another output folder")
    state_dict = read_state_dict(torch_checkpoint, config.model)
    try:
        params, rest = convert_state_dict(state_dict, config.model)
    except ConversionError as err:
        raise ConversionError(f"{torch_checkpoint}: {err}") from None
    check_writable(dest.parent)  # read-only or unwritable: one line now, not orbax's tracebacks
    nbytes = sum(np.asarray(v).nbytes for v in jax.tree_util.tree_leaves((params, rest)))
    check_space(dest.parent, nbytes + 2**20)  # + orbax's metadata
    with atomic_dir(dest, replace=True) as tmp:
        step_dir = save_params(tmp / "work", params, rest, config, step=0)  # <tmp>/work/checkpoints/0
        step_dir.rename(tmp / step_dir.name)
        shutil.rmtree(tmp / "work")
    return dest / "0"


def existing_checkpoints(folder: pathlib.Path) -> str:
    """What ``folder`` (a ``checkpoints/`` folder) holds, in words (``"checkpoints of steps 0, 5"``); '' when
    it is missing or empty."""
    if not folder.is_dir():
        return "" if not folder.exists() else "a file of that name"
    entries = sorted(folder.iterdir())
    steps = sorted(int(e.name) for e in entries if e.name.isdigit())
    if steps:
        return f"checkpoints of step{'s' if len(steps) > 1 else ''} {', '.join(map(str, steps))}"
    return f"{len(entries)} other entr{'ies' if len(entries) > 1 else 'y'}" if entries else ""
