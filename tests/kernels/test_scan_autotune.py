"""``impl="auto"``: the tuner's decisions (checked against the associative path, per mode, cached on disk with a
kernel-hash key, agreed across processes), with injected candidates, benches and timers; no timing asserted.

The decision code is the real one: ``Autotuner`` with a fake bench (numpy outputs) for the cache and verdict
logic, and the real ``selective_scan`` path (``configure(enable_on_cpu=True)``, jitted candidates, the custom_vjp
that tells inference from training) at tiny shapes. Nothing here assumes a backend; the real kernel candidates
are measured by the ``gpu``-marked test only.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mamba_jax.ops import scan_autotune as at

ss = importlib.import_module("mamba_jax.ops.selective_scan")  # the module (mamba_jax.ops.selective_scan is the function)
sa = importlib.import_module("mamba_jax.ops.scan_auto")
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

CANDS = (at.Candidate("a", "sequential"), at.Candidate("b", "sequential"), at.Candidate("associative", "associative"))
RNG = np.random.default_rng(0)
GOOD = {"out": RNG.standard_normal((2, 31, 8)).astype(np.float32), "dA": RNG.standard_normal((8, 4)).astype(np.float32)}


class FakeBench:
    """``scan_autotune.Bench`` with preset outputs per candidate name (a dict, or an exception to raise)."""

    def __init__(self, outputs: dict, signature: str = "sig", dtype: str = "float32", length: int = 31):
        self.outputs, self.signature, self.dtype, self.length = outputs, signature, dtype, length
        self.runs: list[tuple[str, str]] = []
        self.compiled: list[tuple[str, str]] = []

    def compile(self, cand, mode):
        self.compiled.append((cand.name, mode))
        r = self.outputs.get(cand.name)
        if isinstance(r, Exception) and "compile" in str(r):
            raise r

    def run(self, cand, mode):
        def go():
            self.runs.append((cand.name, mode))
            r = self.outputs.get(cand.name, GOOD)
            if isinstance(r, Exception):
                raise r
            return r if mode == "fwd+bwd" else {"out": r["out"]}

        return go


class FakeTimer:
    """Preset seconds per candidate name, or per (name, mode); runs the callable once; records (name, mode)."""

    def __init__(self, seconds: dict):
        self.seconds, self.calls = seconds, []

    def __call__(self, fn, repeats, *, name, mode):
        fn()
        self.calls.append((name, mode))
        s = self.seconds.get((name, mode), self.seconds.get(name))
        if isinstance(s, Exception):
            raise s
        return s


def tuner(timer, **kw) -> at.Autotuner:
    return at.Autotuner(candidates=kw.pop("candidates", CANDS), timer=timer, kernel_hash=kw.pop("kernel_hash", "k1"),
                        **kw)


def test_fastest_wins_once_per_signature_and_mode():
    timer = FakeTimer({"a": 3.0, "b": 1.0, "associative": 2.0, ("a", "fwd"): 0.5})
    t, bench = tuner(timer), FakeBench({})
    assert t.choose(bench, "fwd+bwd").name == "b"
    assert t.choose(bench, "fwd+bwd").name == "b"
    assert t.choose(bench, "fwd").name == "a"  # the forward-only timings decide inference
    assert timer.calls == [(n, "fwd+bwd") for n in ("a", "b", "associative")] + [(n, "fwd") for n in
                                                                                  ("a", "b", "associative")]
    # Each candidate was checked once for the signature (outputs and gradients, the reference's run serving the
    # associative candidate), not again for the other mode; then timed once per mode.
    assert bench.runs.count(("a", "fwd+bwd")) == bench.runs.count(("associative", "fwd+bwd")) == 2
    assert len(bench.runs) == 3 + 3 + 3
    assert t.measurements == {"sig|fwd+bwd": {"a": 3.0, "b": 1.0, "associative": 2.0},
                              "sig|fwd": {"a": 0.5, "b": 1.0, "associative": 2.0}}


def test_planted_wrong_candidate_is_never_used(caplog):
    wrong = {"out": GOOD["out"] * (1 + 1e-3), "dA": GOOD["dA"]}  # 0.1% off: far outside fp32's 2e-5
    wrong_grad = {"out": GOOD["out"], "dA": GOOD["dA"] + 1e-2}
    timer = FakeTimer({"a": 0.1, "b": 0.2, "associative": 1.0})
    t = tuner(timer)
    with caplog.at_level(logging.WARNING, logger=at.__name__):
        assert t.choose(FakeBench({"a": wrong, "b": wrong_grad}, signature="u(2,L<=32,8)"), "fwd+bwd").name == (
            "associative")
        assert t.choose(FakeBench({"a": wrong, "b": wrong_grad}, signature="u(2,L<=32,8)"), "fwd").name == (
            "associative")
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2 and all("\n" not in x for x in lines), lines  # one line each, not repeated for "fwd"
    assert "candidate a rejected for u(2,L<=32,8)" in lines[0] and "out: normalised max error" in lines[0]
    assert "candidate b rejected for u(2,L<=32,8)" in lines[1] and "dA: normalised max error" in lines[1]
    assert [c for c, _ in timer.calls] == ["associative", "associative"]  # the rejected ones are never timed
    # The same perturbation passes in bfloat16 (its tolerance is 1.5e-2): the check uses the suite's per-dtype ones.
    assert tuner(FakeTimer({"a": 0.1, "b": 0.2, "associative": 1.0})).choose(
        FakeBench({"a": wrong}, dtype="bfloat16"), "fwd").name == "a"


def test_failing_candidates_are_rejected_with_the_reason(caplog):
    cands = CANDS + (at.Candidate("c", "sequential"), at.Candidate("d", "sequential"))
    bench = FakeBench({"a": RuntimeError("Triton compile error: out of shared memory\nlong traceback"),
                       "b": {"out": GOOD["out"] * np.nan, "dA": GOOD["dA"]}})
    timer = FakeTimer({"c": RuntimeError("RESOURCE_EXHAUSTED: out of memory"), "d": 0.5, "associative": 1.0})
    with caplog.at_level(logging.WARNING, logger=at.__name__):
        assert tuner(timer, candidates=cands).choose(bench, "fwd").name == "d"
    reasons = {r.getMessage().split()[3]: r.getMessage() for r in caplog.records}
    assert reasons["a"].endswith("RuntimeError: Triton compile error: out of shared memory")
    assert reasons["b"].endswith("out: non-finite values")
    assert reasons["c"].endswith("RuntimeError: RESOURCE_EXHAUSTED: out of memory")
    assert set(reasons) == {"a", "b", "c"}
    # Nothing passes: the associative path, with a line saying so.
    caplog.clear()
    bad = FakeBench({n: RuntimeError("boom") for n in ("a", "b")} | {"associative": RuntimeError("oom")})
    with caplog.at_level(logging.WARNING, logger=at.__name__):
        assert tuner(FakeTimer({})).choose(bad, "fwd+bwd").name == "associative"
    assert "no candidate passed" in caplog.records[-1].getMessage()


def test_disk_cache_is_keyed_by_the_kernel_source(tmp_path):
    first = tuner(FakeTimer({"a": 3.0, "b": 1.0, "associative": 2.0}), cache_dir=str(tmp_path), kernel_hash="k1")
    assert first.choose(FakeBench({}), "fwd+bwd").name == "b"
    entries = [p for p in tmp_path.iterdir()]
    assert len(entries) == 1 and json.loads(entries[0].read_text())["key"]["kernel"] == "k1"
    # A new process with the same kernel: the cached choice, nothing measured or checked.
    timer, bench = FakeTimer({"a": 0.1, "b": 1.0, "associative": 2.0}), FakeBench({})
    assert tuner(timer, cache_dir=str(tmp_path), kernel_hash="k1").choose(bench, "fwd+bwd").name == "b"
    assert timer.calls == [] and bench.runs == []
    # The kernel changed: the old entry is not used, the signature is measured again.
    assert tuner(timer, cache_dir=str(tmp_path), kernel_hash="k2").choose(bench, "fwd+bwd").name == "a"
    assert len(timer.calls) == 3 and len(list(tmp_path.iterdir())) == 2
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp")]  # written by rename, nothing left
    # A damaged entry (e.g. a file cut short by a full disk) is measured again, not an error.
    for p in tmp_path.iterdir():
        p.write_text("{")
    assert tuner(FakeTimer({"a": 3.0, "b": 1.0, "associative": 2.0}), cache_dir=str(tmp_path)).choose(
        FakeBench({}), "fwd+bwd").name == "b"


def test_concurrent_writers_never_expose_a_partial_entry(tmp_path):
    """Writers racing on one entry (as processes sharing a cache folder would) while a reader reads it: every read
    sees a whole entry (written to a temporary file, then renamed), and no temporary file is left behind."""
    import threading

    t = tuner(FakeTimer({}), cache_dir=str(tmp_path))
    key = t._entry_key("sig", "fwd")
    big = {f"c{i}": float(i) for i in range(2000)}  # a large entry: a torn write would be visible
    stop, seen = threading.Event(), []

    def write(name):
        while not stop.is_set():
            t._save(key, dict(choice=name, times=big, rejected={}))

    path = t._entry_path(key)

    def read():
        while not stop.is_set():
            try:
                with open(path) as fh:
                    text = fh.read()
            except FileNotFoundError:  # not written yet
                continue
            try:
                seen.append(json.loads(text)["choice"])
            except ValueError:
                seen.append("torn")

    threads = [threading.Thread(target=write, args=(n,)) for n in ("a", "b")] + [threading.Thread(target=read)]
    for th in threads:
        th.start()
    threading.Event().wait(0.5)
    stop.set()
    for th in threads:
        th.join()
    assert seen and set(seen) <= {"a", "b"}, set(seen)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".tmp")] == []
    assert len(list(tmp_path.iterdir())) == 1


def test_kernel_source_hash_follows_the_files(tmp_path):
    src = os.path.dirname(importlib.import_module("mamba_jax_kernels.selective_scan").__file__)
    shutil.copytree(src, tmp_path / "k", ignore=shutil.ignore_patterns("__pycache__"))
    assert at.kernel_source_hash(str(tmp_path / "k")) == at.kernel_source_hash()  # the installed package's files
    with open(tmp_path / "k" / "kernel.py", "a") as fh:
        fh.write("\n# changed\n")
    assert at.kernel_source_hash(str(tmp_path / "k")) != at.kernel_source_hash()


def test_default_cache_dir_pin_and_off(tmp_path, monkeypatch, caplog):
    for var in (at.ENV_DIR, at.ENV_PIN, at.ENV_ENABLED):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    try:
        t = at.configure(candidates=CANDS, timer=FakeTimer({"a": 1.0, "b": 2.0, "associative": 3.0}), kernel_hash="k")
        assert t.cache_dir == str(tmp_path / "xdg" / "mamba_jax" / "scan_autotune")  # on by default
        assert t.choose(FakeBench({}), "fwd").name == "a" and len(os.listdir(t.cache_dir)) == 1
        monkeypatch.setenv(at.ENV_PIN, "b")
        timer = FakeTimer({})
        assert at.configure(candidates=CANDS, timer=timer).choose(FakeBench({}), "fwd").name == "b"
        monkeypatch.delenv(at.ENV_PIN)
        monkeypatch.setenv(at.ENV_ENABLED, "0")
        off = at.configure(timer=timer)
        assert off.choose(FakeBench({}), "fwd+bwd") == at.DEFAULT_CANDIDATES[0] and timer.calls == []
        assert at.DEFAULT_CANDIDATES[0].name == at.FIXED_CHOICE
        # An unwritable cache folder: one warning line, the choice holds in the process.
        monkeypatch.delenv(at.ENV_ENABLED)
        (tmp_path / "file").write_text("")
        with caplog.at_level(logging.WARNING, logger=at.__name__):
            t = at.configure(candidates=CANDS, timer=FakeTimer({"a": 1.0, "b": 2.0, "associative": 3.0}),
                             cache_dir=str(tmp_path / "file" / "sub"), kernel_hash="k")
            assert t.choose(FakeBench({}), "fwd").name == "a"
        assert "cannot write the autotune cache" in caplog.text and "Not a directory" in caplog.text
    finally:
        at.configure()


def _arrays(b, l, e=8, n=4, seed=0):
    rng = np.random.default_rng(seed)
    r = lambda *s: jnp.asarray(rng.standard_normal(s), jnp.float32)
    return r(b, l, e), 0.5 * r(b, l, e), -jnp.exp(0.5 * r(e, n)), r(b, l, n), r(b, l, n)


def test_signature_buckets_lengths_and_follows_the_scan_sharding():
    st = sa.AutoStatic(True, False, None)
    sd = lambda *shape: jax.ShapeDtypeStruct(shape, jnp.float32)
    bench = lambda b, l, st=st: sa.AutoBench((sd(b, l, 8), sd(b, l, 8), sd(8, 4), sd(b, l, 4), sd(b, l, 4))
                                              + (None,) * 4, st)
    assert at.length_bucket(16000) == 16384 and at.measured_length(16000) == 16383 and at.length_bucket(1) == 1
    assert bench(4, 9000).signature == bench(4, 16384).signature != bench(4, 8192).signature
    assert bench(4, 9000).length == 16383 and bench(4, 9000).shapes[0] == ((4, 16383, 8), jnp.float32)
    # Under a ScanSharding over 2 devices the kernel runs per device on B / 2 rows: those are measured; without
    # one (the kernel then runs on the whole batch on each device) the global batch is.
    mesh = jax.sharding.AbstractMesh((2,), ("data",))
    sharded = bench(4, 100, sa.AutoStatic(True, False, ss.ScanSharding(mesh, "data")))
    assert sharded.shapes[0][0] == (2, 127, 8) and sharded.signature == bench(2, 100).signature
    assert bench(3, 100, sa.AutoStatic(True, False, ss.ScanSharding(mesh, "data"))).shapes[0][0] == (
        3, 127, 8)  # an indivisible batch runs unsharded


def test_auto_policy_off_the_gpu_does_not_measure(monkeypatch):
    at.configure(timer=FakeTimer({}), enable_on_cpu=False)
    try:
        for backend, want in (("cpu", "sequential"), ("tpu", "associative"), ("gpu", "auto")):
            monkeypatch.setattr(jax, "default_backend", lambda b=backend: b)
            assert ss._resolve_impl("auto") == want
        monkeypatch.setattr(jax, "default_backend", lambda: "cpu")
        at.configure(enable_on_cpu=True)
        assert ss._resolve_impl("auto") == "auto"
    finally:
        at.configure()


def test_inference_uses_the_forward_winner_and_training_the_forward_backward_one(caplog):
    """Through selective_scan under jit: the custom_vjp's primal rule (not differentiated) takes the forward-only
    winner, its fwd rule (differentiated) the forward+backward winner; a planted wrong candidate, the fastest in
    both modes, is rejected and never traced into the program."""
    traced = []

    def recording(name, impl):
        def fn(*args, **kw):
            traced.append(name)
            out = ss.selective_scan(*args[:8], **kw, impl=impl)
            return out * 1.01 if name == "wrong" else out

        return at.Candidate(name, name, fn=fn)

    cands = (recording("wrong", "sequential"), recording("seq", "sequential"), at.REFERENCE)
    timer = FakeTimer({"wrong": 0.1, ("seq", "fwd"): 1.0, ("seq", "fwd+bwd"): 3.0, "associative": 2.0})
    at.configure(candidates=cands, timer=timer, enable_on_cpu=True, cache_dir=None, repeats=1)
    try:
        u, dl, A, B, C = _arrays(2, 13)
        scan = lambda u, impl: ss.selective_scan(u, dl, A, B, C, delta_softplus=True, impl=impl)
        with caplog.at_level(logging.WARNING, logger=at.__name__):
            y = jax.jit(lambda u: scan(u, "auto"))(u)
        assert [m for _, m in timer.calls] == ["fwd", "fwd"]  # inference: forward only, wrong not timed
        g = jax.jit(jax.grad(lambda u: jnp.sum(jnp.sin(scan(u, "auto")))))(u)
        assert timer.calls[2:] == [("seq", "fwd+bwd"), ("associative", "fwd+bwd")]
        assert len(caplog.records) == 1 and "candidate wrong rejected for u(2,L<=16,8)" in caplog.text
        # What the programs contain (the choices are cached now: tracing runs no measurement).
        traced.clear()
        jax.jit(lambda u: scan(u, "auto")).trace(u)
        assert traced == ["seq"]
        traced.clear()
        jax.jit(jax.grad(lambda u: jnp.sum(scan(u, "auto")))).trace(u)
        assert traced == []  # the associative path, no recording candidate
        np.testing.assert_allclose(y, scan(u, "sequential"), rtol=1e-5, atol=1e-5)
        g_ref = jax.grad(lambda u: jnp.sum(jnp.sin(scan(u, "sequential"))))(u)
        np.testing.assert_allclose(g, g_ref, rtol=1e-4, atol=1e-5)
    finally:
        at.configure()


TWO_PROCESSES = textwrap.dedent("""
    import json, sys
    import jax, jax.numpy as jnp
    pid = int(sys.argv[1])
    jax.distributed.initialize(coordinator_address=sys.argv[2], num_processes=2, process_id=pid)
    from mamba_jax.ops import scan_autotune as at
    from mamba_jax.ops.selective_scan import selective_scan

    calls = []
    def timer(fn, repeats, *, name, mode):  # process 1's timings would pick the other candidate
        fn()
        calls.append(name)
        return {"sequential": 1.0, "associative": 2.0}[name] * (1 if pid == 0 else -1)

    cands = (at.Candidate("sequential", "sequential"), at.REFERENCE)
    at.configure(candidates=cands, timer=timer, enable_on_cpu=True, cache_dir=sys.argv[3], repeats=1)
    ks = jax.random.split(jax.random.key(0), 5)
    u, dl, B, C = (jax.random.normal(k, (1, 9, 8) if i < 2 else (1, 9, 4)) for i, k in enumerate(ks[:4]))
    A = -jnp.exp(jax.random.normal(ks[4], (8, 4)))
    y = jax.jit(lambda u: selective_scan(u, dl, A, B, C, impl="auto"))(u)
    print("RESULT", json.dumps(dict(choice=list(at.get_tuner()._choices.values()), calls=calls,
                                    files=len(__import__("os").listdir(sys.argv[3])) if pid == 0 else None)))
