"""CPU real-time factor of every separation family's S size and of ConMamba-S, optionally side by side with
another commit.

    .venv/bin/python bench/cpu_rtf.py                                     # this tree, all models, 4 s and 60 s
    .venv/bin/python bench/cpu_rtf.py --compare 929b00b --models sepmamba_s --seconds 4
    .venv/bin/python bench/cpu_rtf.py --compare HEAD~3 --json out.json

RTF = seconds of compute / seconds of audio (lower is faster; 1 = real time). Every (model, length, tree)
runs in its own worker process, which builds the model from its config (random weights: time does not
depend on them; ``check_finite`` off), compiles the jitted forward on noise of that length and runs it once
warm. The parent then asks every worker for ``--repeats`` timed calls in turn (tree A, tree B, tree A, ...),
so both trees see the same machine load, and reports the median. ``--compare REV`` checks ``REV`` out as a
detached ``git worktree`` in a temporary folder and runs it with the same interpreter (``PYTHONPATH`` points
at that tree); the venv stays the current one.

What is timed: separation models, ``model(mix [1, T])`` (the network; ``Separator`` adds resampling and
bucketing around it); ConMamba-S, Fbank features + normalisation + encoder + CTC log-probabilities + greedy
argmax (the acoustic part of transcription; beam/joint search is on top and depends on the tokenizer).

Anchor: the original SepMamba code's only CPU path runs at RTF 22 on 4 s (issue 19; the mamba_ssm CUDA
kernels have no CPU build, so it uses the reference PyTorch scan).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import nullcontext

ORIGINAL_SEPMAMBA_CPU_RTF = 22.0  # issue 19: the original SepMamba code's CPU path, 4 s at 8 kHz

MODELS = {  # name -> config file (relative to the tree)
    "sepmamba_s": "configs/sepmamba_s.py",
    "mambatasnet_s": "configs/mambatasnet_s.py",
    "dpmamba_s": "configs/dpmamba_s.py",
    "spmamba": "configs/spmamba.py",
    "conmamba_s": "configs/conmamba_small.py",
}


def worker(tree: str, model_name: str, seconds: float) -> None:
    """Builds and compiles, prints ``ready <compile s>``, then answers every ``run`` line with seconds."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    from flax import nnx

    import mamba_jax
    from mamba_jax.models import build_model
    try:
        from mamba_jax.config import load_config
    except ImportError:  # a --compare tree from before mamba_jax.config
        from mamba_jax.config import load_config

    assert os.path.realpath(mamba_jax.__file__).startswith(os.path.realpath(tree)), mamba_jax.__file__
    config = load_config(os.path.join(tree, MODELS[model_name]))
    t0 = time.perf_counter()
    if model_name.startswith("conmamba"):
        from mamba_jax.layers.fbank import fbank, fbank_config_from, num_frames

        model = build_model(config.model, rngs=nnx.Rngs(0))
        model.eval()
        fcfg = fbank_config_from(config.features)
        rate = fcfg.sample_rate
        graphdef, state = nnx.split(model)

        def fwd(st, waves):
            m = nnx.merge(graphdef, st)
            lengths = jnp.full((waves.shape[0],), waves.shape[1], jnp.int32)
            feats = fbank(waves, fcfg)
            frames = jnp.minimum(num_frames(lengths, fcfg), feats.shape[1]).astype(jnp.int32)
            enc, enc_len = m.encode(m.normalize(feats, frames, train=False), frames)
            return jnp.argmax(m.ctc_logprobs(enc), axis=-1), enc_len
    else:
        with config.unlocked() if hasattr(config, "unlocked") else nullcontext():
            config.model.check_finite = "off"
        model = build_model(config.model, rngs=nnx.Rngs(0))
        rate = int(config.data.sample_rate)
        graphdef, state = nnx.split(model)

        def fwd(st, mix):
            return nnx.merge(graphdef, st)(mix)

    build_s = time.perf_counter() - t0
    x = (0.1 * np.random.default_rng(0).standard_normal((1, int(round(seconds * rate))))).astype(np.float32)
    t0 = time.perf_counter()
    f = jax.jit(fwd).lower(state, x).compile()
    jax.block_until_ready(f(state, x))
    compile_s = time.perf_counter() - t0
    print(f"ready {build_s:.3f} {compile_s:.3f}", flush=True)
    for line in sys.stdin:
        if line.strip() != "run":
            break
        t0 = time.perf_counter()
        jax.block_until_ready(f(state, x))
        print(f"{time.perf_counter() - t0:.6f}", flush=True)


