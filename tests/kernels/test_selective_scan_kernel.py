"""One shared suite for every selective-scan backend.

Backends: the pure-JAX paths of ``mamba_jax.ops.selective_scan`` ("sequential", "associative"), the Pallas
kernel in interpret mode on CPU ("pallas-interpret"), and the compiled kernel ("pallas-gpu", marked ``gpu``).
Each backend is checked against the independent float64 numpy recurrence of tests/scan_reference.py: outputs and last state
elementwise, and every input's gradient through a directional derivative <grad_x, v> against a central finite
difference of the float64 recurrence. The kernel's gradients are also compared elementwise with jax.grad of
the pure-JAX sequential path. Separate tests lower forward and backward for CUDA on CPU, and run the kernel
under vmap and inside shard_map (fake CPU devices, in a subprocess).
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
import subprocess
import sys
import textwrap
import zlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mamba_jax.ops.selective_scan import selective_scan as ops_scan
from mamba_jax_kernels.selective_scan import BlockConfig
from mamba_jax_kernels.selective_scan import selective_scan as kernel_scan
from tests.scan_reference import numpy_scan

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OPTIONAL = ("D", "z", "delta_bias", "initial_state")
DIFF_ORDER = ("u", "delta", "A", "B", "C") + OPTIONAL


# ------------------------------------------------------------------------------------------------ cases


@dataclasses.dataclass(frozen=True)
class Case:
    name: str
    b: int
    l: int
    e: int
    n: int
    g: int | None  # None: B, C are [B, L, N]
    dtype: str = "float32"
    opts: tuple[str, ...] = OPTIONAL  # which optional inputs are present
    softplus: bool = True
    chunk: int = 64  # kernel's time-parallel chunk length (0: automatic), and the pure-JAX chunk_size
    block_d: int = 32  # kernel's channels per program (before fitting to E / G)
    num_warps: int = 4
    block_t: int = 8  # kernel's time tile


CASES = [
    Case("L1", 1, 1, 16, 16, None),
    Case("L125-E72", 2, 125, 72, 16, None),  # block_d 16 -> 8 (largest power of two dividing 72)
    Case("L372-zD", 1, 372, 8, 16, None, opts=("z", "D"), softplus=False),
    Case("N1-G2-bare", 2, 37, 32, 1, 2, opts=(), softplus=False, chunk=8),
    Case("G4-chunk16", 2, 50, 64, 16, 4, opts=("D", "delta_bias", "initial_state"), chunk=16),
    Case("N3-G3", 1, 29, 24, 3, 3, opts=("z", "initial_state"), chunk=8),  # N padded to 4 inside
    Case("bf16", 2, 64, 32, 16, None, dtype="bfloat16", chunk=16),
    Case("bf16-G2-L71", 1, 71, 16, 16, 2, dtype="bfloat16", opts=("z", "D", "delta_bias"), chunk=32),
    # Time tile 4; chunks of 6 tiles over 13 tiles: the last chunk runs 5 tiles wholly past L.
    Case("L50-T4-chunk24", 1, 50, 32, 16, None, chunk=24, block_t=4, block_d=16),
    Case("L40-T16-one-chunk", 2, 40, 32, 16, 2, opts=("z", "D", "initial_state"), chunk=0, block_t=16),
]

# Normalised max error: max|x - ref| / max(max|ref|, 1). fp32 accumulates rounding over L steps.
TOL = {"float32": {"fwd": 2e-5, "grad": 2e-4}, "bfloat16": {"fwd": 1.5e-2, "grad": 4e-2}}


def tol(case: Case, kind: str) -> float:
    return TOL[case.dtype][kind] * max(1.0, (case.l / 128) ** 0.5)


@functools.lru_cache(maxsize=None)
def inputs(case: Case) -> tuple[dict[str, jax.Array], jax.Array, jax.Array]:
    """Inputs (u, delta, z, B, C in the case dtype; A, D, bias, initial_state fp32) and cotangents."""
    dt = jnp.dtype(case.dtype)
    rng = np.random.default_rng(zlib.crc32(case.name.encode()))  # numpy RNG: no per-shape jit compiles
    normal = lambda *shape: rng.standard_normal(shape).astype(np.float32)
    bc = (case.b, case.l, case.n) if case.g is None else (case.b, case.l, case.g, case.n)
    ble = (case.b, case.l, case.e)
    x = dict(
        u=normal(*ble),
        delta=0.5 * normal(*ble),
        A=-np.exp(0.5 * normal(case.e, case.n)),
        B=normal(*bc),
        C=normal(*bc),
        D=normal(case.e),
        z=normal(*ble),
        delta_bias=0.3 * normal(case.e),
        initial_state=normal(case.b, case.e, case.n),
    )
    if not case.softplus:
        x["delta"] = np.abs(x["delta"])  # raw delta is a step size: keep it positive
    low = ("u", "delta", "B", "C", "z")  # in the case dtype; A, D, bias, initial_state stay fp32
    x = {k: jnp.asarray(v, dt if k in low else jnp.float32) for k, v in x.items()
         if k not in OPTIONAL or k in case.opts}
    ct_out = jnp.asarray(normal(*ble), dt)
    ct_last = jnp.asarray(normal(case.b, case.e, case.n))
    return x, ct_out, ct_last


def call(backend: str, case: Case, x: dict):
    kw = dict(delta_softplus=case.softplus, return_last_state=True)
    args = (x["u"], x["delta"], x["A"], x["B"], x["C"])
    opt = {name: x[name] for name in OPTIONAL if name in x}
    if backend in ("sequential", "associative"):
        # A small chunk keeps the CPU compile of the pure-JAX VJP short.
        return ops_scan(*args, **opt, **kw, impl=backend, chunk_size=min(case.chunk or 16, 16))
    interpret = backend == "pallas-interpret"
    return kernel_scan(*args, **opt, **kw, interpret=interpret, block_config=BlockConfig(
        block_d=case.block_d, block_d_bwd=case.block_d // 2, block_t=case.block_t, chunk=case.chunk,
        num_warps_fwd=case.num_warps, num_warps_bwd=case.num_warps))


@functools.lru_cache(maxsize=None)
def run(backend: str, case: Case):
    """(out, last, grads): grads is the VJP of (out, last) against the case's random cotangents."""
    x, ct_out, ct_last = inputs(case)

    @jax.jit
    def f(x):
        (out, last), vjp = jax.vjp(lambda x: call(backend, case, x), x)
        (grads,) = vjp((ct_out, ct_last))
        return out, last, grads

    return jax.tree.map(np.asarray, f(x))


