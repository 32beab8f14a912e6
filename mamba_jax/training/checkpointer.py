"""The trainer's ``Checkpointer``: orbax, async and atomic (docstring of ``mamba_jax.checkpoint``).

Layout: ``<workdir>/checkpoints/<step>/{state,data_iter,config}``. Kept: the ``max_to_keep`` latest steps plus
the ``keep_best`` steps with the highest validation score (``metrics["score"]``, higher is better). A failed
background save is ``CheckpointSaveError`` at the next ``poll()``; an unreadable step is ``CheckpointReadError``
from ``restore``/``stored_config`` (``mamba_jax.training.resume.NewestReadable`` walks back from it).

Global state, for the life of one ``Checkpointer`` only: a filter on the ``absl`` and ``asyncio`` loggers
(orbax's error records of a failed save) and a hook chained to ``sys.unraisablehook`` (its abandoned writes'
"Event loop is closed"); ``close()``, which ``train_and_evaluate`` calls in ``finally``, restores both.
"""

from __future__ import annotations

import errno
import logging
import os
import pathlib
import shutil
import sys

import grain
import jax
import ml_collections
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as cm

from mamba_jax.checkpoint import CheckpointReadError, CheckpointSaveError, _cause, _drop_closed_loop_errors, \
    _os_errno, _state_metadata, array_read_problem, check_step_files, drop_late_write_reports

ITEMS = ("state", "data_iter", "config")
_FILTERED = ("absl", "asyncio")  # the loggers a Checkpointer filters while it is open


class _DropRestoreNotes(logging.Filter):
    """Drops orbax's warnings that an item of a step "was found in the checkpoint, but could not be restored":
    emitted for each item a partial read (the config only, the metadata) leaves out on purpose, they read like a
    failed restore."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "was found in the checkpoint, but could not be restored" not in record.getMessage()


class _QuietPartialRestore:
    """``_DropRestoreNotes`` on the absl logger (orbax logs through it) for the ``with`` block only."""

    def __enter__(self):
        self._filter = _DropRestoreNotes()
        logging.getLogger("absl").addFilter(self._filter)

    def __exit__(self, *exc):
        logging.getLogger("absl").removeFilter(self._filter)


class _DropOrbaxErrors(logging.Filter):
    """Drops the ERROR records of a failed asynchronous save: orbax's own (absl logger) and asyncio's "Task
    exception was never retrieved" for its abandoned writes; the Checkpointer reports the failure in one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.ERROR:
            return True
        if record.name == "asyncio":
            return "orbax" not in record.getMessage()
        return f"{os.sep}orbax{os.sep}" not in record.pathname


class StateLayoutError(ValueError):
    """A step's train state has another tree layout than this run's (e.g. the optimiser moments of an older
    mamba-jax); ``missing``/``unexpected`` are leaf paths (``opt_state/0/inner_state/...``)."""

    def __init__(self, step: int, missing: list[str], unexpected: list[str]):
        self.step, self.missing, self.unexpected = step, missing, unexpected
        super().__init__(f"step {step}: train state of another layout ({len(missing)} leaves missing, "
                         f"{len(unexpected)} unexpected; first: {(missing + unexpected)[0]})")


def _leaf_paths(tree, prefix: str = "") -> set[str]:
    """``a/b/0/c`` for each leaf of a train-state tree or of its stored metadata (dicts, lists, tuples and
    namedtuples alike, as orbax stores them); empty nodes (None in the metadata) have no leaf."""
    if tree is None:
        return set()
    if isinstance(tree, tuple) and hasattr(tree, "_fields"):
        items = [(k, getattr(tree, k)) for k in tree._fields]
    elif isinstance(tree, dict):
        items = list(tree.items())
    elif isinstance(tree, (list, tuple)):
        items = list(enumerate(tree))
    else:
        return {prefix}
    return {p for k, v in items for p in _leaf_paths(v, f"{prefix}/{k}" if prefix else str(k))}


