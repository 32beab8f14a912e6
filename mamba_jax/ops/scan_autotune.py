"""``impl="auto"``: per shape signature, the fastest selective-scan candidate whose numbers are right.

For a new signature (batch, length bucket, widths, dtypes, optional inputs; see ``scan_auto.AutoBench``)
and mode (``"fwd"``: inference, the call is not differentiated; ``"fwd+bwd"``: training), the tuner

1. checks every candidate against the pure-JAX ``associative`` path on random inputs of the signature: outputs,
   last state and the gradients of every input (a vjp with random cotangents) must agree within the scan test
   suite's tolerances (``TOL``, normalised max error, scaled with sqrt(L / 128)). A mismatch, an exception
   (compile error, out of memory) or a non-finite number logs one warning line naming the candidate, the
   signature and the reason, and the candidate is never used for that signature (the verdict is kept for the
   process and written with the cache entry);
2. times the candidates that passed, forward only for ``"fwd"`` and forward + backward for ``"fwd+bwd"``
   (median of ``repeats`` runs after a warm-up run), and keeps the fastest (ties: the earlier candidate);
3. writes the choice to ``<cache_dir>/<key hash>.json`` (a temporary file renamed over the entry: atomic, and
   concurrent processes at worst measure the same signature twice). The key holds the signature, the mode, a
   hash of the kernel's source files (``kernel_source_hash``), the jax version, the device kind and the
   candidate list: when the kernel changes, an old entry is never read and the signature is measured again.

Signatures use a length bucket, not the exact length: L goes to the next power of two ``2^k`` and the bucket is
measured at ``2^k - 1`` steps, the length whose last tile is ragged for every power-of-two tile size (so the
check covers the kernel's masked tail). In a multi-process run process 0 decides (from its cache or by
measuring) and broadcasts its choice (``multihost_utils.broadcast_one_to_all``); the other processes neither
measure nor read their cache, so every process runs the same program (a split between the kernel and the
associative path would give them different collectives). Measuring happens in Python while the caller is
traced, in a worker thread (jax's trace state is per thread, so the candidates and the broadcast run eagerly on
concrete inputs there); ``docs/mamba.md``, "impl='auto'", gives the cost.

Settings (``configure(...)`` or environment variables, read when the process-wide tuner is first built):
  cache_dir     MAMBA_JAX_SCAN_AUTOTUNE_DIR  the cache folder; default ``$XDG_CACHE_HOME/mamba_jax/scan_autotune``
                                             (``~/.cache`` without XDG_CACHE_HOME); ``cache_dir=None``: no disk
  pin           MAMBA_JAX_SCAN_AUTO          a candidate name ``auto`` always uses, unchecked and unmeasured
  enabled       MAMBA_JAX_SCAN_AUTOTUNE=0    no autotuning: ``auto`` on GPU is ``FIXED_CHOICE`` ("pallas", the
                                             kernel's default tiling), unchecked and unmeasured
  enable_on_cpu (configure only)             measure off the GPU too (tests); by default ``auto`` off the GPU
                                             is a fixed path (``selective_scan._resolve_impl``)
  compile_threads (configure only)           programs compiled at once (8)
  repeats, candidates, timer, broadcast, kernel_hash: test hooks (see ``Autotuner``).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import importlib.util
import json
import logging
import os
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from typing import NamedTuple, Protocol, runtime_checkable

import jax
import jax.numpy as jnp

from mamba_jax_kernels.selective_scan.config import BlockConfig

log = logging.getLogger(__name__)

ENV_PIN = "MAMBA_JAX_SCAN_AUTO"
ENV_DIR = "MAMBA_JAX_SCAN_AUTOTUNE_DIR"
ENV_ENABLED = "MAMBA_JAX_SCAN_AUTOTUNE"
FIXED_CHOICE = "pallas"
MODES = ("fwd", "fwd+bwd")


class Candidate(NamedTuple):
    name: str
    impl: str  # "pallas", "associative" or "sequential"
    block_config: BlockConfig | None = None
    # Test hook: a function with selective_scan's signature (keywords delta_softplus, return_last_state,
    # initial_state) used instead of ``impl``, e.g. a planted wrong kernel.
    fn: Callable | None = None


REFERENCE = Candidate("associative", "associative")

# The kernel's default tiling, three that trade registers and warps for a cheaper hot loop (10.5-11.5 instead
# of 12.9 forward instructions per element, bench/kernel_report.py), and the pure-JAX associative path.
DEFAULT_CANDIDATES: tuple[Candidate, ...] = (
    Candidate("pallas", "pallas", BlockConfig()),
    Candidate("pallas-w2", "pallas", BlockConfig(num_warps_fwd=2)),
    Candidate("pallas-t16", "pallas", BlockConfig(block_t=16, block_d_bwd=8)),
    Candidate("pallas-bd64-w2-t4", "pallas", BlockConfig(block_d=64, num_warps_fwd=2, block_t=4)),
    REFERENCE,
)

# The scan suite's tolerances (tests/kernels/test_selective_scan_kernel.py): normalised max error
# max|x - ref| / max(max|ref|, 1), scaled with sqrt(L / 128) (fp32 rounding accumulates over the steps).
TOL = {"float32": {"fwd": 2e-5, "grad": 2e-4}, "bfloat16": {"fwd": 1.5e-2, "grad": 4e-2}}


def tolerance(dtype: str, length: int, kind: str) -> float:
    """The allowed normalised error of ``kind`` ("fwd" or "grad") for inputs of ``dtype`` over ``length`` steps
    (float16 takes bfloat16's, float64 float32's)."""
    table = TOL["float32"] if dtype in ("float32", "float64") else TOL["bfloat16"]
    return table[kind] * max(1.0, (length / 128) ** 0.5)


def length_bucket(length: int) -> int:
    """The bucket of a sequence length: the next power of two (the signature holds this, not the length)."""
    return 1 << max(0, int(length) - 1).bit_length()


def measured_length(length: int) -> int:
    """The length a bucket is checked and timed at: ``2^k - 1`` (ragged last tile for every power-of-two tile)."""
    return max(1, length_bucket(length) - 1)


def default_cache_dir() -> str:
    """``$XDG_CACHE_HOME/mamba_jax/scan_autotune``, or ``~/.cache/mamba_jax/scan_autotune``."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "mamba_jax", "scan_autotune")