@functools.lru_cache(maxsize=None)
def numpy_reference(case: Case):
    """Float64 outputs and, per input, (direction v, central finite difference of <ct, f(x + s v)>)."""
    x, ct_out, ct_last = inputs(case)
    x64 = {k: np.asarray(v, np.float64) for k, v in x.items()}
    cto, ctl = np.asarray(ct_out, np.float64), np.asarray(ct_last, np.float64)
    fn = lambda x: numpy_scan(**x, softplus=case.softplus)
    loss = lambda x: sum(float(np.sum(c * o)) for c, o in zip((cto, ctl), fn(x)))
    rng = np.random.default_rng(0)
    fd = {}
    for name in x64:
        v = rng.standard_normal(x64[name].shape)
        eps = 1e-6
        plus, minus = dict(x64), dict(x64)
        plus[name], minus[name] = x64[name] + eps * v, x64[name] - eps * v
        fd[name] = (v, (loss(plus) - loss(minus)) / (2 * eps))
    return fn(x64), fd


def err(a, ref) -> float:
    a, ref = np.asarray(a, np.float64), np.asarray(ref, np.float64)
    return float(np.max(np.abs(a - ref)) / max(np.max(np.abs(ref)), 1.0))


BACKENDS = ("sequential", "associative", "pallas-interpret", "pallas-gpu")
# The associative path's VJP is slow to compile on CPU and has its own exhaustive tests in tests/ops; here it
# runs on the cheaper half of the cases. Every other backend runs on all of them.
ASSOCIATIVE_CASES = ("L1", "N1-G2-bare", "N3-G3", "bf16")


