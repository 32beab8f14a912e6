"""Model summary from a config file: parameters per top-level module and in total.

    python -m mamba_jax.summary configs/mambatasnet_s.py            # table
    python -m mamba_jax.summary configs/spmamba.py:nfft512 --json   # {"params": 6141826, ...}
    python -m mamba_jax.summary configs/sepmamba_s.py --macs        # + XLA cost analysis of 1 s of audio

The model is built abstractly (``nnx.eval_shape``): no parameter is allocated, so even the L sizes answer in
seconds. Parameters are the ``nnx.Param`` leaves, for any model ``build_model`` knows (separation or ASR).

``--macs`` (separation models only) lowers and compiles the forward pass on one second of audio at
``config.data.sample_rate`` for the CPU and reports XLA's cost analysis as ``flops / 2``. It is an estimate
with a known blind spot: XLA counts the body of a ``while`` loop (``lax.scan``) once, not once per iteration,
so the chunked selective scan is under-counted; the matmul/conv part is exact. Labelled as such.
"""

from __future__ import annotations

import argparse
import json
import math
from collections import OrderedDict

import jax
import jax.numpy as jnp
from flax import nnx

from mamba_jax.config import load_config
from mamba_jax.models import build_model, model_module


def abstract_model(config) -> nnx.Module:
    """The model with ``ShapeDtypeStruct`` leaves (nothing allocated)."""
    return nnx.eval_shape(lambda: build_model(config.model, rngs=nnx.Rngs(0)))


def param_counts(model: nnx.Module) -> tuple[OrderedDict, int]:
    """Parameters per top-level attribute (sorted by name) and the total."""
    per: OrderedDict[str, int] = OrderedDict()
    for path, leaf in nnx.to_flat_state(nnx.state(model, nnx.Param)):
        n = math.prod(leaf.shape) if hasattr(leaf, "shape") else math.prod(leaf.value.shape)
        key = str(path[0])
        per[key] = per.get(key, 0) + int(n)
    return per, sum(per.values())


def macs_per_second(config, model: nnx.Module) -> float:
    """XLA cost-analysis ``flops / 2`` of the jitted forward on 1 s of audio (see the module doc)."""
    graphdef, state = nnx.split(model)
    x = jax.ShapeDtypeStruct((1, int(config.data.sample_rate)), jnp.float32)

    def fwd(state, mix):
        return nnx.merge(graphdef, state)(mix)

    cost = jax.jit(fwd).lower(state, x).compile().cost_analysis()
    if isinstance(cost, list):
        cost = cost[0]
    return float(cost.get("flops", float("nan"))) / 2


def summarize(spec: str, *, macs: bool = False) -> dict:
    config = load_config(spec)
    model = abstract_model(config)
    per, total = param_counts(model)
    out = {"params": total, "per_module": dict(per), "model": config.model.name, "config": spec}
    if macs:
        if getattr(model_module(config.model.name), "TASK", None) != "separation":
            raise ValueError("--macs is implemented for separation models only")
        out["macs_per_second_xla_estimate"] = macs_per_second(config, model)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m mamba_jax.summary", description=__doc__.split("\n")[0])
    parser.add_argument("config", help="path/to/config.py[:arg]")
    parser.add_argument("--json", action="store_true", help='print {"params": N, ...} as JSON')
    parser.add_argument("--macs", action="store_true", help="add XLA's cost estimate for 1 s of audio")
    args = parser.parse_args(argv)
    info = summarize(args.config, macs=args.macs)
    if args.json:
        print(json.dumps(info))
        return
    print(f"{info['config']}  (model {info['model']})")
    width = max(len(k) for k in info["per_module"]) if info["per_module"] else 6
    for name, n in info["per_module"].items():
        print(f"  {name:<{width}}  {n:>14,}")
    print(f"  {'total':<{width}}  {info['params']:>14,}")
    if "macs_per_second_xla_estimate" in info:
        print(f"  MACs per second of audio (XLA cost analysis / 2, scan loops counted once): "
              f"{info['macs_per_second_xla_estimate'] / 1e9:.2f} G")


if __name__ == "__main__":
    main()
