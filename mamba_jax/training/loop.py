"""``train_and_evaluate(config, workdir)``: the training loop every config, ``train.py`` and the notebooks use.

Split as big_vision/flax examples do: state (created already sharded), a pure jitted step that donates the
state, the loop, checkpoints and metrics. Data parallel on one ``data`` mesh axis over all devices of all
processes; parameters replicated.

Resume order (what makes a resumed run bit-identical to an uninterrupted one on CPU):
  1. restore the train state, the grain iterator state and the host state (lr schedule) of the latest step;
  2. drop metrics.jsonl records written after that step by the killed run;
  3. step ``s`` uses ``fold_in(seed, s)`` for its randomness and ``schedule.lr(s)``, both pure functions of s;
  4. at a step that both evaluates and checkpoints, evaluation runs first, so the plateau state it updates is
     in the checkpoint.
"""

from __future__ import annotations

import math
import pathlib
import time

import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax import nnx
from tqdm.auto import tqdm

from mamba_jax.models import build_model
from mamba_jax.training import distributed
from mamba_jax.training.checkpoint import Checkpointer, abstract_with_sharding
from mamba_jax.training.optim import LrSchedule, make_optimizer, set_learning_rate
from mamba_jax.training.tasks import make_task
from mamba_jax.training.writer import MetricWriter


class NonFiniteLossError(FloatingPointError):
    """Raised at the first step whose loss is NaN or infinite."""


def _split_model(model: nnx.Module):
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    return graphdef, nnx.to_pure_dict(params), nnx.to_pure_dict(rest), (params, rest)


def merge_model(graphdef, templates, params: dict, rest: dict) -> nnx.Module:
    """Rebuilds the NNX model from pure-dict parameters (inside or outside jit)."""
    p_t, r_t = jax.tree.map(lambda x: x, templates[0]), jax.tree.map(lambda x: x, templates[1])
    nnx.replace_by_pure_dict(p_t, params)
    nnx.replace_by_pure_dict(r_t, rest)
    return nnx.merge(graphdef, p_t, r_t)