def backend_cases(backends=BACKENDS):
    return [
        pytest.param(b, c, id=f"{b}-{c.name}", marks=[pytest.mark.gpu] if b == "pallas-gpu" else [])
        for b in backends for c in CASES if b != "associative" or c.name in ASSOCIATIVE_CASES
    ]


# ------------------------------------------------------------------------------------------------ tests


@pytest.mark.parametrize("backend, case", backend_cases())
def test_forward_matches_float64(backend, case):
    out, last, _ = run(backend, case)
    (ref_out, ref_last), _ = numpy_reference(case)
    x, _, _ = inputs(case)
    assert out.dtype == x["u"].dtype and out.shape == ref_out.shape
    assert last.dtype == np.float32 and last.shape == ref_last.shape
    assert err(out, ref_out) < tol(case, "fwd"), err(out, ref_out)
    assert err(last, ref_last) < tol(case, "fwd"), err(last, ref_last)


@pytest.mark.parametrize("backend, case", backend_cases())
def test_vjp_matches_float64_finite_differences(backend, case):
    """<grad_x, v> for each input x against a central difference of the float64 recurrence along v."""
    _, _, grads = run(backend, case)
    _, fd = numpy_reference(case)
    x, _, _ = inputs(case)
    for name, (v, want) in fd.items():
        g = np.asarray(grads[name], np.float64)
        assert g.shape == x[name].shape and grads[name].dtype == x[name].dtype, name
        got = float(np.sum(g * v))
        scale = float(np.linalg.norm(g) * np.linalg.norm(v))
        assert abs(got - want) <= tol(case, "grad") * scale, (name, got, want, scale)


@pytest.mark.parametrize("backend, case", backend_cases(("pallas-interpret", "pallas-gpu")))
def test_kernel_vjp_matches_jax_grad(backend, case):
    """Every cotangent of the kernel, elementwise, against jax.grad of the pure-JAX sequential path."""
    out, last, grads = run(backend, case)
    r_out, r_last, r_grads = run("sequential", case)
    assert err(out, r_out) < tol(case, "fwd")
    for name in r_grads:
        assert grads[name].dtype == r_grads[name].dtype, name
        assert err(grads[name], r_grads[name]) < tol(case, "grad"), (name, err(grads[name], r_grads[name]))


def test_forward_only_path_and_defaults():
    """No VJP (the kernel variant that saves no states), default BlockConfig, no last state, no options."""
    case = Case("plain", 2, 45, 16, 16, None, opts=(), softplus=False)
    x, _, _ = inputs(case)
    out = jax.jit(lambda x: kernel_scan(x["u"], x["delta"], x["A"], x["B"], x["C"]))(x)
    assert out.shape == x["u"].shape
    (ref, _), _ = numpy_reference(case)
    assert err(out, ref) < tol(case, "fwd")


def test_gradient_is_causal():
    """d out_t / d u_s is exactly zero for s > t (and nonzero at s = t)."""
    case = Case("causal", 1, 20, 8, 16, None, opts=("D", "z"), chunk=8)
    x, _, _ = inputs(case)
    t = 11

    def out_t(u):
        y = kernel_scan(u, x["delta"], x["A"], x["B"], x["C"], D=x["D"], z=x["z"], interpret=True,
                        block_config=BlockConfig(chunk=8))
        return jnp.sum(y[:, t])

    g = np.asarray(jax.jit(jax.grad(out_t))(x["u"]))
    assert np.all(g[:, t + 1:] == 0.0)
    assert np.any(g[:, t] != 0.0) and np.any(g[:, :t] != 0.0)


