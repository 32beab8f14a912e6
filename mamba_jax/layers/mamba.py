"""The Mamba-1 mixer (mamba_ssm v1.x ``Mamba``) and the bidirectional "v2" mixer of Vision Mamba.

Mamba: Gu & Dao, "Mamba: Linear-Time Sequence Modeling with Selective State Spaces", arXiv 2312.00752.
BiMamba v2: Zhu et al., "Vision Mamba", arXiv 2401.09417 (as vendored by Mamba-TasNet and Mamba-ASR).

Forward pass for ``x [B, L, D]`` (docs/mamba.md)::

    x, z  = split(in_proj(x))                     # [B, L, E] each, E = expand * D
    x     = silu(causal_depthwise_conv(x))        # k = d_conv
    dt, Bs, Cs = split(x_proj(x), [R, N, N])
    dt    = dt @ dt_proj.kernel                   # bias is applied inside the scan, before softplus
    y     = selective_scan(x, dt, A=-exp(A_log), Bs, Cs, D, z, delta_bias=dt_proj.bias, softplus)
    out   = out_proj(y)

The v2 mixer shares ``in_proj``/``out_proj`` (and z) and runs a second inner branch with its own
``conv1d_b, x_proj_b, dt_proj_b, A_b_log, D_b`` on the time-reversed ``(x, z)``; the two outputs are
averaged before ``out_proj`` (docs/mamba.md). Parameter names follow the PyTorch state_dict keys.

``lengths`` (int32 ``[B]``, optional) marks a right-padded batch: row ``b`` is valid at ``t < lengths[b]``.
The causal branch is exact there whatever the padding holds; the reversed branch reverses each row within
its length (``ops.padding.reverse_padded``), so it starts at the row's true end as the unpadded call does.
Outputs at padded positions are zeroed. Without ``lengths`` the computation is the original one (the
original flips the whole padded sequence, so its outputs depend on the padding).
"""

from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from mamba_jax.layers.conv import CausalConv1d
from mamba_jax.layers.init import torch_default, uniform
from mamba_jax.ops.padding import mask_padding, reverse_padded
from mamba_jax.ops.selective_scan import Impl, ScanSharding, selective_scan
from mamba_jax.typing import Array, Float, Int


@dataclasses.dataclass(frozen=True)
class MambaConfig:
    """Hyperparameters of one mixer; defaults are mamba_ssm's (docs/mamba.md)."""

    d_model: int
    d_state: int = 16
    d_conv: int = 4
    expand: int = 2
    dt_rank: int | str = "auto"
    dt_min: float = 1e-3
    dt_max: float = 0.1
    dt_init_floor: float = 1e-4
    dt_scale: float = 1.0
    conv_bias: bool = True
    bias: bool = False

    @property
    def d_inner(self) -> int:
        return self.expand * self.d_model

    @property
    def rank(self) -> int:
        return math.ceil(self.d_model / 16) if self.dt_rank == "auto" else int(self.dt_rank)


class MambaState(NamedTuple):
    """Recurrent state of one unidirectional mixer: conv inputs ``[B, K-1, E]`` and SSM state ``[B, E, N]`` (fp32)."""

    conv: jax.Array
    ssm: jax.Array


def _dt_bias_init(cfg: MambaConfig):
    """Inverse softplus of dt ~ exp(U(log dt_min, log dt_max)), clamped at dt_init_floor."""

    def init(key, shape, dtype=jnp.float32):
        u = jax.random.uniform(key, shape, jnp.float32)
        dt = jnp.exp(u * (math.log(cfg.dt_max) - math.log(cfg.dt_min)) + math.log(cfg.dt_min))
        dt = jnp.maximum(dt, cfg.dt_init_floor)
        return (dt + jnp.log(-jnp.expm1(-dt))).astype(dtype)

    return init


class Branch(NamedTuple):
    """The parameters of one scan direction (the v2 mixer has two): conv, ``x_proj``, ``dt_proj``, ``A_log``, ``D``."""

    conv1d: CausalConv1d
    x_proj: nnx.Linear
    dt_proj: nnx.Linear
    A_log: nnx.Param
    D: nnx.Param


def _in_proj(cfg: MambaConfig, dtype, rngs: nnx.Rngs) -> nnx.Linear:
    d, e = cfg.d_model, cfg.d_inner
    return nnx.Linear(d, 2 * e, use_bias=cfg.bias, kernel_init=torch_default(d), bias_init=nnx.initializers.zeros,
                      dtype=dtype, rngs=rngs)


def _out_proj(cfg: MambaConfig, n_layer: int, dtype, rngs: nnx.Rngs) -> nnx.Linear:
    e = cfg.d_inner
    bound = 1.0 / math.sqrt(e) / math.sqrt(n_layer)  # kaiming_uniform(a=sqrt 5) then / sqrt(n_layer)
    return nnx.Linear(e, cfg.d_model, use_bias=cfg.bias, kernel_init=uniform(bound), bias_init=nnx.initializers.zeros,
                      dtype=dtype, rngs=rngs)


