"""Streaming separation with the causal SepMamba: audio in chunks of any size, output identical to offline.

The causal SepMamba (mamba_jax/models/sepmamba.py, ``causal=True``) is a U-Net whose Mamba stacks run
forwards only, but whose strided convolutions are unpadded and whose transposed convolutions spread each
frame forwards, so it looks ahead a fixed number of samples. :class:`SeparationStream` carries, for every
layer, exactly the state that the offline pass would have in memory at that point:

* down level i: the last ``k - s`` inputs of the strided conv not yet consumed by a frame, and the
  conv/SSM states of the forward Mamba stack (``MambaStack.call_with_state``);
* the skip connections: the down-level outputs waiting for the up path to reach them (a FIFO);
* up level j and the decoder: the last ``k/s - 1`` input frames of the transposed conv (each output
  position sums the frames that overlap it, so those frames are all that is needed), and the Mamba states.

**Schedule.** With ``k = 16, s = 2`` and three levels, the first ``W = 98`` samples fill every level's conv
buffer to exactly ``k - s`` and produce no output (``warmup_samples``); after that, every group of
``s^3 = 8`` input samples yields exactly 4/2/1 new frames at the down levels, 2/4 final frames at the up
levels and 8 final output samples. A chunk is buffered until it completes groups; the groups run through
one jitted function per block size (32 or 1 groups), so a stream of 1-sample chunks is not retraced.
``flush()`` runs the remaining ``< 8`` samples and the tail that only the end of the signal finalises
(where the offline model zero-pads its transposed-conv outputs).

**Algorithmic latency.** Output sample ``t`` is emitted once input sample ``8 * (t // 8) + 105`` has arrived:
``105 - (t mod 8)`` samples of look-ahead (at most 105 samples = 13.1 ms at 8 kHz, the model's own
``causal_lookahead``; no extra delay beyond grouping the output in blocks of 8). The first output arrives
after 106 input samples (the model's ``min_length``). Computation per chunk is not counted in this.

Acceptance: the concatenated ``process`` outputs plus ``flush()`` equal ``model(x)`` on the whole signal, and so
``Separator.separate(x)`` with its default (bucketed, length-exact) settings (tests/inference/test_streaming.py,
chunk sizes 1, 37, 97, 160 and larger than the input).
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from mamba_jax.layers.waveform import fit_length
from mamba_jax.models.sepmamba import SepMamba, causal_lookahead, min_length
from mamba_jax.typing import Array, Float

BLOCK_GROUPS = (32, 1)  # groups per jitted call: a backlog runs as calls of 32 groups, then of 1 (two compilations)

StreamState = dict[str, Any]


def _check_streamable(model: Any) -> SepMamba:
    if not isinstance(model, SepMamba) or not model.cfg.causal:
        name = type(model).__name__ + ("" if not isinstance(model, SepMamba) else " (non-causal)")
        raise ValueError(f"streaming needs the causal SepMamba (configs/sepmamba_causal_s.py); {name} uses "
                         "future context (bidirectional layers), so it can only separate a whole signal: use "
                         "Separator.separate")
    k, s = model.cfg.kernel_size, model.cfg.stride
    if k % s or k <= s:
        raise ValueError(f"streaming needs kernel_size to be a multiple of stride larger than it, got k={k}, s={s}")
    return model


def warmup_samples(model: SepMamba) -> int:
    """Input samples after which every down level holds exactly ``k - s`` unconsumed inputs and no frame
    has reached the deepest level: ``(k - s)(1 + s + ... + s^{levels-1})`` (98 for k=16, s=2, 3 levels)."""
    k, s = model.cfg.kernel_size, model.cfg.stride
    return sum((k - s) * s ** i for i in range(len(model.down)))


def group_samples(model: SepMamba) -> int:
    """Input samples per deepest-level frame, ``s^levels`` (8): the unit in which output becomes final."""
    return model.cfg.stride ** len(model.down)


def init_state(model: SepMamba) -> StreamState:
    """State before the first sample: empty conv buffers and skip FIFOs, zero transposed-conv history (a frame
    that does not exist contributes nothing), zero Mamba states."""
    hist = model.cfg.kernel_size // model.cfg.stride - 1

    def empty(c):
        return jnp.zeros((1, 0, c), jnp.float32)

    return dict(
        down_buf=[empty(d.conv1d.weight.shape[1]) for d in model.down],
        down_ssm=[d.mamba_layer.forward_mamba_block.init_state(1) for d in model.down],
        fifo=[empty(d.conv1d.weight.shape[0]) for d in list(model.down)[:-1]],
        up_hist=[jnp.zeros((1, hist, u.convT1d.weight.shape[0]), jnp.float32) for u in model.up],
        up_ssm=[u.mamba_layer.forward_mamba_block.init_state(1) for u in model.up],
        dec_hist=jnp.zeros((1, hist, model.decoder.weight.shape[0]), jnp.float32),
    )


def _mamba(stack, x: Float[Array, "1 L D"], states):
    if x.shape[1] == 0:  # nothing new at this level: the state stays
        return x, states
    return stack.call_with_state(x, states)


def _advance(model: SepMamba, st: StreamState, x: Float[Array, "1 n 1"], *, final: bool, remaining: int
             ) -> tuple[StreamState, Float[Array, "1 m S"]]:
    """Feeds ``x`` through every level; returns the new state and the output samples that are now final.

    ``final=False``: ``x`` must keep the schedule of the module docstring (``W`` samples from the initial
    state, then whole groups), which makes every buffer length constant. ``final=True``: the end of the
    signal; the transposed convs are evaluated up to their last output and zero-padded like the offline
    model, and the output is fitted to ``remaining`` samples.
    """
    k, s = model.cfg.kernel_size, model.cfg.stride
    hist = k // s - 1
    st = dict(st, down_buf=list(st["down_buf"]), down_ssm=list(st["down_ssm"]), fifo=list(st["fifo"]),
              up_hist=list(st["up_hist"]), up_ssm=list(st["up_ssm"]))
    h, skips = x, []
    for i, down in enumerate(model.down):
        buf = jnp.concatenate([st["down_buf"][i], h], axis=1)  # [1, unconsumed + new, C]
        n = (buf.shape[1] - k) // s + 1 if buf.shape[1] >= k else 0
        frames = (jax.nn.relu(down.conv1d(buf)) if n else
                  jnp.zeros((1, 0, down.conv1d.weight.shape[0]), buf.dtype))  # [1, n, O]
        st["down_buf"][i] = buf[:, s * n:]  # the next frame starts at s * n
        h, st["down_ssm"][i] = _mamba(down.mamba_layer.forward_mamba_block, frames, st["down_ssm"][i])
        skips.append(h)
    skips.pop()

    def up_conv(conv, prev, new):
        """Transposed conv of the frames ``new`` given the previous ``hist`` frames ``prev``: the positions that
        no later frame reaches (all positions to the end when ``final``)."""
        full = jnp.concatenate([prev, new], axis=1)  # [1, hist + n, C]
        y = conv(full)[:, s * hist:]  # position s*hist of `full` is the first one `prev[0]` does not finish
        return (y if final else y[:, :s * new.shape[1]]), full[:, full.shape[1] - hist:]

    for j, up in enumerate(model.up):
        lvl = len(st["fifo"]) - 1 - j
        y, st["up_hist"][j] = up_conv(up.convT1d, st["up_hist"][j], h)
        y = jax.nn.relu(y)
        fifo = jnp.concatenate([st["fifo"][lvl], skips[lvl]], axis=1)  # skip frames not yet joined
        m = fifo.shape[1] if final else y.shape[1]
        y = fit_length(y, m, axis=1)  # the offline model zero-pads the transposed-conv output to the skip length
        skip, st["fifo"][lvl] = fifo[:, :m], fifo[:, m:]
        z = jax.nn.relu(up.conv1d_fusion(jnp.concatenate([skip, y], axis=-1))) if m else y  # [1, m, O]
        h, st["up_ssm"][j] = _mamba(up.mamba_layer.forward_mamba_block, z, st["up_ssm"][j])
    out, st["dec_hist"] = up_conv(model.decoder, st["dec_hist"], h)  # [1, m, S]
    if final:
        out = fit_length(out, remaining, axis=1)
    return st, out


class StreamRunner:
    """The jitted advance function of one causal SepMamba, shared by all its streams (one compile per shape)."""

    def __init__(self, model: SepMamba):
        self.model = _check_streamable(model)
        self.graphdef, self.weights = nnx.split(model)
        self.warmup = warmup_samples(model)
        self.group = group_samples(model)
        self.min_length = min_length(model.cfg)
        self.lookahead = causal_lookahead(model.cfg)
        self.num_sources = int(model.decoder.weight.shape[1])
        graphdef = self.graphdef

        @functools.partial(jax.jit, static_argnames=("final", "remaining"))
        def advance(weights, st, x, *, final: bool = False, remaining: int = 0):
            return _advance(nnx.merge(graphdef, weights), st, x, final=final, remaining=remaining)

        self.advance = advance

    def run(self, st: StreamState, x: np.ndarray, *, final: bool = False, remaining: int = 0
            ) -> tuple[StreamState, np.ndarray]:
        """``x [n]`` -> (state, ``[S, m]`` numpy)."""
        st, y = self.advance(self.weights, st, jnp.asarray(x, jnp.float32)[None, :, None], final=final,
                             remaining=remaining)
        return st, np.asarray(y[0]).T


class SeparationStream:
    """Chunk-by-chunk separation with the causal SepMamba; see the module docstring.

    ``process(chunk [n])`` returns ``[S, m]``, the output samples that became final; ``flush()`` returns the
    rest. The concatenation equals the offline causal output ``model(x)[0]`` of the whole signal.
    """

    def __init__(self, runner: StreamRunner):
        self._runner = runner
        self._state: StreamState | None = None  # None until the warm-up samples have arrived
        self._pending = np.zeros(0, np.float32)
        self._received = 0
        self._emitted = 0
        self._closed = False

    @property
    def lookahead_samples(self) -> int:
        """Worst-case algorithmic latency in samples (105 for SepMamba causal S/M: 13.1 ms at 8 kHz)."""
        return self._runner.lookahead

    def _empty(self) -> np.ndarray:
        return np.zeros((self._runner.num_sources, 0), np.float32)

    def process(self, chunk: np.ndarray) -> np.ndarray:
        """Feeds ``chunk [n]`` (float, model rate, any n >= 0); returns ``[S, m]``, the newly final samples."""
        if self._closed:
            raise RuntimeError("SeparationStream.process after flush(): start a new stream with Separator.stream()")
        x = np.asarray(chunk)
        if x.ndim != 1:
            raise ValueError(f"SeparationStream.process expects a mono chunk of shape [n], got shape {x.shape} "
                             "(downmix to mono first)")
        if not np.issubdtype(x.dtype, np.floating):
            raise ValueError(f"SeparationStream.process expects a floating-point chunk, got dtype {x.dtype}")
        if not np.all(np.isfinite(x)):
            raise ValueError("SeparationStream.process: chunk contains NaN or inf values")
        self._pending = np.concatenate([self._pending, x.astype(np.float32)])
        self._received += x.size
        run = self._runner
        outs = [self._empty()]
        if self._state is None:
            if self._pending.size < run.warmup:
                return outs[0]
            self._state, y = run.run(init_state(run.model), self._pending[:run.warmup])
            self._pending = self._pending[run.warmup:]
            outs.append(y)
        for blocks in BLOCK_GROUPS:
            while self._pending.size >= blocks * run.group:
                n = blocks * run.group
                self._state, y = run.run(self._state, self._pending[:n])
                self._pending = self._pending[n:]
                outs.append(y)
        out = np.concatenate(outs, axis=1)
        self._emitted += out.shape[1]
        return out

    def flush(self) -> np.ndarray:
        """Ends the signal; returns ``[S, m]``, every sample not yet returned. The stream is closed after."""
        if self._closed:
            raise RuntimeError("SeparationStream.flush called twice")
        run = self._runner
        if self._received < run.min_length:
            raise ValueError(f"SeparationStream: the signal has {self._received} samples, the causal SepMamba "
                             f"needs at least {run.min_length}")
        self._closed = True
        self._state, y = run.run(self._state, self._pending, final=True, remaining=self._received - self._emitted)
        self._pending = self._pending[:0]
        self._emitted += y.shape[1]
        return y