def test_vmap_matches_loop():
    """vmap over an extra leading axis (Pallas adds a grid axis), forward and gradient."""
    case = Case("vmap", 2, 21, 16, 16, None, opts=("z", "D"), chunk=8)
    x, _, _ = inputs(case)
    kw = dict(interpret=True, block_config=BlockConfig(chunk=8))

    def f(u, delta, B, C, z):
        return kernel_scan(u, delta, x["A"], B, C, D=x["D"], z=z, **kw)

    stacked = [x["u"], x["delta"], x["B"], x["C"], x["z"]]
    stacked = [jnp.stack([a, 0.5 * a[::-1] + 0.1]) for a in stacked]  # [2, B, L, ...]
    loss = lambda *a: jnp.sum(jnp.sin(f(*a)))
    with_out = lambda o: (jnp.sum(jnp.sin(o)), o)
    vout, vgrad = jax.jit(jax.vmap(jax.value_and_grad(lambda *a: with_out(f(*a)), argnums=(0, 1, 2),
                                                      has_aux=True)))(*stacked)
    vout = vout[1]
    single = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2)))
    for i in range(2):
        args = [a[i] for a in stacked]
        ref = numpy_scan(**dict(zip(("u", "delta", "B", "C", "z"), args)), A=x["A"], D=x["D"])[0]
        assert err(vout[i], ref) < tol(case, "fwd")
        for gv, gl in zip(vgrad, single(*args)[1]):
            np.testing.assert_allclose(gv[i], gl, rtol=1e-4, atol=1e-4)


_SHARD_MAP_SCRIPT = textwrap.dedent("""
    import jax
    jax.config.update("jax_num_cpu_devices", 2)
    import jax.numpy as jnp, numpy as np
    from jax.sharding import PartitionSpec as P
    from mamba_jax_kernels.selective_scan import BlockConfig, selective_scan
    rng = np.random.default_rng(0)
    b, l, e, n = 4, 19, 16, 16
    r = lambda *s: jnp.asarray(rng.standard_normal(s), jnp.float32)
    u, dl, z, B, C = r(b, l, e), r(b, l, e), r(b, l, e), r(b, l, n), r(b, l, n)
    A, D, bias = -jnp.exp(0.5 * r(e, n)), r(e), r(e)
    def f(u, dl, B, C, z, A, D, bias):
        return selective_scan(u, dl, A, B, C, D=D, z=z, delta_bias=bias, delta_softplus=True, interpret=True,
                              block_config=BlockConfig(chunk=8))
    mesh = jax.make_mesh((2,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
    sharded = jax.shard_map(f, mesh=mesh, in_specs=(P("data"),) * 5 + (P(),) * 3, out_specs=P("data"),
                            check_vma=False)
    args = (u, dl, B, C, z, A, D, bias)
    with_out = lambda o: (jnp.sum(jnp.sin(o)), o)
    vg = lambda g: jax.jit(jax.value_and_grad(lambda *a: with_out(g(*a)), argnums=tuple(range(8)), has_aux=True))
    (_, out_s), gs = vg(sharded)(*args)
    (_, out_r), gr = vg(f)(*args)
    np.testing.assert_allclose(out_s, out_r, rtol=1e-5, atol=1e-5)
    for got, want in zip(gs, gr):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    assert len(out_s.sharding.device_set) == 2
    print("SHARD_MAP_OK")
""")


