"""Orbax checkpoints: train state + grain iterator state + host state (schedule) + config, atomic and async.

Layout: ``<workdir>/checkpoints/<step>/{state,data_iter,host,config}``. Orbax writes each step into a
temporary directory and renames it when complete, so a kill never leaves a half-written latest step; the
manager ignores leftovers on restart. Kept: the ``max_to_keep`` latest steps plus the ``keep_best`` steps
with the highest validation score (``metrics["score"]``, higher is better).
"""

from __future__ import annotations

import pathlib

import grain
import jax
import ml_collections
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as cm

ITEMS = ("state", "data_iter", "host", "config")


class Checkpointer:
    def __init__(self, directory: str | pathlib.Path, *, max_to_keep: int, keep_best: int):
        policies = [cm.LatestN(n=max_to_keep)]
        if keep_best > 0:
            policies.append(cm.BestN(get_metric_fn=lambda m: m["score"], reverse=False, n=keep_best,
                                     keep_checkpoints_without_metrics=False))
        options = ocp.CheckpointManagerOptions(
            preservation_policy=cm.AnyPreservationPolicy(policies), enable_async_checkpointing=True,
            cleanup_tmp_directories=True)
        self.manager = ocp.CheckpointManager(pathlib.Path(directory).absolute(), options=options, item_names=ITEMS)

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def save(self, step: int, state, data_iter, host: dict, config: ml_collections.ConfigDict,
             score: float | None = None) -> None:
        args = ocp.args.Composite(
            state=ocp.args.StandardSave(state),
            data_iter=grain.checkpoint.CheckpointSave(data_iter),
            host=ocp.args.JsonSave(host),
            config=ocp.args.JsonSave(config.to_dict()),
        )
        self.manager.save(step, args=args, metrics=None if score is None else {"score": float(score)})

    def restore(self, step: int, abstract_state, data_iter=None):
        """Restores ``(state, host)``; arrays come back with ``abstract_state``'s shardings; the iterator in place."""
        items = dict(state=ocp.args.StandardRestore(abstract_state), host=ocp.args.JsonRestore())
        if data_iter is not None:
            items["data_iter"] = grain.checkpoint.CheckpointRestore(data_iter)
        out = self.manager.restore(step, args=ocp.args.Composite(**items))
        return out.state, out.host

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()


def abstract_with_sharding(tree, sharding) -> object:
    """ShapeDtypeStructs for ``tree`` carrying ``sharding`` (one sharding, or a matching tree of them)."""
    if isinstance(sharding, jax.sharding.Sharding):
        return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), tree)
    return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), tree, sharding)