def _initialize_from(path, config, state, state_sharding) -> dict:
    """``state`` with ``params``/``rest`` replaced by those of the checkpoint at ``path`` (shape-checked against
    this run's model; the optimiser state is re-initialised for them)."""
    from mamba_jax.training.checkpoint import load_params, model_from_params

    _, params, rest, src_step = load_params(path)
    _, p, r, _ = _split_model(model_from_params(config, params, rest))
    tx = make_optimizer(config.optim)
    new = dict(step=state["step"], params=p, rest=r, opt_state=tx.init(p))
    print(f"initialised from {path} (step {src_step})", flush=True)
    return jax.device_put(new, state_sharding)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str | pathlib.Path) -> dict[str, float]:
    """Trains ``config`` in ``workdir`` (resuming from its latest checkpoint) and returns the last metrics."""
    distributed.initialize_from_env()
    workdir = pathlib.Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    mesh = distributed.data_mesh()
    tc = config.train
    n_proc = jax.process_count()
    if tc.batch_size % jax.device_count():
        raise ValueError(f"train.batch_size={tc.batch_size} must be divisible by the {jax.device_count()} devices")

    task = make_task(config, workdir)
    # Shapes first (eval_shape), then the real state created already replicated on the mesh.
    seed_rngs = lambda: nnx.Rngs(params=tc.seed, dropout=tc.seed + 1)
    graphdef, _, _, templates = _split_model(nnx.eval_shape(lambda: build_model(config.model, rngs=seed_rngs())))
    tx = make_optimizer(config.optim)

    def init_state():
        _, params, rest, _ = _split_model(build_model(config.model, rngs=seed_rngs()))
        return dict(step=jnp.zeros((), jnp.int32), params=params, rest=rest, opt_state=tx.init(params))

    repl = distributed.replicated(mesh)
    abstract_state = jax.eval_shape(init_state)
    state_sharding = jax.tree.map(lambda _: repl, abstract_state)

    def train_step(state, batch, lr, rng):
        def loss_fn(params):
            model = merge_model(graphdef, templates, params, state["rest"])
            loss, aux = task.loss(model, batch, rng)
            # Non-parameter state the forward pass updated (ASR input-normalisation statistics, rng counts).
            return loss, (aux, _split_model(model)[2])

        (loss, (aux, rest)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state["params"])
        opt_state = set_learning_rate(state["opt_state"], lr)
        updates, opt_state = tx.update(grads, opt_state, state["params"])
        params = optax.apply_updates(state["params"], updates)
        metrics = dict(loss=loss, grad_norm=optax.global_norm(grads), param_norm=optax.global_norm(params), lr=lr, **aux)
        return dict(step=state["step"] + 1, params=params, rest=rest, opt_state=opt_state), metrics

    step_fn = jax.jit(train_step, donate_argnums=(0,), out_shardings=(state_sharding, repl))

    train_iter = iter(task.dataset("train", batch_size=tc.batch_size // n_proc, seed=tc.seed,
                                   process_index=jax.process_index(), process_count=n_proc))
    schedule = LrSchedule(config.optim, total_steps=tc.num_steps)
    ckpt = Checkpointer(workdir / "checkpoints", max_to_keep=tc.max_to_keep, keep_best=tc.keep_best)
    writer = MetricWriter(workdir)
    start = ckpt.latest_step()
    if start is not None:
        state, host = ckpt.restore(start, abstract_with_sharding(abstract_state, state_sharding), train_iter)
        schedule.load_state_dict(host["schedule"])
        writer.truncate_after(start)
        print(f"resumed from {workdir / 'checkpoints'} at step {start}", flush=True)
    else:
        start = 0
        state = jax.jit(init_state, out_shardings=state_sharding)()
        if tc.init_from:  # fine-tuning: weights from a checkpoint (e.g. `mamba-jax convert`), fresh optimiser
            state = _initialize_from(tc.init_from, config, state, state_sharding)
    if start >= tc.num_steps:
        ckpt.close()
        writer.close()
        return {}

    base_key = jax.random.key(tc.seed)
    last: dict[str, float] = {}
    t0, logged_at = time.perf_counter(), start
    bar = tqdm(total=tc.num_steps, initial=start, desc="train", disable=jax.process_index() != 0, dynamic_ncols=True)
    try:
        # The mesh in context lets selective_scan(impl='pallas') run its kernel per device under shard_map.
        with jax.set_mesh(mesh):
            for step in range(start, tc.num_steps):
                batch = distributed.global_batch(next(train_iter), mesh)
                lr = jnp.float32(schedule.lr(step))
                state, metrics = step_fn(state, batch, lr, jax.random.fold_in(base_key, step))
                loss = float(metrics["loss"])
                if not math.isfinite(loss):
                    raise NonFiniteLossError(
                        f"non-finite loss ({loss}) at step {step + 1}; training stopped. The last good checkpoint is "
                        f"step {ckpt.latest_step()} in {workdir / 'checkpoints'}. Lower optim.lr, check the data, or "
                        f"use train.precision='fp32'.")
                done = step + 1
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.3f}")
                if done % tc.log_every_steps == 0 or done == tc.num_steps:
                    dt = time.perf_counter() - t0
                    last = {k: float(v) for k, v in metrics.items()}
                    last["steps_per_sec"] = (done - logged_at) / max(dt, 1e-9)
                    writer.write(done, last)
                    t0, logged_at = time.perf_counter(), done
                score = None
                if done % tc.eval_every_steps == 0 or done == tc.num_steps:
                    model = merge_model(graphdef, templates, state["params"], state["rest"])
                    val = task.evaluate(model, max_batches=tc.eval_batches)
                    schedule.observe(val["loss"])
                    score = val["score"]
                    writer.write(done, {f"val_{k}": v for k, v in val.items()})
                    last.update({f"val_{k}": v for k, v in val.items()})
                    tqdm.write(f"step {done}: " + ", ".join(f"val_{k}={v:.3f}" for k, v in val.items()))
                if done % tc.checkpoint_every_steps == 0 or done == tc.num_steps:
                    ckpt.save(done, state, train_iter, {"schedule": schedule.state_dict()}, config, score=score)
    finally:
        bar.close()
        ckpt.close()
        writer.close()
        close = getattr(train_iter, "close", None)
        if close is not None:
            close()
    return last