class Worker:
    def __init__(self, tree: str, model: str, seconds: float):
        env = dict(os.environ, PYTHONPATH=tree + os.pathsep + os.environ.get("PYTHONPATH", ""))
        self.proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--worker", tree, model, str(seconds)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, cwd=tree)
        line = self.proc.stdout.readline().split()
        if not line or line[0] != "ready":
            raise RuntimeError(f"worker {tree} {model} {seconds}s failed (see its stderr above)")
        self.build_s, self.compile_s = float(line[1]), float(line[2])

    def run(self) -> float:
        self.proc.stdin.write("run\n")
        self.proc.stdin.flush()
        return float(self.proc.stdout.readline())

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait()


def git(*args: str, cwd: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker(sys.argv[2], sys.argv[3], float(sys.argv[4]))
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    ap.add_argument("--seconds", nargs="+", type=float, default=[4.0, 60.0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--compare", default=None, metavar="REV", help="also run this commit, interleaved")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    trees = {"this": here}
    labels = {"this": git("rev-parse", "--short", "HEAD", cwd=here)
              + ("+dirty" if git("status", "--porcelain", "--untracked-files=no", cwd=here) else "")}
    tmp = None
    if args.compare:
        tmp = tempfile.mkdtemp(prefix="cpu_rtf_")
        rev_tree = os.path.join(tmp, "rev")
        git("worktree", "add", "--detach", rev_tree, args.compare, cwd=here)
        trees = {"rev": rev_tree, "this": here}
        labels["rev"] = git("rev-parse", "--short", args.compare, cwd=here)
    rows = []
    try:
        for model in args.models:
            for seconds in args.seconds:
                workers = {}
                try:
                    for k, t in trees.items():
                        workers[k] = Worker(t, model, seconds)
                    times = {k: [] for k in trees}
                    for _ in range(args.repeats):
                        for k, w in workers.items():
                            times[k].append(w.run())
                except BaseException:
                    for w in workers.values():
                        w.proc.kill()
                    raise
                for k, w in workers.items():
                    w.close()
                    med = statistics.median(times[k])
                    row = dict(model=model, seconds=seconds, tree=labels[k], median_s=round(med, 3),
                               rtf=round(med / seconds, 3), runs_s=[round(t, 3) for t in times[k]],
                               build_s=round(w.build_s, 2), compile_s=round(w.compile_s, 2))
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    finally:
        if tmp:
            git("worktree", "remove", "--force", os.path.join(tmp, "rev"), cwd=here)
    print(f"\nanchor: original SepMamba code, CPU, 4 s: RTF {ORIGINAL_SEPMAMBA_CPU_RTF}")
    print("| model | audio s | commit | median s | RTF | build s | compile s |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['seconds']:g} | {r['tree']} | {r['median_s']:.3f} | {r['rtf']:.3f} | "
              f"{r['build_s']:.1f} | {r['compile_s']:.1f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), rows=rows,
                           anchor_original_sepmamba_cpu_rtf=ORIGINAL_SEPMAMBA_CPU_RTF), f, indent=1)


if __name__ == "__main__":
    from mamba_jax.xla_cpu import apply_cpu_flags

    apply_cpu_flags()  # the CPU flags the CLI and train.py use, before JAX starts (mamba_jax/xla_cpu.py)
    main()
