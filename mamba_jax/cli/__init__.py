"""``mamba-jax``: separate, transcribe, evaluate and convert from the command line.

    mamba-jax separate mix.wav folder/ --checkpoint runs/sepmamba_s --out separated/
    mamba-jax transcribe a.flac b.wav --checkpoint runs/conmamba_small [--method ctc_greedy] [--beam-size 4]
    mamba-jax evaluate --checkpoint runs/sepmamba_s [--config configs/sepmamba_s.py] [--split test] \\
        [--max-utterances 100] [--out eval/]
    mamba-jax convert --config configs/mambatasnet_s.py --torch-checkpoint model.pth --out runs/mt_s_torch \\
        [--overwrite]
    mamba-jax configs          # the training configs of configs/, one line each
    mamba-jax --version

``--checkpoint`` is a training workdir, its ``checkpoints/`` folder or one step folder (the latest step is
used), absolute or relative. Inputs may be files or folders (searched recursively for every audio extension
soundfile reads: .wav, .flac, .mp3, .ogg, ...); stereo is averaged and other sample rates are resampled, each
with a note on stderr. ``separate`` writes ``<out>/<stem>_s<k>.wav`` at the input's rate (a folder input keeps
its sub-folders under ``<out>``; two inputs that would share a name, e.g. ``a.wav`` and ``a.flac``, get the
extension added, ``a_wav_s1.wav``, with a note); ``transcribe`` prints ``path<TAB>text``. Nothing is
overwritten without ``--overwrite``: an existing estimate is a per-file error, ``evaluate`` refuses an
``--out`` holding an earlier evaluation (with ``--overwrite`` its old files are removed first), and ``convert``
an ``--out`` whose ``checkpoints/`` holds anything (with ``--overwrite`` it is replaced as a whole). Every output
is written under a temporary name and renamed into place (``mamba_jax.fileio``): a failed write (disk full,
read-only folder) leaves no file and names the file and the OS cause; ``separate`` goes on with the other inputs
after a fault of one file and stops ("N of M input(s) written") when the output folder itself cannot be written.
A folder input never yields files under ``--out`` (the estimates of an earlier run).

Errors are one line on stderr (``error: ...``) naming the file or setting and the fix; ``--verbose`` (or
``MAMBA_JAX_VERBOSE=1``) adds the traceback. Exit status: 0 success; 1 a failure (a bad file is reported and
skipped, and the command lists the failures at the end); 2 a usage error (bad argument, missing file given as a
setting); 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Sequence

from mamba_jax.cli.commands import cmd_configs, cmd_convert, cmd_evaluate, cmd_separate, cmd_transcribe
from mamba_jax.cli.errors import TRACEBACK_HINT, VERBOSE_ENV, CliError, UsageError, error, one_line, verbose_requested
from mamba_jax.cli.inputs import expand_inputs
from mamba_jax.fileio import OutputError

__all__ = ["TRACEBACK_HINT", "VERBOSE_ENV", "CliError", "UsageError", "build_parser", "expand_inputs", "main",
           "one_line", "verbose_requested"]


def _version() -> str:
    """The installed distribution's version (the package root is a higher layer than the CLI)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("mamba-jax")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "(not installed)"


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="mamba-jax", description="Mamba speech models: separation and ASR.",
                                 epilog="Exit status: 0 ok, 1 failure, 2 usage error, 130 interrupted.")
    ap.add_argument("--verbose", action="store_true", help="show tracebacks (also MAMBA_JAX_VERBOSE=1)")
    ap.add_argument("--version", action="version", version=f"mamba-jax {_version()}",
                    help="print the version and exit")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--verbose", action="store_true", default=argparse.SUPPRESS,
                        help="show the traceback of an error (also MAMBA_JAX_VERBOSE=1)")
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def ckpt(p, required=True):
        p.add_argument("--checkpoint", required=required, metavar="PATH",
                       help="training workdir, its checkpoints/ folder, or one step folder (latest step used)")
        p.add_argument("--scan-impl", default="auto", choices=["auto", "sequential", "associative", "pallas"],
                       help="selective-scan implementation (default: auto)")

    def positive(kind, allow_zero=False):
        def parse(s):
            try:
                v = kind(s)
            except ValueError:
                raise argparse.ArgumentTypeError(f"expected a number, got {s!r}") from None
            if v < 0 or (v == 0 and not allow_zero):
                raise argparse.ArgumentTypeError(f"must be {'>=' if allow_zero else '>'} 0, got {s}")
            return v
        return parse

    p = sub.add_parser("separate", parents=[common], help="separate the speakers of audio files",
                       description="Writes <out>/<stem>_s<k>.wav for every input, at the input's rate.")
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="audio files or folders (searched recursively for .wav, .flac, .mp3, .ogg, ...)")
    ckpt(p)
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("--overwrite", action="store_true", help="replace estimates already in --out (default: refuse)")
    p.add_argument("--chunk-seconds", type=positive(float), default=None,
                   help="separate long inputs in chunks of this many seconds (default: the model's, 20 s; SPMamba 4 s)")
    p.add_argument("--hop-seconds", type=positive(float), default=None, help="hop between chunks, seconds")
    p.set_defaults(fn=cmd_separate)

    methods = ["joint", "ctc_beam", "ctc_greedy"]
    p = sub.add_parser("transcribe", parents=[common], help="transcribe audio files (prints path<TAB>text)",
                       description="Prints path<TAB>text for every input (long files in pieces of <= 20 s).")
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="audio files or folders (searched recursively for .wav, .flac, .mp3, .ogg, ...)")
    ckpt(p)
    p.add_argument("--tokenizer", default=None, metavar="PATH",
                   help="SentencePiece model (default: <workdir>/tokenizer/tokenizer.model)")
    p.add_argument("--method", choices=methods, default=None,
                   help="search (default: the config's decoding.method); joint needs an attention decoder: a "
                        "CTC-only model takes ctc_beam or ctc_greedy")
    p.add_argument("--beam-size", type=positive(int), default=None, help="beam (default: decoding.beam_size)")
    p.set_defaults(fn=cmd_transcribe)

    p = sub.add_parser("evaluate", parents=[common],
                       help="metrics of a checkpoint on a data split (CSV, JSON, plots)",
                       description="Evaluates a checkpoint on a split of its config's data (or --config's): "
                                   "separation: SI-SNR(i), SDRi, PESQ and STOI per mixture; ASR: WER and CER. "
                                   "Prints the summary as JSON; with --out also writes utterances.csv, "
                                   "summary.json and spectrogram PNGs.")
    ckpt(p)
    p.add_argument("--config", default=None, metavar="CONFIG",
                   help="configs/NAME.py[:ARG] whose data block to evaluate on (default: the checkpoint's config)")
    p.add_argument("--data-root", default=None, metavar="DIR",
                   help="override config.data.root (unset: the embedded synthetic corpus)")
    p.add_argument("--split", default="test", choices=["train", "valid", "test"],
                   help="data split (default: test); train: the training items drawn with seed 0, in order, "
                        "without speed perturbation (crops of data.segment_seconds; dynamic mixing: mixtures "
                        "named by index)")
    p.add_argument("--max-utterances", type=positive(int), default=None, metavar="N",
                   help="evaluate the first N utterances only (default: the whole split)")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="write utterances.csv, summary.json and spectrogram PNGs here")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an earlier evaluation in --out (its CSV, JSON and PNGs are removed first)")
    p.add_argument("--plots", type=positive(int, allow_zero=True), default=3, metavar="N",
                   help="spectrogram PNGs of the first N utterances, 0 for none (separation; default: 3)")
    p.add_argument("--no-perceptual", action="store_true", help="skip PESQ and STOI (separation)")
    p.add_argument("--chunk-seconds", type=positive(float), default=None,
                   help="overlap-add windows of this many seconds past it (separation; default: whole utterances)")
    p.add_argument("--hop-seconds", type=positive(float), default=None, help="hop between windows, seconds")
    p.add_argument("--tokenizer", default=None, metavar="PATH", help="SentencePiece model (ASR)")
    p.add_argument("--method", choices=methods, default=None, help="search (ASR)")
    p.add_argument("--beam-size", type=positive(int), default=None, help="beam (ASR)")
    p.set_defaults(fn=cmd_evaluate)

    p = sub.add_parser("convert", parents=[common],
                       help="convert an original PyTorch checkpoint to a mamba-jax checkpoint",
                       description="Writes <out>/checkpoints/0/, which separate/transcribe/evaluate and "
                                   "train.py's init_from read. An --out whose checkpoints/ holds anything is "
                                   "refused unless --overwrite.")
    p.add_argument("--config", required=True, metavar="CONFIG", help="configs/NAME.py[:ARG] of the model")
    p.add_argument("--torch-checkpoint", required=True, metavar="PATH",
                   help="the original .pth/.ckpt file, or a SpeechBrain CKPT+... folder")
    p.add_argument("--out", required=True, metavar="DIR", help="workdir to write <out>/checkpoints/0/ into")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the checkpoints already in <out>/checkpoints/ (all steps; default: refuse)")
    p.set_defaults(fn=cmd_convert)

    p = sub.add_parser("configs", parents=[common], help="list the training configs with a one-line description",
                       description="Lists configs/NAME.py (of the current folder, else of this checkout) with "
                                   "the first line of each file's docstring; pass one to train.py --config or "
                                   "to evaluate/convert --config (NAME.py:smoke is a two-step CPU run).")
    p.add_argument("--folder", default=None, metavar="DIR",
                   help="the configs folder to list (default: ./configs, else the checkout's configs/)")
    p.set_defaults(fn=cmd_configs)
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``mamba-jax`` console script; returns the exit status (see the module docstring)."""
    args = build_parser().parse_args(argv)
    verbose = getattr(args, "verbose", False) or verbose_requested([])
    from mamba_jax.compile_cache import enable_compilation_cache
    from mamba_jax.xla_cpu import apply_cpu_flags

    apply_cpu_flags()  # before JAX starts its backend; MAMBA_JAX_CPU_FLAGS=0 turns them off

    enable_compilation_cache()  # before the first compilation; MAMBA_JAX_COMPILATION_CACHE=0 turns it off
    try:
        return int(args.fn(args) or 0)
    except BrokenPipeError:  # `mamba-jax configs | head`: the reader left; no message, as other Unix tools
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at interpreter exit
        return 1
    except KeyboardInterrupt:
        if verbose:
            traceback.print_exc()
        error(f"{args.command}: interrupted (Ctrl-C); the outputs listed above are complete")
        return 130
    except CliError as e:
        if verbose:
            traceback.print_exc()
        error(str(e))
        return e.status
    except OutputError as e:  # names the file and the OS cause: nothing more to show
        if verbose:
            traceback.print_exc()
        error(f"{args.command}: {e}")
        return 1
    except Exception as e:  # library errors name the file/key and the problem: one line unless --verbose
        if verbose:
            traceback.print_exc()
        error(f"{args.command}: {one_line(e)}" + ("" if verbose else f" {TRACEBACK_HINT}"))
        return 1
