"""Multi-process setup and the data-parallel mesh."""

from __future__ import annotations

import os

import jax
import numpy as np
from jax.sharding import AxisType, NamedSharding, PartitionSpec as P

BATCH_AXIS = "data"  # the one mesh axis: batch rows (the selective scan is told so through ScanSharding)

_initialized = False


def initialize_from_env() -> None:
    """Calls ``jax.distributed.initialize`` when ``JAX_COORDINATOR_ADDRESS`` and friends are set.

    Variables: JAX_COORDINATOR_ADDRESS (host:port), JAX_NUM_PROCESSES, JAX_PROCESS_ID, optionally
    JAX_LOCAL_DEVICE_IDS (comma-separated). Without them this is a single-process run.
    """
    global _initialized
    addr = os.environ.get("JAX_COORDINATOR_ADDRESS")
    if _initialized or not addr:
        return
    local = os.environ.get("JAX_LOCAL_DEVICE_IDS")
    jax.distributed.initialize(
        coordinator_address=addr,
        num_processes=int(os.environ["JAX_NUM_PROCESSES"]),
        process_id=int(os.environ["JAX_PROCESS_ID"]),
        local_device_ids=[int(i) for i in local.split(",")] if local else None,
    )
    _initialized = True


def data_mesh() -> jax.sharding.Mesh:
    """One ``data`` axis over every device of every process (Auto axis type: classic GSPMD jit)."""
    return jax.make_mesh((jax.device_count(),), (BATCH_AXIS,), axis_types=(AxisType.Auto,))


def replicated(mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def batch_sharded(mesh) -> NamedSharding:
    return NamedSharding(mesh, P(BATCH_AXIS))


def global_batch(local: dict, mesh) -> dict:
    """Assembles this process's slice of the batch into global arrays sharded on ``data``."""
    sharding = batch_sharded(mesh)
    out = {}
    for k, v in local.items():
        v = np.asarray(v)
        if v.dtype.kind in "USO":  # strings (transcripts) stay on the host
            out[k] = v
        else:
            out[k] = jax.make_array_from_process_local_data(sharding, v)
    return out