def test_shard_map_data_parallel():
    """Inside jax.shard_map(check_vma=False) over 2 fake CPU devices: outputs and all gradients match."""
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""),
               JAX_PLATFORMS="cpu", PYTHONWARNINGS="ignore::DeprecationWarning")
    r = subprocess.run([sys.executable, "-c", _SHARD_MAP_SCRIPT], cwd=REPO, env=env, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0 and "SHARD_MAP_OK" in r.stdout, r.stdout[-3000:] + r.stderr[-3000:]


# ------------------------------------------------------------------------------- CUDA lowering on CPU


def _cuda_lowering_text(fn, *args) -> str:
    """Lowers fn for CUDA on a CPU-only machine (abstract H100 device): runs Pallas -> Triton IR."""
    from jax.sharding import AbstractDevice, AbstractMesh

    gpu = AbstractDevice(device_kind="NVIDIA H100", num_cores=None, platform="gpu")
    with jax.sharding.use_abstract_mesh(AbstractMesh((1,), ("x",), abstract_device=gpu)):
        return jax.jit(fn).trace(*args).lower(lowering_platforms=("cuda",)).as_text()


LOWER_CASES = [
    Case("f32-all", 2, 256, 64, 16, None),
    Case("bf16-G2", 2, 256, 64, 16, 2, dtype="bfloat16", opts=("D",), softplus=False),
    Case("E72-N3-L1", 1, 1, 72, 3, None, opts=("z",)),
    Case("bd64-w8-N64-T4", 1, 300, 128, 64, None, chunk=0, block_d=64, num_warps=8, block_t=4),
]


@pytest.mark.parametrize("case", LOWER_CASES, ids=lambda c: c.name)
def test_lowers_for_cuda_forward_and_backward(case):
    x, ct_out, ct_last = inputs(case)
    spec = {k: jax.ShapeDtypeStruct(v.shape, v.dtype) for k, v in x.items()}

    def fwd(x):
        return call("pallas-gpu", case, x)

    def fwd_bwd(x):
        (out, last), vjp = jax.vjp(fwd, x)
        return vjp((ct_out, ct_last))

    txt_f = _cuda_lowering_text(fwd, spec)
    txt_b = _cuda_lowering_text(fwd_bwd, spec)
    # One kernel, or with time chunks a state-only pass first (and likewise in the backward).
    chunked = "selective_scan_fwd_chunk_states" in txt_f
    assert chunked == (case.l > (case.chunk or 64))  # automatic chunks (64 steps at least) at B * E/BD < 512
    assert txt_f.count("__gpu$xla.gpu.triton") == (2 if chunked else 1)
    assert txt_b.count("__gpu$xla.gpu.triton") == (4 if chunked else 2)
    assert "selective_scan_fwd" in txt_b and "selective_scan_bwd" in txt_b
    # Memory: no tensor in either direction's program has B*L*E*N elements or more.
    if case.l > 1:
        big = case.b * case.l * case.e * case.n
        for txt in (txt_f, txt_b):
            for dims in re.findall(r"tensor<((?:\d+x)+)[a-z]", txt):
                assert np.prod([int(d) for d in dims.rstrip("x").split("x")]) < big, dims


def test_benchmark_script_runs():
    """bench/selective_scan.py end to end on one tiny shape (so it cannot rot), with --json output."""
    import json

    cmd = [sys.executable, os.path.join(REPO, "bench", "selective_scan.py"), "--shapes", "1x16x32", "--repeats",
           "1", "--impls", "pallas", "sequential", "--json", "-"]  # fmt: skip
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONWARNINGS="ignore::DeprecationWarning")
    r = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    blob = json.loads(r.stdout[r.stdout.index("\n{") + 1:])
    assert {(row["impl"], row["mode"]) for row in blob["rows"]} == {
        (i, m) for i in ("pallas", "sequential") for m in ("fwd", "fwd+bwd")}
    assert all(row["error"] is None and row["ms"] > 0 for row in blob["rows"])
    # Bytes floors: fwd reads u, delta, z, B, C and writes out; bwd adds 7 [B, L, E] and 2 [B, L, N] arrays in
    # the input dtype plus fp32 dB, dC (S = 1*16*32, T = 1*16*16, bf16).
    s, t = 16 * 32, 16 * 16
    floors = {row["mode"]: row["floor_MB"] * 1e6 for row in blob["rows"]}
    assert floors == {"fwd": pytest.approx(8 * s + 4 * t), "fwd+bwd": pytest.approx(22 * s + 8 * t + 8 * t)}