def _make_branch(cfg: MambaConfig, dtype, rngs: nnx.Rngs) -> Branch:
    """A direction's parameters, drawn in the order of mamba_ssm's constructor."""
    e, n, r = cfg.d_inner, cfg.d_state, cfg.rank
    conv1d = CausalConv1d(e, cfg.d_conv, use_bias=cfg.conv_bias, rngs=rngs)
    x_proj = nnx.Linear(e, r + 2 * n, use_bias=False, kernel_init=torch_default(e), dtype=dtype, rngs=rngs)
    dt_proj = nnx.Linear(r, e, use_bias=True, kernel_init=uniform(r ** -0.5 * cfg.dt_scale),
                         bias_init=_dt_bias_init(cfg), dtype=dtype, rngs=rngs)
    a_log = jnp.log(jnp.broadcast_to(jnp.arange(1, n + 1, dtype=jnp.float32), (e, n)))  # S4D-real
    return Branch(conv1d, x_proj, dt_proj, nnx.Param(a_log), nnx.Param(jnp.ones((e,), jnp.float32)))


def split_in_proj(in_proj: nnx.Linear, x: Float[Array, "B *Ls D"]
                  ) -> tuple[Float[Array, "B *Ls E"], Float[Array, "B *Ls E"]]:
    """``(x, z)``: the two halves of ``in_proj(x)`` (also for a single step ``[B, D]``)."""
    xz = in_proj(x)  # [B, L, 2E]
    e = xz.shape[-1] // 2
    return xz[..., :e], xz[..., e:]


def ssm_params(cfg: MambaConfig, branch: Branch, x_conv: Float[Array, "B L E"]):
    """From the conv output, the scan's ``(delta, B, C)`` and ``A, D, delta_bias`` of one direction."""
    x_dbl = branch.x_proj(x_conv)  # [B, L, R + 2N]
    r, n = cfg.rank, cfg.d_state
    dt, b, c = x_dbl[..., :r], x_dbl[..., r:r + n], x_dbl[..., r + n:]
    dt = dt @ branch.dt_proj.kernel[...].astype(dt.dtype)  # [B, L, E]; bias goes into the scan
    a = -jnp.exp(branch.A_log[...].astype(jnp.float32))  # [E, N]
    return dt, b, c, a, branch.D[...], branch.dt_proj.bias[...]


def _run_branch(cfg: MambaConfig, branch: Branch, x: Float[Array, "B L E"], z: Float[Array, "B L E"], impl: Impl,
                sharding: ScanSharding | None, state: MambaState | None = None):
    """conv -> silu -> selective scan (gated by ``z``) of one direction; with ``state`` also the new state."""
    if state is None:
        x_conv = branch.conv1d(x)
        new_conv = None
    else:
        x_conv, new_conv = branch.conv1d.call_with_state(x, state.conv)
    x_conv = jax.nn.silu(x_conv)
    dt, b, c, a, d_skip, dt_bias = ssm_params(cfg, branch, x_conv)
    out = selective_scan(x_conv, dt, a, b, c, D=d_skip, z=z, delta_bias=dt_bias, delta_softplus=True,
                         return_last_state=state is not None,
                         initial_state=None if state is None else state.ssm, impl=impl, sharding=sharding)
    if state is None:
        return out, None
    y, h = out
    return y, MambaState(new_conv.astype(jnp.float32), h)


def _init_mixer(mixer: nnx.Module, cfg: MambaConfig, *, n_layer: int, dtype, scan_impl: Impl, rngs: nnx.Rngs
                ) -> None:
    """The attributes ``Mamba`` and ``BiMambaV2`` share, drawn in mamba_ssm's order: ``in_proj``, the forward
    branch (``conv1d, x_proj, dt_proj, A_log, D``), ``out_proj``; the scan settings."""
    mixer.cfg = cfg
    mixer.scan_impl = scan_impl
    mixer.scan_sharding = None  # ScanSharding | None: the trainer's data-parallel mesh, see set_scan_sharding
    mixer.in_proj = _in_proj(cfg, dtype, rngs)
    mixer.conv1d, mixer.x_proj, mixer.dt_proj, mixer.A_log, mixer.D = _make_branch(cfg, dtype, rngs)
    mixer.out_proj = _out_proj(cfg, n_layer, dtype, rngs)