""")


def test_two_processes_use_process_0s_choice(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_") or k == "JAX_COMPILATION_CACHE_DIR"}
    env.update(JAX_PLATFORMS="cpu", PYTHONPATH=REPO)
    for pid in (0, 1):
        (tmp_path / f"cache{pid}").mkdir()
    # Process 1 has its own cache holding the other choice for the same key: it must not be read.
    procs = [subprocess.Popen([sys.executable, "-c", TWO_PROCESSES, str(pid), f"127.0.0.1:{port}",
                               str(tmp_path / f"cache{pid}")], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for pid in (0, 1)]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), "\n".join(o[-3000:] for o in outs)
    res = [json.loads(next(x for x in o.splitlines() if x.startswith("RESULT"))[7:]) for o in outs]
    assert res[0]["choice"] == res[1]["choice"] == ["sequential"]
    assert res[0]["calls"] == ["sequential", "associative"] and res[1]["calls"] == []  # only process 0 measured
    assert res[0]["files"] == 1 and os.listdir(tmp_path / "cache1") == []  # only process 0 writes the cache


@pytest.mark.gpu
def test_auto_on_gpu_checks_and_times_the_kernel_candidates(tmp_path, caplog):
    """The real candidates (kernel block configs and associative) on the GPU: every kernel candidate passes the
    check at a ragged length, and the scan with the choice matches the associative path."""
    at.configure(cache_dir=str(tmp_path), repeats=2)
    try:
        u, dl, A, B, C = _arrays(2, 1000, e=64, n=16)
        f = lambda u, impl: ss.selective_scan(u, dl, A, B, C, D=A[:, 0], z=u, delta_softplus=True, impl=impl)
        with caplog.at_level(logging.WARNING, logger=at.__name__):
            g = jax.jit(jax.grad(lambda u: jnp.sum(jnp.sin(f(u, "auto")))))(u)
            y = jax.jit(lambda u: f(u, "auto"))(u)
        assert not caplog.records, caplog.text
        (times,) = [t for k, t in at.get_tuner().measurements.items() if k.endswith("|fwd+bwd")]
        assert set(times) == {c.name for c in at.DEFAULT_CANDIDATES}
        np.testing.assert_allclose(y, f(u, "associative"), rtol=1e-4, atol=1e-4)
        g_ref = jax.grad(lambda u: jnp.sum(jnp.sin(f(u, "associative"))))(u)
        np.testing.assert_allclose(g, g_ref, rtol=1e-3, atol=1e-3)
        assert len(os.listdir(tmp_path)) == 2
    finally:
        at.configure()


@pytest.mark.slow  # ~65 CPU-s: four kernel candidates' forward + backward in interpret mode off the GPU
def test_the_kernel_candidates_pass_the_check_at_a_ragged_length():
    """The real candidates (the kernel's block configs, compiled on a GPU, interpret mode elsewhere) against the
    associative path at L = 63 (bucket 64): all pass, all are timed, and the choice runs."""
    at.configure(enable_on_cpu=True, cache_dir=None, repeats=1)
    try:
        u, dl, A, B, C = _arrays(2, 40, e=32, n=16)
        f = lambda u, impl: ss.selective_scan(u, dl, A, B, C, D=A[:, 0], z=u, delta_softplus=True, impl=impl)
        g = jax.jit(jax.grad(lambda u: jnp.sum(jnp.sin(f(u, "auto")))))(u)
        (verdicts,) = at.get_tuner().verdicts.values()
        assert verdicts == {c.name: None for c in at.DEFAULT_CANDIDATES}
        (times,) = at.get_tuner().measurements.values()
        assert set(times) == {c.name for c in at.DEFAULT_CANDIDATES}
        g_ref = jax.grad(lambda u: jnp.sum(jnp.sin(f(u, "associative"))))(u)
        np.testing.assert_allclose(g, g_ref, rtol=1e-4, atol=1e-4)
    finally:
        at.configure()
