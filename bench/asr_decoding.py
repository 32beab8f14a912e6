"""Per-step decoder cost during beam search: incremental state vs full recomputation, vs prefix length.

    python bench/asr_decoding.py                 # conmamba_small-sized decoders (D 144, 4 layers, V 5000)
    python bench/asr_decoding.py --quick         # fewer lengths / repeats

For each decoder ('transformer': KV cache; 'mamba': step state, cross-Mamba state after the memory) and
prefix length U, times one search step for N = beam hypotheses: the incremental ``decode_step`` at position
U-1, and the original's full ``decode`` of the U-token prefix (last position used). Jitted, warmed up, median
of repeats. Prints a markdown table (ms per step).
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from mamba_jax.models.conmamba import ConMambaASR, ConMambaConfig


def _median_ms(fn, repeats: int) -> float:
    jax.block_until_ready(fn())  # warm-up / compile
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(fn())
        ts.append(time.perf_counter() - t)
    return 1e3 * float(np.median(ts))


def bench(decoder: str, lengths: list[int], *, beam: int, frames: int, repeats: int, d: int, layers: int,
          vocab: int) -> list[tuple[int, float, float]]:
    cfg = ConMambaConfig(d_model=d, num_encoder_layers=1, num_decoder_layers=layers, num_heads=4, d_ffn=4 * d,
                         vocab_size=vocab, decoder=decoder, max_len=max(lengths) + 1)
    model = ConMambaASR(cfg, rngs=nnx.Rngs(0))
    model.eval()
    graphdef, state = nnx.split(model)
    enc = jax.random.normal(jax.random.key(0), (beam, frames, d))
    lens = jnp.full((beam,), frames)

    @jax.jit
    def full(state, prefix):
        return nnx.merge(graphdef, state).decode(prefix, enc, lens)[:, -1]

    @jax.jit
    def step(state, dec_state, tok, pos):
        return nnx.merge(graphdef, state).decode_step(tok, dec_state, pos)

    dec_state = jax.jit(lambda s: nnx.merge(graphdef, s).init_decoder_state(enc, lens, max(lengths) + 1))(state)
    rows = []
    for u in lengths:
        prefix = jax.random.randint(jax.random.key(u), (beam, u), 3, vocab)
        t_full = _median_ms(lambda: full(state, prefix), repeats)
        tok = prefix[:, -1]
        t_inc = _median_ms(lambda: step(state, dec_state, tok, jnp.asarray(u - 1)), repeats)
        rows.append((u, t_inc, t_full))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--beam", type=int, default=10)
    ap.add_argument("--frames", type=int, default=200, help="encoder frames (memory length)")
    args = ap.parse_args()
    lengths = [8, 32, 128] if args.quick else [8, 32, 64, 128, 256]
    repeats = 3 if args.quick else 10
    print(f"device: {jax.devices()[0].device_kind}; beam {args.beam}; memory {args.frames} frames")
    print("| decoder | prefix U | incremental ms/step | full recompute ms/step | speed-up |")
    print("|---|---|---|---|---|")
    for decoder in ("transformer", "mamba"):
        for u, t_inc, t_full in bench(decoder, lengths, beam=args.beam, frames=args.frames, repeats=repeats,
                                      d=144, layers=4, vocab=5000):
            print(f"| {decoder} | {u} | {t_inc:.2f} | {t_full:.2f} | {t_full / t_inc:.1f}x |")


if __name__ == "__main__":
    from mamba_jax.xla_cpu import apply_cpu_flags

    apply_cpu_flags()  # the CPU flags the CLI and train.py use, before JAX starts (mamba_jax/xla_cpu.py)
    main()