def kernel_source_hash(directory: str | None = None) -> str:
    """sha256 (16 hex digits) of the names and bytes of the ``*.py`` files of the installed kernel package
    (``mamba_jax_kernels.selective_scan``), or of ``directory``."""
    if directory is None:
        spec = importlib.util.find_spec("mamba_jax_kernels.selective_scan")
        directory = list(spec.submodule_search_locations)[0]
    h = hashlib.sha256()
    for name in sorted(f for f in os.listdir(directory) if f.endswith(".py")):
        h.update(name.encode() + b"\0")
        with open(os.path.join(directory, name), "rb") as fh:
            h.update(fh.read() + b"\0")
    return h.hexdigest()[:16]


@runtime_checkable  # so that the suite's run-time annotation checks (tests/conftest.py) can check it
class Bench(Protocol):
    """What the tuner measures: random inputs of one signature (``scan_auto.AutoBench``)."""

    signature: str
    dtype: str  # the dtype name of u
    length: int  # the measured length

    def compile(self, cand: Candidate, mode: str) -> object:
        """Compiles ``cand``'s program for ``mode`` (from shapes only; called from several threads at once)."""

    def run(self, cand: Candidate, mode: str) -> Callable[[], dict[str, jax.Array]]:
        """A callable that runs ``cand`` once (blocking) and returns its outputs ("out", "last_state") and, for
        "fwd+bwd", the gradients ("d<input>") too."""


def median_timer(fn: Callable[[], object], repeats: int, *, name: str = "", mode: str = "") -> float:
    """Seconds per call of ``fn`` (which blocks until its result is ready): median after a warm-up call.
    ``name`` and ``mode`` are for injected timers."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def broadcast_from_process_0(index: int) -> int:
    """Process 0's ``index`` on every process (identity in a single-process run)."""
    if jax.process_count() == 1:
        return index
    from jax.experimental import multihost_utils

    return int(multihost_utils.broadcast_one_to_all(jnp.int32(index)))


@jax.jit
def _errors(got: dict, ref: dict) -> dict:
    """Per array: (normalised max error against ``ref``, whether every value is finite); one compiled program."""
    def one(g, r):
        g, r = g.astype(jnp.float32), r.astype(jnp.float32)
        return jnp.max(jnp.abs(g - r)) / jnp.maximum(jnp.max(jnp.abs(r)), 1.0), jnp.all(jnp.isfinite(g))

    return {k: one(got[k], ref[k]) for k in ref}


def mismatch(got: dict[str, jax.Array], ref: dict[str, jax.Array], dtype: str, length: int) -> str | None:
    """Why ``got`` is not ``ref`` (one line), or None when every array agrees within ``tolerance``."""
    for k, r in ref.items():
        if k not in got or got[k].shape != r.shape:
            return f"{k}: shape {got[k].shape if k in got else None} != {r.shape}"
    errors = jax.device_get(_errors({k: got[k] for k in ref}, ref))
    first = [k for k in ("out", "last_state") if k in ref]
    for k in first + sorted(k for k in ref if k not in first):
        err, finite = errors[k]
        if not finite:
            return f"{k}: non-finite values"
        tol = tolerance(dtype, length, "fwd" if k in ("out", "last_state") else "grad")
        if not err <= tol:
            return f"{k}: normalised max error {float(err):.3g} > {tol:.3g} against associative"
    return None