def test_softplus_accurate_from_minus_30_to_30():
    """delta_softplus in the kernel, forward and backward, against float64 over pre-activations -30..30.

    L = 1, N = 1, u = B = C = 1, D = 0: out = softplus(x), d sum(out)/d delta = sigmoid(x) and d sum(out)/du =
    softplus(x) (the backward's recomputation). Mamba's dt_min 1e-3 is x = -6.9; fp32 log2(1 + exp2(x)) is
    already 6e-5 off there and returns 0 below about -17."""
    e = 512
    x = np.linspace(-30.0, 30.0, e).astype(np.float32)
    ones = jnp.ones((1, 1, 1), jnp.float32)

    def f(u, delta):
        return jnp.sum(kernel_scan(u, delta, -jnp.ones((e, 1)), ones, ones, delta_softplus=True, interpret=True))

    out = np.asarray(jax.jit(lambda d: kernel_scan(jnp.ones((1, 1, e)), d, -jnp.ones((e, 1)), ones, ones,
                                                   delta_softplus=True, interpret=True))(jnp.asarray(x)[None, None]))
    du, ddelta = jax.jit(jax.grad(f, argnums=(0, 1)))(jnp.ones((1, 1, e)), jnp.asarray(x)[None, None])
    x64 = x.astype(np.float64)
    want_sp, want_sig = np.logaddexp(0.0, x64), 1.0 / (1.0 + np.exp(-x64))
    rel = lambda got, want: float(np.max(np.abs(np.asarray(got, np.float64).ravel() - want) / want))
    assert rel(out, want_sp) < 1e-6, rel(out, want_sp)
    assert rel(du, want_sp) < 1e-6, rel(du, want_sp)
    assert rel(ddelta, want_sig) < 1e-6, rel(ddelta, want_sig)


@pytest.mark.parametrize("shape", [(1, 16000, 128, 16), (1, 4000, 1024, 16)], ids=lambda s: "x".join(map(str, s)))
def test_chunk_combine_has_no_while_loop(shape):
    """The chunk boundary states (forward) and state gradients (backward) are combined in log depth: the
    lowered CUDA program of the forward and of forward + backward has no XLA while loop at SepMamba's first
    U-Net level and at (1, 4000, 1024), where the time chunks number 125 and 16."""
    b, l, e, n = shape
    f32 = jnp.float32
    sd = jax.ShapeDtypeStruct
    spec = dict(u=sd((b, l, e), f32), delta=sd((b, l, e), f32), A=sd((e, n), f32), B=sd((b, l, n), f32),
                C=sd((b, l, n), f32), z=sd((b, l, e), f32), D=sd((e,), f32), delta_bias=sd((e,), f32))

    def fwd(x):
        return kernel_scan(x["u"], x["delta"], x["A"], x["B"], x["C"], D=x["D"], z=x["z"],
                           delta_bias=x["delta_bias"], delta_softplus=True, return_last_state=True,
                           interpret=False)

    def fwd_bwd(x):
        outs, vjp = jax.vjp(fwd, x)
        return vjp(jax.tree.map(jnp.ones_like, outs))

    txt_f = _cuda_lowering_text(fwd, spec)
    txt_b = _cuda_lowering_text(fwd_bwd, spec)
    for txt in (txt_f, txt_b):
        assert "selective_scan_fwd_chunk_states" in txt  # time chunks are on at these shapes
        assert "stablehlo.while" not in txt
    assert "selective_scan_bwd_chunk_carry" in txt_b


def test_backward_gets_separate_db_dc_buffers():
    """The dB and dC accumulators are two zero-filled buffers, each aliased to its own output: no kernel call
    in the lowered forward + backward takes the same value twice (which left correctness to XLA's copies)."""
    case = LOWER_CASES[0]
    x, ct_out, ct_last = inputs(case)
    spec = {k: jax.ShapeDtypeStruct(v.shape, v.dtype) for k, v in x.items()}

    def fwd_bwd(x):
        (out, last), vjp = jax.vjp(lambda x: call("pallas-gpu", case, x), x)
        return vjp((ct_out, ct_last))

    calls = re.findall(r"custom_call @__gpu\$xla\.gpu\.triton\(([^)]*)\)", _cuda_lowering_text(fwd_bwd, spec))
    assert len(calls) == 4, len(calls)
    for operands in calls:
        names = [o.strip() for o in operands.split(",")]
        assert len(names) == len(set(names)), names
