"""Checkpoint I/O, shared by training, inference, conversion and the CLI (it imports only ``mamba_jax.models``).

The trainer's ``Checkpointer`` (``mamba_jax.training.checkpointer``): orbax, train state (optimiser and schedule
state included) + grain iterator state + config, atomic and async; it shares this module's errors, step-file
check and log filters. Weights only (``save_params``, ``read_config``, ``load_model``, ``model_from_params``,
``load_params``, ``find_tokenizer``): what inference, ``mamba_jax.convert`` and fine-tuning read and write.

Layout: ``<workdir>/checkpoints/<step>/{state,data_iter,config}``. Orbax writes each step into a temporary
directory and renames it when complete, so a kill never leaves a half-written latest step.

A save that fails in the background (e.g. no space left on device) surfaces at the next ``poll()`` (a
host-side check the loop makes every step) as ``CheckpointSaveError`` with a one-line message; the failed
step's temporary folder is removed and older steps are untouched. Orbax's own error logs for it and the
"Event loop is closed" errors of its abandoned writes (hundreds of lines of asynchronous tracebacks) are
filtered out while a ``Checkpointer`` is open; its ``close()`` (the loop calls it in ``finally``) restores
``sys.unraisablehook`` and the ``absl``/``asyncio`` loggers' filters as they were.

One exception lives for the process: after a failed save or array read, tensorstore's abandoned reads and
writes raise "Event loop is closed" and asyncio logs "Task exception was never retrieved" for them at any later
time (garbage collection, interpreter exit), long after the failing call returned. ``drop_late_write_reports()``
drops those records, and only those, from then on: installed once per process (idempotent), only after such a
failure, never on import.

A step with a truncated or corrupt file (``CheckpointReadError``, one line naming the file) is passed over for
the newest step that can be read: by the trainer's resume (``mamba_jax.training.resume.NewestReadable``) and by
``read_config``/``load_model``/``load_params`` given a workdir.
"""

from __future__ import annotations

import json
import logging
import os
import pathlib
import re
import sys

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp


class CheckpointSaveError(OSError):
    """A checkpoint could not be written; the previous checkpoints are intact."""


class CheckpointReadError(ValueError):
    """A checkpoint step cannot be read (a truncated or corrupt file); the message names the file or item."""


class ParamsMismatchError(ValueError):
    """Weights that do not fit the model: ``problems`` lists each missing, unexpected or mis-shaped parameter."""

    def __init__(self, message: str, problems: list[str]):
        super().__init__(message)
        self.problems = problems


# The JSON files of a step folder (trainer and ``save_params`` layouts); a truncated one fails to parse.
_JSON_FILES = ("_CHECKPOINT_METADATA", "config/metadata", "data_iter/*.json", "state/_METADATA", "state/_sharding",
               "state/array_metadatas/*")


def check_step_files(step_dir: str | pathlib.Path) -> None:
    """Raises ``CheckpointReadError`` naming the first JSON file of ``step_dir`` that cannot be read or parsed
    (what a truncated copy, a full disk or a crash of the file system leaves). Array data is checked only by
    reading it (``Checkpointer.restore``, ``load_model``)."""
    step_dir = pathlib.Path(step_dir)
    if not (step_dir / "state").is_dir():
        raise CheckpointReadError(f"{step_dir}: no state folder")
    for pattern in _JSON_FILES:
        for f in sorted(step_dir.glob(pattern)):
            try:
                json.loads(f.read_bytes())
            except OSError as e:
                raise CheckpointReadError(f"{f.relative_to(step_dir)}: {e.strerror or e}") from None
            except ValueError as e:  # JSONDecodeError, UnicodeDecodeError
                raise CheckpointReadError(f"{f.relative_to(step_dir)}: truncated or corrupt ({e})") from None


def array_read_problem(exc: BaseException) -> str:
    """One line for a failed read of a step's arrays (tensorstore's message ends with a multi-kilobyte spec)."""
    text = _cause(exc).split(" See full TensorStore details")[0]
    return f"state: array data cannot be read, truncated or corrupt ({text[:200]})"


