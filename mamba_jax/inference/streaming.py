"""Streaming separation with the causal SepMamba: audio in chunks of any size, output identical to offline.

The causal SepMamba (mamba_jax/models/sepmamba.py, ``causal=True``) is a U-Net whose Mamba stacks run
forwards only, but whose strided convolutions are unpadded and whose transposed convolutions spread each
frame forwards, so it looks ahead a fixed number of samples. The model carries its own streaming state
(``SepMamba.init_stream_state``, ``SepMamba.stream_step``: for every layer, exactly the state the offline
pass would have in memory at that point); this module buffers the chunks into the schedule that state needs,
jits the step and hands out the samples that became final.

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

from mamba_jax.models.sepmamba import SepMamba, StreamState, causal_lookahead, min_length

BLOCK_GROUPS = (32, 1)  # groups per jitted call: a backlog runs as calls of 32 groups, then of 1 (two compilations)


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


class StreamRunner:
    """The jitted advance function of one causal SepMamba, shared by all its streams (one compile per shape)."""

    def __init__(self, model: SepMamba):
        self.model = _check_streamable(model)
        self.graphdef, self.weights = nnx.split(model)
        self.warmup = model.warmup_samples
        self.group = model.group_samples
        self.min_length = min_length(model.cfg)
        self.lookahead = causal_lookahead(model.cfg)
        self.num_sources = model.cfg.num_spks
        graphdef = self.graphdef

        @functools.partial(jax.jit, static_argnames=("final", "remaining"))
        def advance(weights, st, x, *, final: bool = False, remaining: int = 0):
            return nnx.merge(graphdef, weights).stream_step(st, x, final=final, remaining=remaining)

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
            self._state, y = run.run(run.model.init_stream_state(), self._pending[:run.warmup])
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