def _one_line(e: BaseException) -> str:
    first = (str(e).strip().splitlines() or [""])[0]
    return f"{type(e).__name__}: {first[:200]}"


@dataclasses.dataclass
class Autotuner:
    """Chooses a candidate per (signature, mode). ``timer(fn, repeats, name=, mode=) -> seconds`` and
    ``broadcast(index) -> index`` are injectable (tests fake them); ``kernel_hash`` None: the installed kernel's."""

    candidates: Sequence[Candidate] = DEFAULT_CANDIDATES
    cache_dir: str | None = None
    pin: str | None = None
    enabled: bool = True
    enable_on_cpu: bool = False
    repeats: int = 5
    timer: Callable[..., float] = median_timer
    broadcast: Callable[[int], int] = broadcast_from_process_0
    kernel_hash: str | None = None
    compile_threads: int = 8
    measurements: dict = dataclasses.field(default_factory=dict)  # "signature|mode" -> {name: seconds} (passed)
    verdicts: dict = dataclasses.field(default_factory=dict)  # signature -> {name: None (passed) or reason}
    _choices: dict = dataclasses.field(default_factory=dict)  # (signature, mode) -> name
    _lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)

    def by_name(self, name: str) -> Candidate:
        for c in self.candidates:
            if c.name == name:
                return c
        if name == REFERENCE.name:
            return REFERENCE
        raise ValueError(f"selective_scan auto: unknown candidate {name!r} ({ENV_PIN}?); one of "
                         f"{[c.name for c in self.candidates]}")

    def choose(self, bench: Bench, mode: str) -> Candidate:
        """The candidate for ``bench.signature`` in ``mode``: the pin, the fixed choice when disabled, the
        process's earlier choice, process 0's cached or measured one."""
        if mode not in MODES:
            raise ValueError(f"selective_scan auto: mode must be one of {MODES}, got {mode!r}")
        if self.pin:
            return self.by_name(self.pin)
        if not self.enabled:
            return self.by_name(FIXED_CHOICE)
        key = (bench.signature, mode)
        with self._lock:
            if key not in self._choices:
                # In a fresh thread: the caller is usually being traced (jit), and jax's trace state is per
                # thread, so there the candidates and the broadcast run eagerly on concrete inputs. Every process
                # reaches this point for the same keys in the same order (the same program is traced), so the
                # broadcasts pair up; only process 0's cache and timings count.
                def decide() -> int:
                    mine = -1
                    if jax.process_index() == 0:
                        try:
                            mine = self._decide(bench, mode)
                        except Exception as e:  # still broadcast: the other processes are waiting for it
                            log.warning("selective_scan auto: deciding for %s (%s) failed: %s; using %s",
                                        bench.signature, mode, _one_line(e), REFERENCE.name)
                            mine = self._names().index(REFERENCE.name)
                    return self.broadcast(mine)

                with concurrent.futures.ThreadPoolExecutor(1) as pool:
                    index = pool.submit(decide).result()
                self._choices[key] = self._names()[index]
            return self.by_name(self._choices[key])

    def _names(self) -> list[str]:
        names = [c.name for c in self.candidates]
        return names if REFERENCE.name in names else names + [REFERENCE.name]

    # ---------------------------------------------------------------------------------------------- the cache

    def _entry_key(self, signature: str, mode: str) -> dict:
        cands = [[c.name, c.impl, repr(c.block_config), getattr(c.fn, "__qualname__", None)] for c in self.candidates]
        return dict(signature=signature, mode=mode, kernel=self.kernel_hash or kernel_source_hash(),
                    jax=jax.__version__, device=jax.devices()[0].device_kind,
                    candidates=hashlib.sha256(json.dumps(cands).encode()).hexdigest()[:16])

    def _entry_path(self, key: dict) -> str | None:
        if not self.cache_dir:
            return None
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:32]
        return os.path.join(self.cache_dir, f"{digest}.json")

    def _load(self, key: dict) -> dict | None:
        path = self._entry_path(key)
        try:
            with open(path) as fh:  # type: ignore[arg-type]
                entry = json.load(fh)
        except (TypeError, OSError, ValueError):  # no cache dir, no entry, or a damaged one
            return None
        if entry.get("key") != key or entry.get("choice") not in self._names():
            return None
        return entry

    def _save(self, key: dict, entry: dict) -> None:
        path = self._entry_path(key)
        if not path:
            return
        try:
            os.makedirs(self.cache_dir, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.cache_dir, prefix=".tmp-", suffix=".json")
            with os.fdopen(fd, "w") as fh:
                json.dump(dict(entry, key=key), fh, indent=1, sort_keys=True)
            os.replace(tmp, path)
        except OSError as e:
            log.warning("selective_scan auto: cannot write the autotune cache %s: %s (%s); the choice holds for "
                        "this process only", path, e.strerror or e, ENV_DIR)

    # ------------------------------------------------------------------------------------------- measuring

    def _decide(self, bench: Bench, mode: str) -> int:
        """Process 0: the index (in ``_names()``) of the cached or measured choice."""
        key = self._entry_key(bench.signature, mode)
        entry = self._load(key)
        if entry is not None:
            self.verdicts.setdefault(bench.signature, {}).update(entry.get("rejected", {}))
            return self._names().index(entry["choice"])
        times = self._measure(bench, mode)
        self.measurements[f"{bench.signature}|{mode}"] = times
        order = self._names()
        if times:
            best = min(times, key=lambda n: (times[n], order.index(n)))
        else:
            best = REFERENCE.name
            log.warning("selective_scan auto: no candidate passed for %s (%s); using %s", bench.signature, mode,
                        best)
        rejected = {n: r for n, r in self.verdicts.get(bench.signature, {}).items() if r}
        self._save(key, dict(choice=best, times=times, rejected=rejected))
        return order.index(best)

    def _reject(self, bench: Bench, mode: str, name: str, reason: str) -> None:
        self.verdicts.setdefault(bench.signature, {})[name] = reason
        log.warning("selective_scan auto: candidate %s rejected for %s (%s): %s", name, bench.signature, mode,
                    reason)

    def _measure(self, bench: Bench, mode: str) -> dict[str, float]:
        """Checks (once per signature) and times each candidate; returns {name: seconds} of those that passed."""
        verdicts = self.verdicts.setdefault(bench.signature, {})
        todo = [c for c in self.candidates if not verdicts.get(c.name)]  # a rejected one is never used again
        # Compiling dominates the cost (about 2 s of Triton and ptxas per kernel, 4 kernels per candidate's
        # forward + backward): all the programs are compiled at once, in threads (XLA and Triton release the GIL).
        unchecked = [c for c in todo if c.name not in verdicts]
        programs = {(REFERENCE.name, "fwd+bwd"): REFERENCE} if unchecked else {}
        programs.update({(c.name, "fwd+bwd"): c for c in unchecked})
        programs.update({(c.name, mode): c for c in todo})
        with concurrent.futures.ThreadPoolExecutor(max(1, min(len(programs), self.compile_threads))) as pool:
            compiled = {(n, m): pool.submit(bench.compile, c, m) for (n, m), c in programs.items()}
        ref: dict | str | None = None
        if unchecked:
            try:
                compiled[REFERENCE.name, "fwd+bwd"].result()
                ref = bench.run(REFERENCE, "fwd+bwd")()
            except Exception as e:
                ref = f"the associative reference failed ({_one_line(e)})"
        times = {}
        for c in todo:
            try:
                if c.name not in verdicts:
                    if isinstance(ref, str):  # nothing to check against: not used
                        raise _Rejected(ref)
                    compiled[c.name, "fwd+bwd"].result()
                    got = ref if c == REFERENCE else bench.run(c, "fwd+bwd")()
                    verdicts[c.name] = mismatch(got, ref, bench.dtype, bench.length)
                    if verdicts[c.name]:
                        raise _Rejected(verdicts[c.name])
                compiled[c.name, mode].result()
                times[c.name] = float(self.timer(bench.run(c, mode), self.repeats, name=c.name, mode=mode))
            except _Rejected as e:
                self._reject(bench, mode, c.name, str(e))
            except Exception as e:  # a compile error, out of memory, a Triton failure: never fatal here
                self._reject(bench, mode, c.name, _one_line(e))
        return times


class _Rejected(Exception):
    pass


_TUNER: Autotuner | None = None


def _from_env() -> dict:
    return dict(cache_dir=os.environ.get(ENV_DIR) or default_cache_dir(), pin=os.environ.get(ENV_PIN) or None,
                enabled=os.environ.get(ENV_ENABLED, "1").strip().lower() not in ("0", "false", "off", "no"))


def get_tuner() -> Autotuner:
    """The process-wide tuner (built from the environment on first use)."""
    global _TUNER
    if _TUNER is None:
        _TUNER = Autotuner(**_from_env())
    return _TUNER


def configure(**kwargs) -> Autotuner:
    """Replaces the process-wide tuner: the environment's settings overridden by ``kwargs`` (fields of
    ``Autotuner``: cache_dir, pin, enabled, enable_on_cpu, repeats, candidates, timer, broadcast, kernel_hash,
    compile_threads).
    Without arguments: back to the environment's settings."""
    global _TUNER
    _TUNER = Autotuner(**{**_from_env(), **kwargs})
    return _TUNER
