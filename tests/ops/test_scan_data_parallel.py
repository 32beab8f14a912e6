"""``selective_scan(impl="pallas", sharding=ScanSharding(mesh, "data"))`` (as the trainer passes it) runs the
kernel per device through ``shard_map``: same values and gradients as without sharding, and no gather of the
batch; an ambient mesh alone changes nothing (the scan never looks for one). Two fake CPU devices in a
subprocess, the kernel in interpret mode."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

SCRIPT = textwrap.dedent("""
    import jax, jax.numpy as jnp, numpy as np
    from jax.sharding import AxisType, NamedSharding, PartitionSpec as P
    from flax import nnx
    from mamba_jax.layers.mamba import Mamba, MambaConfig, set_scan_sharding
    from mamba_jax.ops.selective_scan import ScanSharding, selective_scan

    b, l, e, n = 4, 24, 8, 4
    ks = jax.random.split(jax.random.key(0), 9)
    r = lambda k, *s: jax.random.normal(k, s, jnp.float32)
    u, dl, z = r(ks[0], b, l, e), r(ks[1], b, l, e), r(ks[2], b, l, e)
    B, C, h0 = r(ks[3], b, l, n), r(ks[4], b, l, n), r(ks[5], b, e, n)
    A, D, bias = -jnp.exp(0.5 * r(ks[6], e, n)), r(ks[7], e), r(ks[8], e)

    def loss_with(sharding):
        def loss(u, dl, B, C, z, h0, A, D, bias):
            y, last = selective_scan(u, dl, A, B, C, D=D, z=z, delta_bias=bias, delta_softplus=True,
                                     return_last_state=True, initial_state=h0, impl="pallas", sharding=sharding)
            return jnp.sum(jnp.sin(y)) + jnp.sum(last ** 2), (y, last)
        return jax.jit(jax.value_and_grad(loss, argnums=tuple(range(9)), has_aux=True))

    f_ref = loss_with(None)
    args = (u, dl, B, C, z, h0, A, D, bias)
    (_, (y_ref, s_ref)), g_ref = f_ref(*args)

    mesh = jax.make_mesh((2,), ("data",), axis_types=(AxisType.Auto,))
    f = loss_with(ScanSharding(mesh, "data"))
    rows = NamedSharding(mesh, P("data"))
    sharded = tuple(jax.device_put(x, rows) for x in args[:6]) + args[6:]
    assert "shard_map" in str(jax.make_jaxpr(f)(*sharded))
    (_, (y, s)), g = f(*sharded)
    # An indivisible batch (3 rows on 2 devices) falls back to the plain kernel call.
    assert "shard_map" not in str(jax.make_jaxpr(f)(*(x[:3] for x in args[:6]), *args[6:]))
    # The ambient mesh is not read: without the argument, no shard_map even inside jax.set_mesh.
    with jax.set_mesh(mesh):
        assert "shard_map" not in str(jax.make_jaxpr(f_ref)(*sharded))
    # A model's mixers get the sharding from the trainer through set_scan_sharding.
    m = Mamba(MambaConfig(d_model=4, d_state=4), scan_impl="pallas", rngs=nnx.Rngs(0))
    x = jax.device_put(r(ks[0], b, l, 4), rows)
    assert "shard_map" not in str(jax.make_jaxpr(lambda x: m(x))(x))
    set_scan_sharding(m, ScanSharding(mesh, "data"))
    assert "shard_map" in str(jax.make_jaxpr(lambda x: m(x))(x))
    np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(s, s_ref, rtol=1e-5, atol=1e-6)
    for got, want in zip(g, g_ref):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    assert y.sharding.spec[0] == "data"
    print("DATA_PARALLEL_OK")
""")


def test_pallas_scan_under_data_mesh_uses_shard_map():
    flags = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=2".strip()
    env = dict(os.environ, PYTHONPATH=REPO, XLA_FLAGS=flags, JAX_PLATFORMS="cpu")
    p = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=600)
    assert "DATA_PARALLEL_OK" in p.stdout, p.stdout[-3000:] + p.stderr[-3000:]