def _os_errno(exc: BaseException) -> int | None:
    """The OS error number of a failed write: an ``OSError``'s own, else the one tensorstore writes into its
    message (``os_error_code='28'``: it raises a bare ``ValueError``, the text is all it gives)."""
    for e in (exc, exc.__cause__, exc.__context__):
        if isinstance(e, OSError) and e.errno:
            return e.errno
    m = re.search(r"os_error_code='(\d+)'", str(exc)) or re.search(r"\[Errno (\d+)\]", str(exc))
    return int(m.group(1)) if m else None


def _cause(exc: BaseException) -> str:
    """The operating-system reason of a failed write (``No space left on device``), else the first line."""
    for e in (exc, exc.__cause__, exc.__context__):
        if isinstance(e, OSError) and e.strerror:
            return e.strerror
    if (err := _os_errno(exc)) is not None:
        return os.strerror(err)
    return (str(exc).splitlines() or [type(exc).__name__])[0][:300]


def _drop_closed_loop_errors(previous, process_wide: bool = False):
    """An ``sys.unraisablehook`` that drops the "Event loop is closed" errors tensorstore's callbacks raise after
    orbax abandoned a failed save or read (asyncio raises a bare ``RuntimeError``: its text is the only mark),
    passing others on; ``hook.active = False`` makes it pass everything on (when it cannot be unchained)."""

    def hook(unraisable):
        v = unraisable.exc_value
        if not (hook.active and isinstance(v, RuntimeError) and str(v) == "Event loop is closed"):
            previous(unraisable)

    hook.active, hook.process_wide = True, process_wide
    return hook


class _QuietAbsl:
    """Silences orbax's warning that an item folder has no step-level metadata (we read items directly)."""

    def __enter__(self):
        self.logger = logging.getLogger("absl")
        self.level = self.logger.level
        self.logger.setLevel(logging.ERROR)

    def __exit__(self, *exc):
        self.logger.setLevel(self.level)


