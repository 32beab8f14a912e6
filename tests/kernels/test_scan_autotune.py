"""``impl="auto"``'s measuring logic on CPU, with injected candidates and a fake timer (no timing asserted).

The GPU behaviour (real measurements of the kernel's block configs against the associative path) needs a
GPU; here: the fastest candidate wins, each signature is measured once, the disk cache makes the choice
deterministic across tuners, a pin bypasses measuring, a failing candidate is skipped, measuring works while
the caller is being traced, and ``auto`` on CPU is unchanged (sequential, no measuring).
"""

from __future__ import annotations

import importlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mamba_jax.ops import scan_autotune as at

ss = importlib.import_module("mamba_jax.ops.selective_scan")  # the module (mamba_jax.ops.selective_scan is the function)

CANDS = (at.Candidate("a", "sequential"), at.Candidate("b", "associative"), at.Candidate("c", "sequential"))


class FakeTimer:
    """Returns preset seconds per candidate name (read from the callable make_call returned)."""

    def __init__(self, seconds):
        self.seconds, self.calls = seconds, []

    def __call__(self, fn, repeats):
        name = fn()
        self.calls.append(name)
        if self.seconds[name] is None:
            raise RuntimeError("out of memory")
        return self.seconds[name]


def make_call(c):
    return lambda: c.name


def test_fastest_wins_and_is_measured_once_per_signature():
    timer = FakeTimer({"a": 3.0, "b": 1.0, "c": 2.0})
    tuner = at.Autotuner(candidates=CANDS, timer=timer)
    assert tuner.choose("sig1", make_call).name == "b"
    assert tuner.choose("sig1", make_call).name == "b"
    assert timer.calls == ["a", "b", "c"]  # the second call did not measure
    timer.seconds = {"a": 0.5, "b": 1.0, "c": 2.0}
    assert tuner.choose("sig2", make_call).name == "a"  # a new signature is measured
    assert tuner.measurements["sig2"] == {"a": 0.5, "b": 1.0, "c": 2.0}


def test_failing_candidate_is_skipped_and_ties_keep_list_order():
    tuner = at.Autotuner(candidates=CANDS, timer=FakeTimer({"a": None, "b": 2.0, "c": 2.0}))
    assert tuner.choose("s", make_call).name == "b"


def test_disk_cache_makes_the_choice_deterministic(tmp_path):
    first = at.Autotuner(candidates=CANDS, timer=FakeTimer({"a": 3.0, "b": 1.0, "c": 2.0}), cache_dir=str(tmp_path))
    assert first.choose("s", make_call).name == "b"
    # A new process (tuner) with timings that would now pick "a" keeps the cached "b" and measures nothing.
    timer = FakeTimer({"a": 0.1, "b": 1.0, "c": 2.0})
    second = at.Autotuner(candidates=CANDS, timer=timer, cache_dir=str(tmp_path))
    assert second.choose("s", make_call).name == "b" and timer.calls == []
    assert (tmp_path / at.CACHE_FILE).exists()


def test_pin_bypasses_measuring():
    timer = FakeTimer({"a": 3.0, "b": 1.0, "c": 2.0})
    tuner = at.Autotuner(candidates=CANDS, timer=timer, pin="c")
    assert tuner.choose("s", make_call).name == "c" and timer.calls == []
    with pytest.raises(ValueError, match="unknown candidate"):
        at.Autotuner(candidates=CANDS, pin="nope").choose("s", make_call)


def _inputs(b=1, l=12, e=8, n=4):
    rng = np.random.default_rng(0)
    r = lambda *s: jnp.asarray(rng.standard_normal(s), jnp.float32)
    return r(b, l, e), 0.5 * r(b, l, e), -jnp.exp(0.5 * r(e, n)), r(b, l, n), r(b, l, n)


def test_auto_measures_real_candidates_while_traced(monkeypatch):
    """The GPU branch of auto, forced on CPU: inside jax.jit it runs each candidate's jitted forward+backward
    on concrete inputs (in a worker thread, outside the trace) and then uses the winner."""
    seen = []

    def timer(fn, repeats):
        fn()  # really runs the candidate (raises if it leaked a tracer)
        seen.append(repeats)
        return {0: 2.0, 1: 1.0}[len(seen) - 1]  # the second candidate ("associative") is "faster"

    at.configure(candidates=(at.Candidate("seq", "sequential"), at.Candidate("assoc", "associative")),
                 timer=timer, repeats=1)
    monkeypatch.setattr(ss, "_resolve_impl", lambda impl: "auto" if impl == "auto" else impl)
    try:
        u, dl, A, B, C = _inputs()
        out = jax.jit(lambda u: ss.selective_scan(u, dl, A, B, C, impl="auto"))(u)
        want = ss.selective_scan(u, dl, A, B, C, impl="sequential")
        np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-5)
        assert len(seen) == 2
        assert list(at.get_tuner().measurements.values()) == [{"seq": 2.0, "assoc": 1.0}]
    finally:
        at.configure()


def test_auto_on_cpu_is_sequential_without_measuring():
    timer = FakeTimer({})
    at.configure(timer=timer)
    try:
        assert jax.default_backend() == "cpu"
        assert ss._resolve_impl("auto") == "sequential"
        u, dl, A, B, C = _inputs()
        ss.selective_scan(u, dl, A, B, C, impl="auto")
        assert timer.calls == []
    finally:
        at.configure()
