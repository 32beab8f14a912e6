"""``mamba-jax``: separate, transcribe, evaluate and convert from the command line.

    mamba-jax separate mix.wav folder/ --checkpoint runs/sepmamba_s --out separated/
    mamba-jax transcribe a.flac b.wav --checkpoint runs/conmamba_small [--method ctc_greedy] [--beam-size 4]
    mamba-jax evaluate --checkpoint runs/sepmamba_s [--config configs/sepmamba_s.py] [--split test] \\
        [--max-utterances 100] [--out eval/]
    mamba-jax convert --config configs/mambatasnet_s.py --torch-checkpoint model.pth --out runs/mt_s_torch

``--checkpoint`` is a training workdir, its ``checkpoints/`` folder or one step folder (the latest step is
used), absolute or relative. Inputs may be files or folders (searched recursively for every audio extension
soundfile reads: .wav, .flac, .mp3, .ogg, ...); stereo is averaged and other sample rates are resampled, each
with a note on stderr. ``separate`` writes ``<out>/<stem>_s<k>.wav`` at the input's rate (a folder input keeps
its sub-folders under ``<out>``; two inputs that would share a name, e.g. ``a.wav`` and ``a.flac``, get the
extension added, ``a_wav_s1.wav``, with a note); ``transcribe`` prints ``path<TAB>text``. Nothing is
overwritten without ``--overwrite``: an existing estimate is a per-file error, and ``evaluate`` refuses an
``--out`` holding an earlier evaluation (with ``--overwrite`` its old files are removed first).

Errors are one line on stderr (``error: ...``) naming the file or setting and the fix; ``--verbose`` (or
``MAMBA_JAX_VERBOSE=1``) adds the traceback. Exit status: 0 success; 1 a failure (a bad file is reported and
skipped, and the command lists the failures at the end); 2 a usage error (bad argument, missing file given as a
setting); 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import traceback
import warnings
from collections.abc import Callable, Sequence

VERBOSE_ENV = "MAMBA_JAX_VERBOSE"
TRACEBACK_HINT = f"(--verbose or {VERBOSE_ENV}=1 shows the traceback)"


class CliError(Exception):
    """A problem to report in one line (no traceback), exit status 1."""

    status = 1


class UsageError(CliError):
    """A bad argument or setting, reported in one line, exit status 2."""

    status = 2


def verbose_requested(argv: Sequence[str] | None = None) -> bool:
    """``--verbose`` among ``argv`` or ``MAMBA_JAX_VERBOSE`` set to anything but '' / '0'."""
    return "--verbose" in (sys.argv if argv is None else argv) or os.environ.get(VERBOSE_ENV, "") not in ("", "0")


def one_line(e: BaseException, limit: int = 400) -> str:
    """``e``'s message on one line (the first line, at most ``limit`` characters), prefixed by its type when that
    says something (not for ValueError/CliError-like messages that already name the problem)."""
    msg = " ".join(str(e).split("\n")[0].split()) or type(e).__name__
    if len(msg) > limit:
        msg = msg[:limit - 3] + "..."
    return msg if isinstance(e, (ValueError, OSError, CliError)) else f"{type(e).__name__}: {msg}"


def _note(msg: str) -> None:
    print(f"note: {msg}", file=sys.stderr, flush=True)


def _error(msg: str) -> None:
    print(f"error: {msg}", file=sys.stderr, flush=True)


# ---- inputs ---------------------------------------------------------------------------------------------------
def expand_inputs(inputs: Sequence[str]) -> list[tuple[pathlib.Path, pathlib.Path]]:
    """``(file, name relative to the output folder)`` for every file argument and every audio file under a
    folder argument (sorted; the extensions of ``mamba_jax.data.audio.AUDIO_EXTENSIONS``). A missing path or a
    folder without audio is a ``UsageError``. Names that two inputs share (``a.wav`` and ``a.flac``, or one
    name given from two folders) are made unique: the extension joins the stem (``a_wav``), then a counter."""
    from mamba_jax.data.audio import AUDIO_EXTENSIONS

    out = []
    for arg in inputs:
        p = pathlib.Path(arg).expanduser()
        if p.is_dir():
            files = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in AUDIO_EXTENSIONS)
            if not files:
                raise UsageError(f"{p}: folder holds no audio file ({', '.join(AUDIO_EXTENSIONS)})")
            out.extend((f, f.relative_to(p)) for f in files)
        elif p.is_file():
            out.append((p, pathlib.Path(p.name)))
        else:
            raise UsageError(f"{p}: no such file or folder")
    return _unique_names(out)


def _unique_names(files: list[tuple[pathlib.Path, pathlib.Path]]) -> list[tuple[pathlib.Path, pathlib.Path]]:
    """Output names (``rel`` without suffix) made unique, with a note for each renamed input: inputs that differ
    only in extension get it added to the stem (``a.wav``, ``a.flac`` -> ``a_wav``, ``a_flac``); others sharing a
    name (the same name from two folders) get a counter after the first (``b``, ``b_2``)."""
    def key(rel):
        return (rel.parent / rel.stem).as_posix().lower()  # case-insensitive file systems collide too

    groups: dict[str, list[str]] = {}
    for _, rel in files:
        groups.setdefault(key(rel), []).append(rel.suffix.lower())
    out, taken = [], set()
    for path, rel in files:
        suffixes = groups[key(rel)]
        new = rel
        if len(suffixes) > 1 and len(set(suffixes)) == len(suffixes):
            new = rel.with_name(f"{rel.stem}_{rel.suffix.lstrip('.').lower()}{rel.suffix}")
        base, k = new, 2
        while key(new) in taken:
            new = base.with_name(f"{base.stem}_{k}{base.suffix}")
            k += 1
        taken.add(key(new))
        if len(suffixes) > 1:
            _note(f"{path}: another input has the same name; its estimates are {new.with_suffix('')}_s<k>.wav")
        out.append((path, new))
    return out


def _load(path: pathlib.Path):
    """``(mono float32 [T], sample rate)`` of ``path``; downmix warnings become notes."""
    from mamba_jax.data.audio import audio_info, load_audio

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        wave = load_audio(path, None, on_stereo="downmix")
    for w in caught:
        _note(str(w.message))
    return wave, audio_info(path)[1]


def _run_files(files: list[tuple[pathlib.Path, pathlib.Path]], fn: Callable[[pathlib.Path, pathlib.Path], None]
               ) -> int:
    """Applies ``fn`` to every file; bad audio and per-file errors are reported and skipped."""
    from mamba_jax.data.audio import AudioError

    failed = []
    for path, rel in files:
        try:
            fn(path, rel)
        except AudioError as e:
            _error(one_line(e))
            failed.append(str(path))
        except (ValueError, OSError) as e:  # includes FileExistsError: an estimate that is already there
            _error(f"{path}: {one_line(e)}")
            failed.append(str(path))
    if failed:
        _error(f"{len(failed)} of {len(files)} file(s) failed: " + ", ".join(failed))
        return 1
    return 0


# ---- checkpoints ----------------------------------------------------------------------------------------------
def _checkpoint_config(path: str, task: str, command: str):
    """The config of the checkpoint under ``path``; it must be a ``task`` checkpoint."""
    from mamba_jax.checkpoint import read_config

    try:
        config, _ = read_config(path)
    except FileNotFoundError as e:
        raise CliError(str(e)) from e
    if config.get("task") != task:
        fits = {"separation": "separate", "asr": "transcribe"}.get(config.get("task"), "evaluate")
        raise CliError(f"{path} is a {config.get('task')!r} checkpoint (model {config.model.get('name')!r}); "
                       f"`mamba-jax {command}` needs a {task!r} checkpoint (use `mamba-jax {fits}` with this one)")
    return config


def _separator(args, config=None):
    from mamba_jax.checkpoint import load_model
    from mamba_jax.inference.separator import Separator

    if config is None:
        config = _checkpoint_config(args.checkpoint, "separation", args.command)
    model, _ = load_model(args.checkpoint, config, scan_impl=args.scan_impl)
    kw = {}
    if getattr(args, "chunk_seconds", None) is not None:
        kw["chunk_seconds"] = args.chunk_seconds
    if getattr(args, "hop_seconds", None) is not None:
        kw["hop_seconds"] = args.hop_seconds
    return Separator(model, config, **kw)


def _transcriber(args, config=None):
    from mamba_jax.checkpoint import find_tokenizer, load_model
    from mamba_jax.inference.transcriber import Transcriber
    from mamba_jax.tokenizer import Tokenizer

    if config is None:
        config = _checkpoint_config(args.checkpoint, "asr", args.command)
    try:
        tok = args.tokenizer or find_tokenizer(args.checkpoint, config)
    except FileNotFoundError as e:
        raise CliError(f"{e} (pass --tokenizer PATH)") from e
    try:
        tokenizer = Tokenizer(str(tok))
    except Exception as e:  # sentencepiece: OSError "Not found", RuntimeError "could not parse ModelProto"
        raise UsageError(f"--tokenizer {tok}: not a SentencePiece model ({one_line(e)}); pass the "
                         f"tokenizer.model of the training run (<workdir>/tokenizer/tokenizer.model)") from e
    model, _ = load_model(args.checkpoint, config, scan_impl=args.scan_impl)
    return Transcriber(model, config, tokenizer)


# ---- commands -------------------------------------------------------------------------------------------------
def _out_folder(out: str) -> pathlib.Path:
    p = pathlib.Path(out).expanduser()
    if p.exists() and not p.is_dir():
        raise UsageError(f"--out {out} is a file, not a folder: pass a folder (it is created if missing)")
    return p


def cmd_separate(args) -> int:
    import numpy as np

    from mamba_jax.inference.api import estimate_paths, write_estimates

    out = _out_folder(args.out)
    files = expand_inputs(args.inputs)
    sep = _separator(args)
    sep.progress = sys.stderr.isatty()  # a bar for long inputs, in a terminal only

    def one(path: pathlib.Path, rel: pathlib.Path) -> None:
        dests = estimate_paths(out / rel.parent, rel.stem, sep.num_sources)
        if not args.overwrite:
            for d in dests:
                if d.exists():  # before the separation: fail fast
                    raise FileExistsError(f"{d} already exists (pass --overwrite to replace it, or choose another "
                                          f"--out)")
        wave, rate = _load(path)
        if rate != sep.sample_rate:
            _note(f"{path}: {rate} Hz resampled to the model's {sep.sample_rate} Hz; estimates written at {rate} Hz")
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*resampl.*")  # noted above
            est = np.asarray(sep.separate(wave, rate))  # [S, T] at the input's rate
        scale = write_estimates(est, rate, dests, overwrite=args.overwrite)
        if scale != 1.0:  # scale-invariant training leaves the level free: avoid clipping in PCM_16
            _note(f"{path}: estimates peaked at {0.999 / scale:.2f}; scaled by {scale:.3f} to avoid clipping")
        print(f"{path}\t" + "\t".join(map(str, dests)), flush=True)

    return _run_files(files, one)


def cmd_transcribe(args) -> int:
    files = expand_inputs(args.inputs)
    asr = _transcriber(args)

    def one(path: pathlib.Path, rel: pathlib.Path) -> None:
        wave, rate = _load(path)
        if rate != asr.sample_rate:
            _note(f"{path}: {rate} Hz resampled to the model's {asr.sample_rate} Hz")
        with warnings.catch_warnings():  # the Transcriber checks the samples before it resamples
            warnings.filterwarnings("ignore", message=".*resampl.*")  # noted above
            text = asr.transcribe_long(wave, rate, method=args.method, beam_size=args.beam_size,  # pieces of
                                       progress=sys.stderr.isatty())  # <= 20 s: flat memory on long files
        print(f"{path}\t{text}", flush=True)

    return _run_files(files, one)


EVAL_OUTPUTS = ("utterances.csv", "summary.json", "spectrogram_*.png")


def _prepare_eval_out(out: str | None, overwrite: bool) -> None:
    """Refuses an ``--out`` that holds an earlier evaluation, or (``--overwrite``) removes its files, so no stale
    spectrogram stays beside the new summary."""
    if out is None:
        return
    p = _out_folder(out)
    old = sorted(f for pattern in EVAL_OUTPUTS for f in p.glob(pattern)) if p.is_dir() else []
    if old and not overwrite:
        raise UsageError(f"--out {out} already holds an evaluation ({', '.join(f.name for f in old[:3])}"
                         f"{', ...' if len(old) > 3 else ''}): pass --overwrite to replace it, or choose another --out")
    for f in old:
        f.unlink()


def cmd_evaluate(args) -> int:
    from mamba_jax.checkpoint import read_config
    from mamba_jax.inference import evaluate as ev

    _prepare_eval_out(args.out, args.overwrite)  # before loading anything
    try:
        ck_config, step = read_config(args.checkpoint)
    except FileNotFoundError as e:
        raise CliError(str(e)) from e
    config = ck_config
    if args.config:
        config = _load_config(args.config)
        if config.get("task") != ck_config.get("task") or config.model.name != ck_config.model.name:
            raise CliError(f"--config {args.config} is a {config.get('task')!r} {config.model.name!r} config but "
                           f"{args.checkpoint} holds a {ck_config.get('task')!r} {ck_config.model.name!r} model")
    if args.data_root:
        config.data.root = args.data_root
    common = dict(split=args.split, max_utterances=args.max_utterances, out_dir=args.out,
                  checkpoint=str(pathlib.Path(args.checkpoint).expanduser().absolute()), step=step)
    if ck_config.get("task") == "separation":
        if args.method or args.beam_size:
            raise CliError("--method/--beam-size apply to ASR checkpoints only")
        sep = _separator(args, ck_config)
        summary, _ = ev.evaluate_separation(sep, config, n_plots=args.plots, perceptual=not args.no_perceptual,
                                            chunk_seconds=args.chunk_seconds, hop_seconds=args.hop_seconds, **common)
    elif ck_config.get("task") == "asr":
        asr = _transcriber(args, ck_config)
        summary, _ = ev.evaluate_asr(asr, config, method=args.method, beam_size=args.beam_size, **common)
    else:
        raise CliError(f"{args.checkpoint}: unknown task {ck_config.get('task')!r}")
    print(json.dumps(summary, indent=2))
    if args.out:
        _note(f"per-utterance metrics in {pathlib.Path(args.out) / 'utterances.csv'}, "
              f"summary in {pathlib.Path(args.out) / 'summary.json'}")
    return 0


def _load_config(spec: str):
    """``get_config`` of ``spec``; a missing file or a bad ``:arg`` is a ``UsageError``."""
    from mamba_jax.config import config_file_problem, load_config

    problem = config_file_problem(spec)
    if problem:
        raise UsageError(problem)
    try:
        return load_config(spec)
    except ValueError as e:  # get_config's "unknown config arg"
        raise UsageError(f"--config {spec}: {one_line(e)}") from e


def cmd_convert(args) -> int:
    from mamba_jax.convert import convert_checkpoint

    torch_ckpt = pathlib.Path(args.torch_checkpoint)
    if not torch_ckpt.exists():
        raise CliError(f"{torch_ckpt}: no such file or folder (the PyTorch checkpoint, or a SpeechBrain CKPT+ "
                       f"folder, to convert)")
    out = _out_folder(args.out)
    config = _load_config(args.config)
    try:
        result = convert_checkpoint(config, torch_ckpt, out)
    except ValueError as e:  # keys/shapes that do not fit: the message lists them all, one per line
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()] or [type(e).__name__]
        if "does not fit" not in lines[0]:
            raise CliError(one_line(e)) from e
        first = f"; first: {lines[1]}" if len(lines) > 1 else ""
        raise CliError(f"{lines[0].rstrip(':')}{first}. Is --config {args.config} the model and size this "
                       f"checkpoint was trained with? (--verbose lists every problem)") from e
    print(f"converted {torch_ckpt} -> {result if result is not None else args.out}")
    return 0


# ---- parser ---------------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="mamba-jax", description="Mamba speech models: separation and ASR.",
                                 epilog="Exit status: 0 ok, 1 failure, 2 usage error, 130 interrupted.")
    ap.add_argument("--verbose", action="store_true", help="show tracebacks (also MAMBA_JAX_VERBOSE=1)")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--verbose", action="store_true", default=argparse.SUPPRESS,
                        help="show the traceback of an error (also MAMBA_JAX_VERBOSE=1)")
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def ckpt(p, required=True):
        p.add_argument("--checkpoint", required=required, metavar="PATH",
                       help="training workdir, its checkpoints/ folder, or one step folder (latest step used)")
        p.add_argument("--scan-impl", default="auto", choices=["auto", "sequential", "associative", "pallas"],
                       help="selective-scan implementation (default: auto)")

    def positive(kind):
        def parse(s):
            v = kind(s)
            if v <= 0:
                raise argparse.ArgumentTypeError(f"must be > 0, got {s}")
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
                   help="separate long inputs in chunks of this many seconds (default: the model's choice)")
    p.add_argument("--hop-seconds", type=positive(float), default=None, help="hop between chunks, seconds")
    p.set_defaults(fn=cmd_separate)

    methods = ["joint", "ctc_beam", "ctc_greedy"]
    p = sub.add_parser("transcribe", parents=[common], help="transcribe audio files (prints path<TAB>text)")
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="audio files or folders (searched recursively for .wav, .flac, .mp3, .ogg, ...)")
    ckpt(p)
    p.add_argument("--tokenizer", default=None, metavar="PATH",
                   help="SentencePiece model (default: <workdir>/tokenizer/tokenizer.model)")
    p.add_argument("--method", choices=methods, default=None, help="search (default: the config's decoding.method)")
    p.add_argument("--beam-size", type=positive(int), default=None, help="beam (default: decoding.beam_size)")
    p.set_defaults(fn=cmd_transcribe)

    p = sub.add_parser("evaluate", parents=[common],
                       help="metrics of a checkpoint on a data split (CSV, JSON, plots)")
    ckpt(p)
    p.add_argument("--config", default=None, metavar="CONFIG",
                   help="configs/NAME.py[:ARG] whose data block to evaluate on (default: the checkpoint's config)")
    p.add_argument("--data-root", default=None, metavar="DIR",
                   help="override config.data.root (unset: the embedded synthetic corpus)")
    p.add_argument("--split", default="test", choices=["train", "valid", "test"])
    p.add_argument("--max-utterances", type=positive(int), default=None, metavar="N")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="write utterances.csv, summary.json and spectrogram PNGs here")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an earlier evaluation in --out (its CSV, JSON and PNGs are removed first)")
    p.add_argument("--plots", type=int, default=3, metavar="N", help="spectrogram PNGs of the first N (separation)")
    p.add_argument("--no-perceptual", action="store_true", help="skip PESQ and STOI (separation)")
    p.add_argument("--chunk-seconds", type=positive(float), default=None,
                   help="overlap-add windows of this many seconds past it (separation; default: whole utterances)")
    p.add_argument("--hop-seconds", type=positive(float), default=None, help="hop between windows, seconds")
    p.add_argument("--tokenizer", default=None, metavar="PATH", help="SentencePiece model (ASR)")
    p.add_argument("--method", choices=methods, default=None, help="search (ASR)")
    p.add_argument("--beam-size", type=positive(int), default=None, help="beam (ASR)")
    p.set_defaults(fn=cmd_evaluate)

    p = sub.add_parser("convert", parents=[common],
                       help="convert an original PyTorch checkpoint to a mamba-jax checkpoint")
    p.add_argument("--config", required=True, metavar="CONFIG", help="configs/NAME.py[:ARG] of the model")
    p.add_argument("--torch-checkpoint", required=True, metavar="PATH",
                   help="the original .pth/.ckpt file, or a SpeechBrain CKPT+... folder")
    p.add_argument("--out", required=True, metavar="DIR", help="workdir to write <out>/checkpoints/0/ into")
    p.set_defaults(fn=cmd_convert)
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``mamba-jax`` console script; returns the exit status (see the module docstring)."""
    args = build_parser().parse_args(argv)
    verbose = getattr(args, "verbose", False) or verbose_requested([])
    from mamba_jax.compile_cache import enable_compilation_cache

    enable_compilation_cache()  # before the first compilation; MAMBA_JAX_COMPILATION_CACHE=0 turns it off
    try:
        return int(args.fn(args) or 0)
    except KeyboardInterrupt:
        if verbose:
            traceback.print_exc()
        _error(f"{args.command}: interrupted (Ctrl-C); the outputs listed above are complete")
        return 130
    except CliError as e:
        if verbose:
            traceback.print_exc()
        _error(str(e))
        return e.status
    except Exception as e:  # library errors name the file/key and the problem: one line unless --verbose
        if verbose:
            traceback.print_exc()
        _error(f"{args.command}: {one_line(e)}" + ("" if verbose else f" {TRACEBACK_HINT}"))
        return 1


if __name__ == "__main__":
    sys.exit(main())