class _DropAbandonedTasks(logging.Filter):
    """Drops asyncio's "Task exception was never retrieved" for the tasks of a failed orbax save or tensorstore
    read (their exception or task names orbax, OCDBT or TensorStore)."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        text = f"{record.getMessage()} {exc}"
        return not (record.name == "asyncio" and ("OCDBT" in text or "TensorStore" in text or "orbax" in text))


def drop_late_write_reports() -> None:
    """Drops, for the rest of the process, the late reports of a failed save's or read's abandoned tensorstore
    work (module docstring): a hook chained to ``sys.unraisablehook`` and a filter on asyncio's logger.
    Idempotent: a second call while both are in place does nothing."""
    if not getattr(sys.unraisablehook, "process_wide", False):
        sys.unraisablehook = _drop_closed_loop_errors(sys.unraisablehook, process_wide=True)
    asyncio_logger = logging.getLogger("asyncio")
    if not any(isinstance(f, _DropAbandonedTasks) for f in asyncio_logger.filters):
        asyncio_logger.addFilter(_DropAbandonedTasks())


# ---- weights only: inference, conversion, fine-tuning -------------------------------------------------------


def save_params(directory: str | pathlib.Path, params: dict, rest: dict, config: ml_collections.ConfigDict,
                step: int = 0) -> pathlib.Path:
    """Writes ``<directory>/checkpoints/<step>/{state,config}`` (state = step, params, rest; no optimiser).

    The trainer's layout without the optimiser and iterator items: ``load_params``/``load_model`` read it,
    and ``train.init_from`` fine-tunes from it. Synchronous and atomic (orbax renames a finished temporary
    directory). Returns the step directory.
    """
    directory = pathlib.Path(directory).absolute()
    state = dict(step=jax.numpy.asarray(step, jax.numpy.int32), params=params, rest=rest)
    with ocp.CheckpointManager(directory / "checkpoints", item_names=("state", "config")) as mgr:
        mgr.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                               config=ocp.args.JsonSave(config.to_dict())))
        mgr.wait_until_finished()
    return directory / "checkpoints" / str(step)


def _step_dirs(path: str | pathlib.Path) -> list[pathlib.Path]:
    """The step directories a workdir or its ``checkpoints/`` folder holds, newest first, or ``[path]`` for a step
    folder; absolute paths: orbax reads no metadata through a relative one."""
    p = pathlib.Path(path).expanduser().absolute()
    if not p.exists():
        raise FileNotFoundError(f"checkpoint path {p} does not exist")
    if (p / "state").is_dir():
        return [p]
    if (p / "checkpoints").is_dir():
        p = p / "checkpoints"
    steps = sorted((int(c.name) for c in p.iterdir() if c.name.isdigit() and (c / "state").is_dir()), reverse=True)
    if not steps:
        raise FileNotFoundError(f"{path}: no checkpoint found (expected <workdir>/checkpoints/<step>/state, "
                                f"a checkpoints/ folder or a step folder)")
    return [p / str(s) for s in steps]


def _step_dir(path: str | pathlib.Path) -> pathlib.Path:
    """The latest step directory ``path`` designates (see ``_step_dirs``), readable or not."""
    return _step_dirs(path)[0]


_warned: set[str] = set()  # read_config and load_model walk the same steps: one warning per step folder


def _newest_readable(path: str | pathlib.Path, read):
    """``read(step_dir)`` for the newest step under ``path`` where it raises no ``CheckpointReadError``; each
    step passed over is one warning line on stderr naming it and the problem. When none can be read:
    ``CheckpointReadError`` naming ``path`` and each step's problem."""
    dirs = _step_dirs(path)
    skipped = []
    for d in dirs:
        try:
            result = read(d)
        except CheckpointReadError as e:
            skipped.append((d, str(e)))
            continue
        for bad, problem in skipped:
            if str(bad) not in _warned:
                _warned.add(str(bad))
                print(f"warning: checkpoint step {bad.name} in {bad.parent} cannot be read ({problem}); "
                      f"using step {d.name}", file=sys.stderr, flush=True)
        return result
    if len(dirs) == 1:
        raise CheckpointReadError(f"checkpoint {dirs[0]} cannot be read: {skipped[0][1]}")
    raise CheckpointReadError(f"no checkpoint under {path} can be read: " +
                              "; ".join(f"step {d.name}: {problem}" for d, problem in skipped))


def _read_config_at(step_dir: pathlib.Path) -> tuple[ml_collections.ConfigDict, int]:
    config_file = step_dir / "config" / "metadata"
    if not config_file.is_file():
        raise FileNotFoundError(f"{step_dir}: missing the config item ({config_file})")
    check_step_files(step_dir)
    return ml_collections.ConfigDict(json.loads(config_file.read_text())), int(step_dir.name)


def read_config(path: str | pathlib.Path) -> tuple[ml_collections.ConfigDict, int]:
    """``(config, step)`` of the latest readable checkpoint under ``path`` (workdir, checkpoints/ or a step
    folder): a step with a truncated or corrupt file is passed over with a warning line."""
    return _newest_readable(path, _read_config_at)


def _state_metadata(state_dir: pathlib.Path) -> dict:
    """The saved train state's tree of array metadata (shape, dtype per leaf); it must hold ``params``."""
    with _QuietAbsl():
        meta = ocp.PyTreeCheckpointer().metadata(state_dir).item_metadata.tree
    if "params" not in meta:
        raise ValueError(f"{state_dir}: no 'params' in the checkpoint (keys: {sorted(meta)})")
    return meta


