"""``mamba-jax``: separate, transcribe, evaluate and convert from the command line.

    mamba-jax separate mix.wav folder/ --checkpoint runs/sepmamba_s --out separated/
    mamba-jax transcribe a.flac b.wav --checkpoint runs/conmamba_small [--method ctc_greedy] [--beam-size 4]
    mamba-jax evaluate --checkpoint runs/sepmamba_s [--config configs/sepmamba_s.py] [--split test] \\
        [--max-utterances 100] [--out eval/]
    mamba-jax convert --config configs/mambatasnet_s.py --torch-checkpoint model.pth --out runs/mt_s_torch

``--checkpoint`` is a training workdir, its ``checkpoints/`` folder or one step folder (the latest step is
used). Inputs may be files or folders (searched recursively for ``*.wav`` / ``*.flac``); stereo is averaged
and other sample rates are resampled, each with a note on stderr. ``separate`` writes ``<out>/<stem>_s<k>.wav``
at the input's rate (a folder input keeps its sub-folders under ``<out>``); ``transcribe`` prints
``path<TAB>text``. A file that cannot be processed (corrupt, empty, silent) is reported with its path and
skipped; the command then exits with status 1 after listing the failures. Usage errors exit with 2.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import warnings
from collections.abc import Callable, Sequence

AUDIO_SUFFIXES = (".wav", ".flac")


class CliError(Exception):
    """A problem to report in one line (no traceback), exit status 1."""


def _note(msg: str) -> None:
    print(f"note: {msg}", file=sys.stderr, flush=True)


def _error(msg: str) -> None:
    print(f"error: {msg}", file=sys.stderr, flush=True)


# ---- inputs ---------------------------------------------------------------------------------------------------
def expand_inputs(inputs: Sequence[str]) -> list[tuple[pathlib.Path, pathlib.Path]]:
    """``(file, name relative to the output folder)`` for every file argument and every ``*.wav``/``*.flac``
    under a folder argument (sorted). A missing path or a folder without audio is a ``CliError``."""
    out = []
    for arg in inputs:
        p = pathlib.Path(arg).expanduser()
        if p.is_dir():
            files = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in AUDIO_SUFFIXES)
            if not files:
                raise CliError(f"{p}: folder holds no .wav or .flac file")
            out.extend((f, f.relative_to(p)) for f in files)
        elif p.is_file():
            out.append((p, pathlib.Path(p.name)))
        else:
            raise CliError(f"{p}: no such file or folder")
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
            _error(str(e))
            failed.append(str(path))
        except ValueError as e:
            _error(f"{path}: {e}")
            failed.append(str(path))
    if failed:
        _error(f"{len(failed)} of {len(files)} file(s) failed: " + ", ".join(failed))
        return 1
    return 0


# ---- checkpoints ----------------------------------------------------------------------------------------------
def _load_checkpoint(path: str, task: str, command: str):
    """``(config, params, rest)`` of the checkpoint under ``path``; it must be a ``task`` checkpoint."""
    from mamba_jax.training.checkpoint import load_params

    try:
        config, params, rest, step = load_params(path)
    except FileNotFoundError as e:
        raise CliError(str(e)) from e
    if config.get("task") != task:
        fits = {"separation": "separate", "asr": "transcribe"}.get(config.get("task"), "evaluate")
        raise CliError(f"{path} is a {config.get('task')!r} checkpoint (model {config.model.get('name')!r}); "
                       f"`mamba-jax {command}` needs a {task!r} checkpoint (use `mamba-jax {fits}` with this one)")
    return config, params, rest


def _separator(args, config=None, params=None, rest=None):
    from mamba_jax.inference.separator import Separator
    from mamba_jax.training.checkpoint import model_from_params

    if config is None:
        config, params, rest = _load_checkpoint(args.checkpoint, "separation", args.command)
    model = model_from_params(config, params, rest, scan_impl=args.scan_impl)
    kw = {}
    if getattr(args, "chunk_seconds", None) is not None:
        kw["chunk_seconds"] = args.chunk_seconds
    if getattr(args, "hop_seconds", None) is not None:
        kw["hop_seconds"] = args.hop_seconds
    return Separator.from_model(model, config, **kw)


def _transcriber(args, config=None, params=None, rest=None):
    from mamba_jax.inference.transcriber import Transcriber
    from mamba_jax.tokenizer import Tokenizer
    from mamba_jax.training.checkpoint import find_tokenizer, model_from_params

    if config is None:
        config, params, rest = _load_checkpoint(args.checkpoint, "asr", args.command)
    try:
        tok = args.tokenizer or find_tokenizer(args.checkpoint, config)
        tokenizer = Tokenizer(str(tok))
    except FileNotFoundError as e:
        raise CliError(f"{e} (pass --tokenizer PATH)") from e
    model = model_from_params(config, params, rest, scan_impl=args.scan_impl)
    return Transcriber.from_model(model, config, tokenizer)


# ---- commands -------------------------------------------------------------------------------------------------
def cmd_separate(args) -> int:
    import numpy as np

    from mamba_jax.data.audio import write_audio

    files = expand_inputs(args.inputs)
    sep = _separator(args)
    out = pathlib.Path(args.out)

    def one(path: pathlib.Path, rel: pathlib.Path) -> None:
        wave, rate = _load(path)
        if rate != sep.sample_rate:
            _note(f"{path}: {rate} Hz resampled to the model's {sep.sample_rate} Hz; estimates written at {rate} Hz")
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*resampl.*")  # noted above
            est = np.asarray(sep.separate(wave, rate))  # [S, T] at the input's rate
        peak = float(np.max(np.abs(est)))
        if peak > 0.999:  # scale-invariant training leaves the level free: avoid clipping in PCM_16
            est = est * (0.999 / peak)
            _note(f"{path}: estimates peaked at {peak:.2f}; scaled by {0.999 / peak:.3f} to avoid clipping")
        written = []
        for k in range(est.shape[0]):
            dest = out / rel.parent / f"{rel.stem}_s{k + 1}.wav"
            write_audio(dest, est[k], rate)
            written.append(str(dest))
        print(f"{path}\t" + "\t".join(written), flush=True)

    return _run_files(files, one)


def cmd_transcribe(args) -> int:
    from mamba_jax.data.audio import resample

    files = expand_inputs(args.inputs)
    asr = _transcriber(args)

    def one(path: pathlib.Path, rel: pathlib.Path) -> None:
        wave, rate = _load(path)
        if rate != asr.sample_rate:
            _note(f"{path}: {rate} Hz resampled to the model's {asr.sample_rate} Hz")
            wave = resample(wave, rate, asr.sample_rate)
        text = asr.transcribe(wave, asr.sample_rate, method=args.method, beam_size=args.beam_size)
        print(f"{path}\t{text}", flush=True)

    return _run_files(files, one)


def cmd_evaluate(args) -> int:
    from mamba_jax.inference import evaluate as ev
    from mamba_jax.training.checkpoint import load_params

    try:
        ck_config, params, rest, _ = load_params(args.checkpoint)
    except FileNotFoundError as e:
        raise CliError(str(e)) from e
    config = ck_config
    if args.config:
        from mamba_jax.summary import load_config

        try:
            config = load_config(args.config)
        except FileNotFoundError as e:
            raise CliError(str(e)) from e
        if config.get("task") != ck_config.get("task") or config.model.name != ck_config.model.name:
            raise CliError(f"--config {args.config} is a {config.get('task')!r} {config.model.name!r} config but "
                           f"{args.checkpoint} holds a {ck_config.get('task')!r} {ck_config.model.name!r} model")
    if args.data_root:
        config.data.root = args.data_root
    common = dict(split=args.split, max_utterances=args.max_utterances, out_dir=args.out)
    if ck_config.get("task") == "separation":
        if args.method or args.beam_size:
            raise CliError("--method/--beam-size apply to ASR checkpoints only")
        sep = _separator(args, ck_config, params, rest)
        summary, _ = ev.evaluate_separation(sep, config, n_plots=args.plots, perceptual=not args.no_perceptual,
                                            chunk_seconds=args.chunk_seconds, hop_seconds=args.hop_seconds, **common)
    elif ck_config.get("task") == "asr":
        asr = _transcriber(args, ck_config, params, rest)
        summary, _ = ev.evaluate_asr(asr, config, method=args.method, beam_size=args.beam_size, **common)
    else:
        raise CliError(f"{args.checkpoint}: unknown task {ck_config.get('task')!r}")
    print(json.dumps(summary, indent=2))
    if args.out:
        _note(f"per-utterance metrics in {pathlib.Path(args.out) / 'utterances.csv'}, "
              f"summary in {pathlib.Path(args.out) / 'summary.json'}")
    return 0


def cmd_convert(args) -> int:
    from mamba_jax.convert import convert_checkpoint
    from mamba_jax.summary import load_config

    torch_ckpt = pathlib.Path(args.torch_checkpoint)
    if not torch_ckpt.exists():
        raise CliError(f"{torch_ckpt}: no such file or folder (the PyTorch checkpoint, or a SpeechBrain CKPT+ "
                       f"folder, to convert)")
    try:
        config = load_config(args.config)
    except FileNotFoundError as e:
        raise CliError(str(e)) from e
    result = convert_checkpoint(config, torch_ckpt, args.out)
    print(f"converted {torch_ckpt} -> {result if result is not None else args.out}")
    return 0


# ---- parser ---------------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="mamba-jax", description="Mamba speech models: separation and ASR.")
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

    p = sub.add_parser("separate", help="separate the speakers of audio files",
                       description="Writes <out>/<stem>_s<k>.wav for every input, at the input's rate.")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="audio files or folders (*.wav, *.flac, recursive)")
    ckpt(p)
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("--chunk-seconds", type=positive(float), default=None,
                   help="separate long inputs in chunks of this many seconds (default: the model's choice)")
    p.add_argument("--hop-seconds", type=positive(float), default=None, help="hop between chunks, seconds")
    p.set_defaults(fn=cmd_separate)

    methods = ["joint", "ctc_beam", "ctc_greedy"]
    p = sub.add_parser("transcribe", help="transcribe audio files (prints path<TAB>text)")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="audio files or folders (*.wav, *.flac, recursive)")
    ckpt(p)
    p.add_argument("--tokenizer", default=None, metavar="PATH",
                   help="SentencePiece model (default: <workdir>/tokenizer/tokenizer.model)")
    p.add_argument("--method", choices=methods, default=None, help="search (default: the config's decoding.method)")
    p.add_argument("--beam-size", type=positive(int), default=None, help="beam (default: decoding.beam_size)")
    p.set_defaults(fn=cmd_transcribe)

    p = sub.add_parser("evaluate", help="metrics of a checkpoint on a data split (CSV, JSON, plots)")
    ckpt(p)
    p.add_argument("--config", default=None, metavar="CONFIG",
                   help="configs/NAME.py[:ARG] whose data block to evaluate on (default: the checkpoint's config)")
    p.add_argument("--data-root", default=None, metavar="DIR",
                   help="override config.data.root (unset: the embedded synthetic corpus)")
    p.add_argument("--split", default="test", choices=["train", "valid", "test"])
    p.add_argument("--max-utterances", type=positive(int), default=None, metavar="N")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="write utterances.csv, summary.json and spectrogram PNGs here")
    p.add_argument("--plots", type=int, default=3, metavar="N", help="spectrogram PNGs of the first N (separation)")
    p.add_argument("--no-perceptual", action="store_true", help="skip PESQ and STOI (separation)")
    p.add_argument("--chunk-seconds", type=positive(float), default=None,
                   help="overlap-add windows of this many seconds past it (separation; default: whole utterances)")
    p.add_argument("--hop-seconds", type=positive(float), default=None, help="hop between windows, seconds")
    p.add_argument("--tokenizer", default=None, metavar="PATH", help="SentencePiece model (ASR)")
    p.add_argument("--method", choices=methods, default=None, help="search (ASR)")
    p.add_argument("--beam-size", type=positive(int), default=None, help="beam (ASR)")
    p.set_defaults(fn=cmd_evaluate)

    p = sub.add_parser("convert", help="convert an original PyTorch checkpoint to a mamba-jax checkpoint")
    p.add_argument("--config", required=True, metavar="CONFIG", help="configs/NAME.py[:ARG] of the model")
    p.add_argument("--torch-checkpoint", required=True, metavar="PATH",
                   help="the original .pth/.ckpt file, or a SpeechBrain CKPT+... folder")
    p.add_argument("--out", required=True, metavar="DIR", help="workdir to write <out>/checkpoints/0/ into")
    p.set_defaults(fn=cmd_convert)
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``mamba-jax`` console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    from mamba_jax.compile_cache import enable_compilation_cache

    enable_compilation_cache()  # before the first compilation; MAMBA_JAX_COMPILATION_CACHE=0 turns it off
    try:
        return int(args.fn(args) or 0)
    except CliError as e:
        _error(str(e))
        return 1
    except (FileNotFoundError, ValueError) as e:  # library errors name the file/key and the problem
        _error(f"{args.command}: {e}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