class Checkpointer:
    def __init__(self, directory: str | pathlib.Path, *, max_to_keep: int, keep_best: int):
        policies = [cm.LatestN(n=max_to_keep)]
        if keep_best > 0:
            policies.append(cm.BestN(get_metric_fn=lambda m: m["score"], reverse=False, n=keep_best,
                                     keep_checkpoints_without_metrics=False))
        options = ocp.CheckpointManagerOptions(
            preservation_policy=cm.AnyPreservationPolicy(policies), enable_async_checkpointing=True,
            cleanup_tmp_directories=True)
        self.directory = pathlib.Path(directory).absolute()
        self._pending: int | None = None  # the step of a save that may still be running in the background
        self._failed = False
        self._existing: set[int] = set()  # complete steps when the pending save started
        # Installed before the manager, which logs an ERROR for a step's truncated _CHECKPOINT_METADATA (the
        # resume reports that step in one line: mamba_jax.training.resume.NewestReadable).
        self._filter = _DropOrbaxErrors()
        for name in _FILTERED:
            logging.getLogger(name).addFilter(self._filter)
        self._previous_hook = sys.unraisablehook
        self._hook = sys.unraisablehook = _drop_closed_loop_errors(self._previous_hook)
        try:
            self.manager = ocp.CheckpointManager(self.directory, options=options, item_names=ITEMS)
        except BaseException:
            self._remove_filters()
            raise

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def steps(self) -> list[int]:
        """The complete steps on disk, newest first."""
        return sorted(self.manager.all_steps(), reverse=True)

    def stored_config(self, step: int) -> dict:
        """The config saved with ``step`` (as a plain dict); ``CheckpointReadError`` if a file of the step
        cannot be parsed."""
        check_step_files(self.directory / str(step))
        with _QuietPartialRestore():
            return dict(self.manager.restore(step, args=ocp.args.Composite(config=ocp.args.JsonRestore())).config)

    def state_keys(self, step: int) -> set[str] | None:
        """Top-level keys of the train state saved at ``step`` (None if unknown)."""
        try:
            return set(_state_metadata(self.directory / str(step) / "state").keys())
        except Exception:  # noqa: BLE001 - metadata is an optimisation; the restore itself reports problems
            return None

    def set_aside(self, step: int) -> pathlib.Path:
        """Renames an unreadable ``step`` folder to ``<step>.unreadable`` (kept for inspection, no longer a step
        for orbax, so the run can write that step again) on process 0; returns the new path."""
        src = self.directory / str(step)
        dst = self.directory / f"{step}.unreadable"
        n = 1
        while dst.exists():
            n += 1
            dst = self.directory / f"{step}.unreadable{n}"
        if jax.process_index() == 0:
            os.replace(src, dst)
        if jax.process_count() > 1:
            from jax.experimental import multihost_utils

            multihost_utils.sync_global_devices(f"checkpoint set aside {step}")
        self.manager.reload()
        return dst

    def poll(self) -> None:
        """Raises ``CheckpointSaveError`` if a background save has failed; never blocks."""
        if self._pending is not None and not self.manager.is_saving_in_progress():
            self.wait()

    def wait(self) -> None:
        """Blocks until the pending save is written; raises ``CheckpointSaveError`` if it failed."""
        step, self._pending = self._pending, None
        if step is None:
            return
        try:
            self.manager.wait_until_finished()
        except Exception as e:  # noqa: BLE001 - any failure of the save is reported the same way
            self._fail(step, e)

    def _fail(self, step: int, exc: BaseException):
        self._failed = True
        if jax.process_index() == 0:  # remove what the failed step left (frees space; never picked up)
            leftovers = list(self.directory.glob(f"{step}.orbax-checkpoint-tmp*"))
            if step not in self._existing:  # renamed into place before failing: not a checkpoint to trust
                leftovers.append(self.directory / str(step))
            for p in leftovers:
                shutil.rmtree(p, ignore_errors=True)
        kept = sorted(int(p.name) for p in self.directory.iterdir() if p.name.isdigit() and int(p.name) != step) \
            if self.directory.is_dir() else []
        previous = f"the previous checkpoint (step {kept[-1]}) is intact" if kept else "no earlier checkpoint"
        cause = _cause(exc)
        hint = "Free some space" if _os_errno(exc) in (errno.ENOSPC, errno.EDQUOT) else "Fix this"
        raise CheckpointSaveError(
            f"checkpoint save failed: step {step} could not be written to {self.directory}: {cause}; "
            f"{previous}. {hint} and re-run the same command to resume.") from None

    def save(self, step: int, state, data_iter, config: ml_collections.ConfigDict,
             score: float | None = None) -> None:
        args = ocp.args.Composite(
            state=ocp.args.StandardSave(state),
            data_iter=grain.checkpoint.CheckpointSave(data_iter),
            config=ocp.args.JsonSave(config.to_dict()),
        )
        self.wait()  # at most one save in flight; a failed previous one is reported, not silently replaced
        self._existing = {int(p.name) for p in self.directory.iterdir() if p.name.isdigit()} \
            if self.directory.is_dir() else set()
        try:
            self.manager.save(step, args=args, metrics=None if score is None else {"score": float(score)})
        except Exception as e:  # noqa: BLE001 - e.g. no space for the temporary folder or the metadata
            self._fail(step, e)
        self._pending = step

    def restore(self, step: int, abstract_state, data_iter=None):
        """Restores the train state, its arrays with ``abstract_state``'s shardings, and the iterator in place.

        ``CheckpointReadError`` (one line naming the file or item) when a file of the step is truncated or
        corrupt; ``StateLayoutError`` when the stored tree's leaves are not ``abstract_state``'s (checked on the
        step's metadata before reading)."""
        step_dir = self.directory / str(step)
        check_step_files(step_dir)
        try:
            stored = _state_metadata(step_dir / "state")
        except Exception as e:  # noqa: BLE001 - e.g. no params: the step cannot be read as a train state
            raise CheckpointReadError(f"state: {_cause(e)}") from None
        want = _leaf_paths(abstract_state)
        have = _leaf_paths({k: v for k, v in stored.items() if k in abstract_state})
        if want != have:
            raise StateLayoutError(step, sorted(want - have), sorted(have - want))
        items = dict(state=ocp.args.StandardRestore(abstract_state))
        if data_iter is not None:
            items["data_iter"] = grain.checkpoint.CheckpointRestore(data_iter)
        try:
            return self.manager.restore(step, args=ocp.args.Composite(**items)).state
        except Exception as e:  # noqa: BLE001 - tensorstore reports a short data file as a bare Exception
            raise CheckpointReadError(array_read_problem(e)) from None

    def close(self) -> None:
        """Waits for the pending save (raising ``CheckpointSaveError`` if it failed), closes the manager and
        restores ``sys.unraisablehook`` and the loggers' filters, however it exits. After a failed save the late
        reports of its abandoned writes are dropped for the rest of the process instead
        (``mamba_jax.checkpoint.drop_late_write_reports``)."""
        try:
            if not self._failed:
                self.wait()
        finally:
            try:
                self.manager.close()
            except Exception:  # noqa: BLE001 - after a failed save orbax re-raises it here; already reported
                if not self._failed:
                    raise
            finally:
                self._remove_filters()
                if self._failed:
                    drop_late_write_reports()

    def _remove_filters(self) -> None:
        for name in _FILTERED:
            logging.getLogger(name).removeFilter(self._filter)
        if sys.unraisablehook is self._hook:
            sys.unraisablehook = self._previous_hook
        else:  # another hook was chained over ours since: ours stays in its chain, passing everything on
            self._hook.active = False


def abstract_with_sharding(tree, sharding) -> object:
    """ShapeDtypeStructs for ``tree`` carrying ``sharding`` (one sharding, or a matching tree of them)."""
    if isinstance(sharding, jax.sharding.Sharding):
        return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), tree)
    return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), tree, sharding)