def load_params(path: str | pathlib.Path) -> tuple[ml_collections.ConfigDict, dict, dict, int]:
    """``(config, params, rest, step)`` of the latest checkpoint under ``path`` (workdir, checkpoints/ or a
    step folder), as stored (list indices as string keys, PRNG keys as their key data), in host numpy arrays:
    the optimiser state is not read (PLACEHOLDER leaves), no device placement, any device topology. To get a
    model, use ``load_model``, which restores into the model's own tree."""
    def read(step_dir: pathlib.Path):
        config, _ = _read_config_at(step_dir)
        meta = _state_metadata(step_dir / "state")
        item = {k: v if k in ("step", "params", "rest") else jax.tree.map(lambda _: ocp.PLACEHOLDER, v)
                for k, v in meta.items()}
        restore_args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), item)
        state = _restore_arrays(step_dir / "state", ocp.args.PyTreeRestore(item=item, restore_args=restore_args))
        return config, state["params"], state.get("rest", {}), int(state.get("step", int(step_dir.name)))

    return _newest_readable(path, read)


def _restore_arrays(state_dir: pathlib.Path, args) -> dict:
    """orbax's restore of ``state_dir``; a data file it cannot read is ``CheckpointReadError``.

    A failed read abandons the tensorstore reads still in flight; their late reports (dozens of tracebacks)
    are dropped from then on (``drop_late_write_reports``, module docstring)."""
    try:
        with _QuietAbsl():
            return ocp.PyTreeCheckpointer().restore(state_dir, args=args)
    except Exception as e:  # noqa: BLE001 - tensorstore reports a short data file as a bare Exception
        drop_late_write_reports()
        raise CheckpointReadError(array_read_problem(e)) from None


# ---- weights into a model: the abstract model's tree is the target ----------------------------------------


def _abstract_model(config: ml_collections.ConfigDict, model_overrides: dict):
    """``config.model`` (with ``model_overrides``, e.g. ``scan_impl``) built with ``nnx.eval_shape``: its
    variables are ``jax.ShapeDtypeStruct`` (nothing allocated)."""
    from flax import nnx

    from mamba_jax.models import build_model

    model_cfg = ml_collections.ConfigDict(config.model.to_dict())
    model_cfg.update(model_overrides)
    return nnx.eval_shape(lambda: build_model(model_cfg, rngs=nnx.Rngs(0))), model_cfg.get("name")


def _stored_shape(x) -> tuple[int, ...]:
    """The shape a leaf has in a checkpoint: typed PRNG keys are stored as their key data."""
    if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
        return tuple(jax.eval_shape(jax.random.key_data, x).shape)
    return tuple(x.shape)


def _shapes(tree) -> dict[str, tuple[int, ...]]:
    """``{"a/0/kernel": shape}`` of a pure dict (ours: int list indices; a checkpoint's: string ones)."""
    return {jax.tree_util.keystr(k, simple=True, separator="/"): _stored_shape(v)
            for k, v in jax.tree_util.tree_flatten_with_path(tree)[0]}


def _check_fits(expected: dict, found: dict, source: str, model_name) -> None:
    """Raises ``ParamsMismatchError`` naming every missing, unexpected and mis-shaped parameter of ``found`` (a
    ``{"params": ..., "rest": ...}`` tree of arrays or array metadata) against the model's ``expected`` tree."""
    problems = []
    for name in ("params", "rest"):
        want, got = _shapes(expected[name]), _shapes(found.get(name, {}))
        problems += [f"missing {name}/{k} {want[k]}" for k in sorted(want.keys() - got.keys())]
        problems += [f"unexpected {name}/{k} {got[k]}" for k in sorted(got.keys() - want.keys())]
        problems += [f"{name}/{k}: shape {got[k]} != expected {want[k]}"
                     for k in sorted(want.keys() & got.keys()) if got[k] != want[k]]
    if problems:
        raise ParamsMismatchError(f"{source}: weights do not fit model {model_name!r} ({len(problems)} problem"
                                  f"{'s' if len(problems) > 1 else ''}): " + "; ".join(problems), problems)


