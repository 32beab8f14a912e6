"""``impl="auto"`` on GPU: measure the selective-scan candidates once per shape signature, keep the fastest.

Like Triton's autotuner: the first call with a new signature (shapes, dtypes, which optional inputs are
present, device kind, jax version) times every candidate on random inputs of that signature, forward plus
backward (the training cost), and caches the winner in the process, and in
``<cache_dir>/selective_scan_auto.json`` when a cache directory is set. Later calls, and later processes that
see the same file, use the cached choice without measuring: the choice is deterministic given the cache.
Measuring happens in Python while the caller is being traced (only shapes are needed), so it is off the hot
path after the first trace.

Settings (``configure(...)`` or environment variables, read on first use):
  cache_dir   MAMBA_JAX_SCAN_AUTOTUNE_DIR   where the JSON cache lives (unset: in-process only)
  pin         MAMBA_JAX_SCAN_AUTO           a candidate name that ``auto`` always uses (no measuring), e.g.
                                            "associative" or "pallas"; the model config's ``scan_impl``
                                            pins the implementation itself.
  repeats     timed runs per candidate (median), after one warm-up (compile) run.

Off the GPU ``auto`` does not measure (``selective_scan._resolve_impl``).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import os
import statistics
import threading
import time
from collections.abc import Callable, Sequence
from typing import NamedTuple

from mamba_jax_kernels.selective_scan.config import BlockConfig

CACHE_FILE = "selective_scan_auto.json"


class Candidate(NamedTuple):
    name: str
    impl: str  # "pallas", "associative" or "sequential"
    block_config: BlockConfig | None = None


# The kernel's default tiling, three that trade registers and warps for a cheaper hot loop (10.5-11.5 instead
# of 12.9 forward instructions per element, bench/kernel_report.py), and the pure-JAX associative path.
DEFAULT_CANDIDATES: tuple[Candidate, ...] = (
    Candidate("pallas", "pallas", BlockConfig()),
    Candidate("pallas-w2", "pallas", BlockConfig(num_warps_fwd=2)),
    Candidate("pallas-t16", "pallas", BlockConfig(block_t=16, block_d_bwd=8)),
    Candidate("pallas-bd64-w2-t4", "pallas", BlockConfig(block_d=64, num_warps_fwd=2, block_t=4)),
    Candidate("associative", "associative", None),
)


def median_timer(fn: Callable[[], object], repeats: int) -> float:
    """Seconds per call of ``fn`` (which must block until its result is ready): median after a warm-up."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


@dataclasses.dataclass
class Autotuner:
    """Chooses a candidate per signature. ``timer(fn, repeats) -> seconds`` is injectable (tests fake it)."""

    candidates: Sequence[Candidate] = DEFAULT_CANDIDATES
    cache_dir: str | None = None
    pin: str | None = None
    repeats: int = 5
    timer: Callable[[Callable[[], object], int], float] = median_timer
    measurements: dict = dataclasses.field(default_factory=dict)  # signature -> {name: seconds}
    _choices: dict = dataclasses.field(default_factory=dict)
    _loaded: bool = False
    _lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)

    def _by_name(self, name: str) -> Candidate:
        for c in self.candidates:
            if c.name == name:
                return c
        raise ValueError(f"selective_scan auto: unknown candidate {name!r}; one of "
                         f"{[c.name for c in self.candidates]}")

    def _path(self) -> str | None:
        return None if not self.cache_dir else os.path.join(self.cache_dir, CACHE_FILE)

    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        path = self._path()
        if path and os.path.exists(path):
            with open(path) as fh:
                self._choices.update(json.load(fh))

    def _save(self) -> None:
        path = self._path()
        if not path:
            return
        os.makedirs(self.cache_dir, exist_ok=True)
        merged = {}
        if os.path.exists(path):  # another process may have added signatures
            with open(path) as fh:
                merged = json.load(fh)
        merged.update(self._choices)
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "w") as fh:
            json.dump(merged, fh, indent=1, sort_keys=True)
        os.replace(tmp, path)

    def choose(self, signature: str, make_call: Callable[[Candidate], Callable[[], object]]) -> Candidate:
        """The candidate for ``signature``; measures each candidate (``make_call(c)()`` runs it once) only if
        neither a pin nor the cache decides."""
        if self.pin:
            return self._by_name(self.pin)
        with self._lock:
            self._load()
            name = self._choices.get(signature)
            if name is not None and any(c.name == name for c in self.candidates):
                return self._by_name(name)
            times = {}
            for c in self.candidates:
                # In a fresh thread: the caller is usually being traced (jit), and jax's trace state is
                # per thread, so there the candidates run eagerly on concrete inputs.
                with concurrent.futures.ThreadPoolExecutor(1) as pool:
                    future = pool.submit(lambda c=c: float(self.timer(make_call(c), self.repeats)))
                    try:
                        times[c.name] = future.result()
                    except Exception:  # e.g. out of memory for the associative path at a long sequence
                        times[c.name] = float("inf")
            self.measurements[signature] = times
            # Fastest; ties (and all-failed) go to the earlier candidate in the list.
            best = min(self.candidates, key=lambda c: (times[c.name], self.candidates.index(c)))
            self._choices[signature] = best.name
            self._save()
            return best


_TUNER: Autotuner | None = None


def get_tuner() -> Autotuner:
    global _TUNER
    if _TUNER is None:
        _TUNER = Autotuner(cache_dir=os.environ.get("MAMBA_JAX_SCAN_AUTOTUNE_DIR") or None,
                           pin=os.environ.get("MAMBA_JAX_SCAN_AUTO") or None)
    return _TUNER


def configure(**kwargs) -> Autotuner:
    """Replaces the process-wide tuner (fields of ``Autotuner``: cache_dir, pin, repeats, candidates, timer).
    Without arguments: back to the defaults and the environment variables."""
    global _TUNER
    _TUNER = Autotuner(**kwargs) if kwargs else None
    return get_tuner()