class Mamba(nnx.Module):
    """Unidirectional Mamba mixer, ``[B, L, D] -> [B, L, D]``, with step-by-step and chunked-state inference.

    ``n_layer`` rescales ``out_proj`` by ``1/sqrt(n_layer)`` after its torch-default init, as mamba_ssm's
    ``_init_weights`` does (one residual per layer). ``dtype`` is the matmul compute dtype (None: fp32);
    parameters, the conv-state, the scan and the SSM state stay fp32.
    """

    def __init__(self, cfg: MambaConfig, *, n_layer: int = 1, dtype=None, scan_impl: Impl = "auto",
                 rngs: nnx.Rngs):
        _init_mixer(self, cfg, n_layer=n_layer, dtype=dtype, scan_impl=scan_impl, rngs=rngs)

    @property
    def branch(self) -> Branch:
        return Branch(self.conv1d, self.x_proj, self.dt_proj, self.A_log, self.D)

    def __call__(self, x: Float[Array, "B L D"], lengths: Int[Array, "B"] | None = None, *,
                 impl: Impl | None = None) -> Float[Array, "B L D"]:
        """``x [B, L, D] -> [B, L, D]``; with ``lengths`` positions ``t >= lengths[b]`` come out zero."""
        xi, z = split_in_proj(self.in_proj, x)
        y, _ = _run_branch(self.cfg, self.branch, xi, z, impl or self.scan_impl, self.scan_sharding)
        return mask_padding(self.out_proj(y), lengths)

    # ---- recurrent inference -------------------------------------------------------------------------
    def init_state(self, batch: int) -> MambaState:
        cfg = self.cfg
        return MambaState(jnp.zeros((batch, cfg.d_conv - 1, cfg.d_inner), jnp.float32),
                          jnp.zeros((batch, cfg.d_inner, cfg.d_state), jnp.float32))

    def call_with_state(self, x: Float[Array, "B L D"], state: MambaState, *, impl: Impl | None = None
                        ) -> tuple[Float[Array, "B L D"], MambaState]:
        """Process a piece of a longer sequence given the state after the previous piece."""
        xi, z = split_in_proj(self.in_proj, x)
        y, state = _run_branch(self.cfg, self.branch, xi, z, impl or self.scan_impl, self.scan_sharding, state)
        return self.out_proj(y), state

    def step(self, x: Float[Array, "B D"], state: MambaState) -> tuple[Float[Array, "B D"], MambaState]:
        """One time step, O(1) in the sequence length: ``call_with_state`` on a one-frame piece, so the
        recurrence is the scan's own ("sequential", the exact fp32 path whatever ``scan_impl`` is)."""
        y, state = self.call_with_state(x[:, None, :], state, impl="sequential")
        return y[:, 0], state


class BiMambaV2(nnx.Module):
    """Bidirectional v2 mixer: shared in_proj/out_proj/z, a second branch on the reversed sequence, averaged.

    Bidirectional, so it has no step or streaming form (the reverse scan needs the whole sequence).
    Parameters: those of :class:`Mamba` plus the reverse branch ``conv1d_b, x_proj_b, dt_proj_b, A_b_log,
    D_b`` (the PyTorch names); 6·D² + 8·D·R + 220·D for expand 2, N 16, K 4 (docs/mamba.md).
    """

    def __init__(self, cfg: MambaConfig, *, n_layer: int = 1, dtype=None, scan_impl: Impl = "auto",
                 rngs: nnx.Rngs):
        _init_mixer(self, cfg, n_layer=n_layer, dtype=dtype, scan_impl=scan_impl, rngs=rngs)
        self.conv1d_b, self.x_proj_b, self.dt_proj_b, self.A_b_log, self.D_b = _make_branch(cfg, dtype, rngs)

    @property
    def forward_branch(self) -> Branch:
        return Branch(self.conv1d, self.x_proj, self.dt_proj, self.A_log, self.D)

    @property
    def backward_branch(self) -> Branch:
        return Branch(self.conv1d_b, self.x_proj_b, self.dt_proj_b, self.A_b_log, self.D_b)

    def __call__(self, x: Float[Array, "B L D"], lengths: Int[Array, "B"] | None = None, *,
                 impl: Impl | None = None) -> Float[Array, "B L D"]:
        """``x [B, L, D] -> [B, L, D]``; with ``lengths`` the reversed branch reverses each row within its
        length and positions ``t >= lengths[b]`` come out zero (module docstring)."""
        impl = impl or self.scan_impl
        xi, z = split_in_proj(self.in_proj, x)
        y_f, _ = _run_branch(self.cfg, self.forward_branch, xi, z, impl, self.scan_sharding)
        y_b, _ = _run_branch(self.cfg, self.backward_branch, reverse_padded(xi, lengths), reverse_padded(z, lengths),
                             impl, self.scan_sharding)
        return mask_padding(self.out_proj(0.5 * y_f + 0.5 * reverse_padded(y_b, lengths)), lengths)


def set_scan_sharding(model: nnx.Module, sharding: ScanSharding | None) -> None:
    """Gives every Mamba mixer inside ``model`` the data-parallel ``sharding`` of its scans (in place; the
    trainer does this before splitting the model). See ``ops.selective_scan.ScanSharding``."""
    for _, module in nnx.iter_modules(model):
        if isinstance(module, (Mamba, BiMambaV2)):
            module.scan_sharding = sharding
