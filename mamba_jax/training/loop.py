"""``train_and_evaluate(config, workdir)``: the training loop every config, ``train.py`` and the notebooks use.

Shaped like the flax examples: ``create_train_state`` (pure; jitted with ``out_shardings`` so the state is
created already sharded), ``train_step`` (pure; jitted once per run with the state donated) and a short loop.
Each task module has a module-level jitted ``eval_step`` (``tasks.py``, ``asr_task.py``), so evaluations after
the first compile nothing. Data parallel on one ``data`` mesh axis over all devices of all processes;
parameters replicated.

The host never waits on the device at ordinary steps: it reads device values (metrics, the non-finite record)
only at *sync steps*: logging, evaluation and checkpoint steps, the last step and a requested stop. So:

* a non-finite loss or gradient does not stop the step that produced it: ``train_step`` skips the update on
  device and records the first such step in the state; the next sync step raises ``NonFiniteLossError``
  naming it, before any checkpoint is written, so the last checkpoint is the last good one;
* a separation batch whose examples are all below ``loss.threshold_db`` skips the update too (the original
  skips the batch), counted in ``skipped_batches``;
* SIGINT/SIGTERM finish the current step, write a checkpoint, wait for it and raise ``TrainingInterrupted``
  (``train.py`` prints its one line). One process stops after the current step; several processes agree on
  the stop step with one all-reduce of the flag at the next logging step (a per-step all-reduce would be a
  host sync per step);
* a checkpoint save failing in the background (disk full) stops training at the next step with
  ``CheckpointSaveError`` (mamba_jax/checkpoint.py): host-side polling, no device sync.

Resume order (what makes a resumed run bit-identical to an uninterrupted one on CPU):
  1. compare the stored config with this one (``resume.check_resume``): a different model refuses to resume;
  2. restore the train state (the optimiser state holds the learning-rate schedule and the plateau state) and
     the grain iterator state of the newest step that can be read (``resume.NewestReadable``: a truncated
     file passes over its step, with a warning);
  3. drop metrics.jsonl records and TensorBoard events written after that step by the killed run (all of them
     when there is no checkpoint);
  4. step ``s`` uses ``fold_in(seed, s)`` for its randomness, a pure function of s;
  5. at a step that both evaluates and checkpoints, evaluation runs first, so the plateau state it updates is
     in the checkpoint.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import pathlib
import signal
import threading
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx
from tqdm.auto import tqdm

from mamba_jax.training.checkpointer import Checkpointer, StateLayoutError, abstract_with_sharding
from mamba_jax.data.pipeline import iterate
from mamba_jax.layers.mamba import set_scan_sharding
from mamba_jax.models import build_model
from mamba_jax.ops.selective_scan import ScanSharding
from mamba_jax.training import distributed
from mamba_jax.training.optim import learning_rate, make_optimizer, observe_validation
from mamba_jax.training.resume import ConfigMismatchError, InitFromError, NewestReadable, check_init_from, \
    check_resume
from mamba_jax.training.tasks import make_task
from mamba_jax.training.validate import check_config
from mamba_jax.training.workdir import WorkdirLock, prepare_workdir
from mamba_jax.training.writer import MetricWriter


class NonFiniteLossError(FloatingPointError):
    """Raised at the first sync step after a step whose loss or gradients were NaN or infinite."""


class TrainingInterrupted(Exception):
    """SIGINT/SIGTERM stopped training after ``step``, whose checkpoint has been written."""

    def __init__(self, step: int, signum: int):
        self.step, self.signum = step, signum
        super().__init__(f"stopped at step {step}, checkpoint saved; re-run the same command to resume")


def _split_model(model: nnx.Module):
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    return graphdef, nnx.to_pure_dict(params), nnx.to_pure_dict(rest), (params, rest)


@dataclasses.dataclass(frozen=True, eq=False)
class ModelDef:
    """The static half of a model (graph definition and abstract state): rebuilds it from pure dicts."""

    graphdef: nnx.GraphDef
    templates: tuple

    @classmethod
    def of(cls, model_cfg: ml_collections.ConfigDict, scan_sharding: ScanSharding | None = None) -> ModelDef:
        """``scan_sharding``: the data-parallel mesh axis of the batch, given to every selective scan."""
        model = nnx.eval_shape(lambda: build_model(model_cfg, rngs=nnx.Rngs(0)))
        set_scan_sharding(model, scan_sharding)
        graphdef, _, _, templates = _split_model(model)
        return cls(graphdef, templates)

    def merge(self, params: dict, rest: dict) -> nnx.Module:
        """The NNX model with ``params``/``rest`` (pure dicts); works inside and outside jit."""
        return merge_model(self.graphdef, self.templates, params, rest)


def merge_model(graphdef, templates, params: dict, rest: dict) -> nnx.Module:
    """Rebuilds the NNX model from pure-dict parameters (inside or outside jit)."""
    p_t, r_t = jax.tree.map(lambda x: x, templates[0]), jax.tree.map(lambda x: x, templates[1])
    nnx.replace_by_pure_dict(p_t, params)
    nnx.replace_by_pure_dict(r_t, rest)
    return nnx.merge(graphdef, p_t, r_t)


def create_train_state(config: ml_collections.ConfigDict, tx: optax.GradientTransformation) -> dict:
    """A fresh train state: step, params, rest (non-parameter model state), opt_state, ``first_bad_step``
    (the first step with a non-finite loss or gradient; 0: none) and ``skipped`` (batches without an update)."""
    seed = config.train.seed
    _, params, rest, _ = _split_model(build_model(config.model, rngs=nnx.Rngs(params=seed, dropout=seed + 1)))
    zero = jnp.zeros((), jnp.int32)
    return dict(step=zero, params=params, rest=rest, opt_state=tx.init(params), first_bad_step=zero, skipped=zero)


def _global_norm(tree) -> jax.Array:
    """The L2 norm of all of ``tree``'s entries, reduced over their concatenation: one reduction instead of one
    per leaf (each one more kernel for XLA to compile), over the same concatenation the optimiser makes of the
    gradients (``make_optimizer``)."""
    return jnp.sqrt(jnp.sum(jnp.square(jnp.concatenate([jnp.reshape(x, -1) for x in jax.tree.leaves(tree)]))))


def train_step(state: dict, batch: dict, rng: jax.Array, *, task, model_def: ModelDef,
               tx: optax.GradientTransformation) -> tuple[dict, dict]:
    """One optimiser step (pure). The update is skipped, on device, when the loss or the gradients are not
    finite (recorded in ``first_bad_step``) or when the task kept no example (``aux["n_kept"] == 0``,
    counted in ``skipped``); the step counter advances either way, as the data iterator did."""

    def loss_fn(params):
        model = model_def.merge(params, state["rest"])
        loss, aux = task.loss(model, batch, rng)
        # Non-parameter state the forward pass updated (ASR input-normalisation statistics, rng counts).
        return loss, (aux, _split_model(model)[2])

    (loss, (aux, rest)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state["params"])
    grad_norm = _global_norm(grads)
    finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
    empty = (aux["n_kept"] == 0) if "n_kept" in aux else jnp.zeros((), bool)
    updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
    params = optax.apply_updates(state["params"], updates)
    params, opt_state, rest = jax.lax.cond(
        finite & ~empty, lambda: (params, opt_state, rest),
        lambda: (state["params"], state["opt_state"], state["rest"]))
    step = state["step"] + 1
    first_bad = jnp.where((state["first_bad_step"] == 0) & ~finite, step, state["first_bad_step"])
    skipped = state["skipped"] + (finite & empty).astype(jnp.int32)
    metrics = dict(loss=loss, grad_norm=grad_norm, param_norm=_global_norm(params),
                   lr=learning_rate(opt_state), skipped_batches=skipped, first_bad_step=first_bad, **aux)
    new_state = dict(step=step, params=params, rest=rest, opt_state=opt_state, first_bad_step=first_bad,
                     skipped=skipped)
    return new_state, metrics


class _StopOnSignal:
    """SIGINT/SIGTERM set a flag instead of killing the process; a second signal acts as usual."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.signum = 0
        self._previous = {}

    def _handle(self, signum, frame):
        self.signum = signum
        for s, h in self._previous.items():  # a second Ctrl-C interrupts at once
            signal.signal(s, h)

    def __enter__(self) -> _StopOnSignal:
        if threading.current_thread() is threading.main_thread():  # signal.signal works only there
            for s in self.SIGNALS:
                self._previous[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for s, h in self._previous.items():
            signal.signal(s, h)

    def should_stop(self, logging_step: bool) -> bool:
        """Whether every process stops after this step. One process: as soon as a signal arrived. Several:
        at logging steps, any process's flag (one all-reduce; all processes reach the same logging steps)."""
        if jax.process_count() == 1:
            return self.signum != 0
        if not logging_step:
            return False
        from jax.experimental import multihost_utils

        flags = multihost_utils.process_allgather(np.int32(self.signum))
        self.signum = int(np.max(flags))
        return self.signum != 0


def _initialize_from(path, config, state, state_sharding) -> dict:
    """``state`` with ``params``/``rest`` replaced by those of the checkpoint at ``path`` (shape-checked against
    this run's model; the optimiser state is re-initialised for them)."""
    from mamba_jax.checkpoint import ParamsMismatchError, load_model, read_config

    _, src_step = read_config(path)
    try:
        model = load_model(path, config)[0]
    except ParamsMismatchError as e:  # every missing/unexpected/mis-shaped parameter (kilobytes): the first
        more = f" (and {len(e.problems) - 1} more)" if len(e.problems) > 1 else ""
        raise InitFromError(f"train.init_from={path}: its weights do not fit this config's model: "
                            f"{e.problems[0]}{more}") from None
    _, p, r, _ = _split_model(model)
    tx = make_optimizer(config.optim, config.train.num_steps)
    new = dict(state, params=p, rest=r, opt_state=tx.init(p))
    print(f"initialised from {path} (step {src_step})", flush=True)
    return jax.device_put(new, state_sharding)


def _restore_or_init(ckpt, walk, config, workdir, tx, abstract_state, state_sharding, train_iter, writer):
    """``(state, start step)``: the newest readable checkpoint's (iterator and metric files rewound with it),
    else a fresh state (``train.init_from`` weights when set; metric files of an earlier run emptied)."""

    def restore(step: int) -> dict:
        stored = ckpt.state_keys(step)  # checkpoints written before first_bad_step/skipped existed lack them
        target = {k: v for k, v in abstract_state.items() if stored is None or k in stored}
        try:
            return ckpt.restore(step, abstract_with_sharding(target, state_sharding), train_iter)
        except StateLayoutError:  # the stored tree is not this run's (a train state of an older layout)
            raise ConfigMismatchError(
                f"cannot resume {workdir}: its checkpoint (step {step}) holds a train state of another layout "
                f"(mamba-jax before 2026-11-30 stored the optimiser moments per parameter array; they are now one "
                f"vector). Its weights load: use a new --workdir with --config.train.init_from={workdir}.") from None

    found = walk.restore(restore)
    if found is not None:
        start, state = found
        for k in abstract_state.keys() - state.keys():
            state[k] = jax.device_put(jnp.zeros((), jnp.int32), state_sharding[k])
        writer.start(start)
        if jax.process_index() == 0:
            print(f"resumed from {workdir / 'checkpoints'} at step {start}", flush=True)
        return state, start
    writer.start(0)  # a run killed before its first checkpoint left rows and events of steps to be redone
    state = jax.jit(functools.partial(create_train_state, config, tx), out_shardings=state_sharding)()
    if config.train.init_from:  # fine-tuning: weights from a checkpoint (e.g. `mamba-jax convert`), fresh optimiser
        state = _initialize_from(config.train.init_from, config, state, state_sharding)
    return state, 0


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str | pathlib.Path, *,
                       task=None) -> dict[str, float]:
    """Trains ``config`` in ``workdir`` (resuming from its latest checkpoint) and returns the last metrics.

    ``task`` replaces the task of ``config.task`` (tests use it to inject faults). Raises, each with a
    one-line message: ``validate.ConfigValueError`` (an out-of-range value, before anything is created),
    ``resume.InitFromError``, ``workdir.WorkdirError`` (a file, read-only) and ``workdir.WorkdirLocked``
    (another run trains there), ``NonFiniteLossError``, ``TrainingInterrupted`` (after SIGINT/SIGTERM,
    checkpoint written), ``checkpoint.CheckpointSaveError``, ``checkpoint.CheckpointReadError`` (no checkpoint
    of the workdir can be read) and ``resume.ConfigMismatchError``.
    """
    check_config(config)  # before anything is created: a bad value is one line, not a failure later
    distributed.initialize_from_env()
    workdir = pathlib.Path(workdir)
    if config.train.init_from and not any((workdir / "checkpoints").glob("[0-9]*")):
        check_init_from(config)  # a fresh run; a resumed one ignores init_from
    workdir = prepare_workdir(workdir)
    mesh = distributed.data_mesh()
    tc = config.train
    n_proc = jax.process_count()
    if tc.batch_size % jax.device_count():
        raise ValueError(f"train.batch_size={tc.batch_size} must be divisible by the {jax.device_count()} devices")

    with contextlib.ExitStack() as cleanup:
        # Installed first, removed last: a signal during setup stops after the first step, one during the
        # final checkpoint's wait does not cut it short (a second signal acts as usual).
        if jax.process_index() == 0:  # one trainer per workdir; the other processes of this run share it
            cleanup.enter_context(WorkdirLock(workdir))
        stop = cleanup.enter_context(_StopOnSignal())
        ckpt = Checkpointer(workdir / "checkpoints", max_to_keep=tc.max_to_keep, keep_best=tc.keep_best)
        cleanup.callback(ckpt.close)
        walk = NewestReadable(ckpt, workdir)
        stored = walk.stored_config()
        if stored is not None:  # before building anything: a changed model is refused at once
            check_resume(stored, config, workdir)
        task = task if task is not None else make_task(config, workdir)
        model_def = ModelDef.of(config.model, ScanSharding(mesh, distributed.BATCH_AXIS))
        tx = make_optimizer(config.optim, tc.num_steps)
        repl = distributed.replicated(mesh)
        abstract_state = jax.eval_shape(functools.partial(create_train_state, config, tx))
        state_sharding = jax.tree.map(lambda _: repl, abstract_state)
        p_train_step = jax.jit(functools.partial(train_step, task=task, model_def=model_def, tx=tx),
                               donate_argnums=(0,), out_shardings=(state_sharding, repl))
        train_iter = cleanup.enter_context(iterate(task.dataset(
            "train", batch_size=tc.batch_size // n_proc, seed=tc.seed, process_index=jax.process_index(),
            process_count=n_proc)))
        writer = MetricWriter(workdir)
        cleanup.callback(writer.close)
        state, start = _restore_or_init(ckpt, walk, config, workdir, tx, abstract_state, state_sharding,
                                        train_iter, writer)
        if start >= tc.num_steps:
            return {}

        base_key = jax.random.key(tc.seed)
        last: dict[str, float] = {}
        t0, logged_at = time.perf_counter(), start
        bar = tqdm(total=tc.num_steps, initial=start, desc="train", disable=jax.process_index() != 0,
                   dynamic_ncols=True)
        cleanup.callback(bar.close)

        def write(step: int, values: dict) -> None:
            try:
                writer.write(step, values)
            except OSError:  # disk full: a failed background save is the clearer report of it
                ckpt.wait()
                raise

        for step in range(start, tc.num_steps):
            batch = distributed.global_batch(next(train_iter), mesh)
            state, metrics = p_train_step(state, batch, jax.random.fold_in(base_key, step))
            done = step + 1
            bar.update(1)
            ckpt.poll()  # a background save that failed stops training now (host-side check, no device sync)
            final = done == tc.num_steps
            log = done % tc.log_every_steps == 0 or final
            evaluate = done % tc.eval_every_steps == 0 or final
            save = done % tc.checkpoint_every_steps == 0 or final
            stopping = stop.should_stop(log)
            if not (log or evaluate or save or stopping):
                continue  # no device value read: the host queues the next step at once
            values = {k: float(v) for k, v in jax.device_get(metrics).items()}
            first_bad = int(values.pop("first_bad_step"))
            if first_bad:
                raise NonFiniteLossError(
                    f"non-finite loss or gradients at step {first_bad} (its update was skipped); training stopped "
                    f"at step {done}. The last good checkpoint is step {ckpt.latest_step()} in "
                    f"{workdir / 'checkpoints'}. Lower optim.lr, check the data, or use train.precision='fp32'.")
            if log:
                last = dict(values, steps_per_sec=(done - logged_at) / max(time.perf_counter() - t0, 1e-9))
                write(done, last)
                bar.set_postfix(loss=f"{values['loss']:.3f}")
                t0, logged_at = time.perf_counter(), done
            score = None
            if evaluate:
                val = task.evaluate(model_def.merge(state["params"], state["rest"]), max_batches=tc.eval_batches)
                state["opt_state"] = jax.device_put(observe_validation(config.optim, state["opt_state"], val["loss"]),
                                                    state_sharding["opt_state"])
                score = val["score"]
                write(done, {f"val_{k}": v for k, v in val.items()})
                last.update({f"val_{k}": v for k, v in val.items()})
                tqdm.write(f"step {done}: " + ", ".join(f"val_{k}={v:.3f}" for k, v in val.items()))
            if save or stopping:
                ckpt.save(done, state, train_iter, config, score=score)
            if stopping:
                ckpt.wait()
                raise TrainingInterrupted(done, stop.signum)
        return last