def _split_abstract(model):
    """The model's ``(params, rest)`` states and their pure dicts (the restore target)."""
    from flax import nnx

    params, rest = nnx.state(model, nnx.Param, ...)
    return (params, rest), dict(params=nnx.to_pure_dict(params), rest=nnx.to_pure_dict(rest))


def load_model(path: str | pathlib.Path, config: ml_collections.ConfigDict | None = None, **model_overrides):
    """``(model, config)`` from the latest readable checkpoint under ``path`` (workdir, checkpoints/ or a step
    folder; a step with a truncated or corrupt file is passed over with one warning line).

    ``config`` (default: the checkpoint's own) says which model to build, with ``model_overrides`` (e.g.
    ``scan_impl``). The model is built abstractly (``nnx.eval_shape``), the checkpoint's metadata is checked
    against its tree (a missing, unexpected or mis-shaped parameter is an error naming its path and the
    checkpoint folder), then orbax restores ``params``/``rest`` with the abstract state as target (the
    optimiser state is not read; arrays land on the default device, whatever topology wrote them) and
    ``nnx.update`` puts them in the model."""
    from flax import nnx

    if config is None:
        config, _ = read_config(path)
    model, name = _abstract_model(config, model_overrides)
    states, target = _split_abstract(model)
    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])

    def read(step_dir: pathlib.Path) -> dict:
        check_step_files(step_dir)
        state_dir = step_dir / "state"
        _check_fits(target, _state_metadata(state_dir), str(state_dir), name)
        abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device), target)
        abstract = {k: v for k, v in abstract.items() if v}  # a model without ``rest`` variables
        return _restore_arrays(state_dir, ocp.args.PyTreeRestore(
            item=abstract, restore_args=ocp.checkpoint_utils.construct_restore_args(abstract), partial_restore=True))

    restored = _newest_readable(path, read)
    for state, kind in zip(states, ("params", "rest")):
        if kind in restored:
            nnx.replace_by_pure_dict(state, restored[kind])
    nnx.update(model, *states)
    return model, config


def _as_leaf(x, dtype):
    """A stored value as one of our leaves: cast to our dtype; PRNG key data wrapped as a typed key."""
    if jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key):
        return x if jax.dtypes.issubdtype(getattr(x, "dtype", None), jax.dtypes.prng_key) else \
            jax.random.wrap_key_data(jax.numpy.asarray(x))
    return jax.numpy.asarray(x, dtype=dtype)


def model_from_params(config: ml_collections.ConfigDict, params: dict, rest: dict, **model_overrides):
    """``config.model`` (with ``model_overrides``) holding in-memory ``params``/``rest`` pure dicts (e.g. a
    converter's output); checked like ``load_model`` (errors name each parameter's path)."""
    from flax import nnx

    model, name = _abstract_model(config, model_overrides)
    states, target = _split_abstract(model)
    _check_fits(target, dict(params=params, rest=rest), "the given weights", name)
    for state, values in zip(states, (params, rest)):
        nnx.replace_by_pure_dict(state, values, lambda var, v: var.replace(_as_leaf(v, var.get_value().dtype)))
    nnx.update(model, *states)
    return model


def find_tokenizer(path: str | pathlib.Path, config: ml_collections.ConfigDict) -> pathlib.Path:
    """The SentencePiece model of an ASR checkpoint: ``<workdir>/tokenizer/tokenizer.model`` next to the
    checkpoints, else ``config.tokenizer.model_dir``."""
    step_dir = _step_dir(path)
    workdir = step_dir.parent.parent  # <workdir>/checkpoints/<step>
    candidates = [workdir / "tokenizer" / "tokenizer.model"]
    model_dir = config.tokenizer.get("model_dir", "") if "tokenizer" in config else ""
    if model_dir:
        candidates.append(pathlib.Path(model_dir) / "tokenizer.model")
    for c in candidates:
        if c.is_file():
            return c
    raise FileNotFoundError(f"no tokenizer for checkpoint {path}: looked for " + ", ".join(map(str, candidates)))
