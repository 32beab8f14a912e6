"""The ``mamba-jax`` subcommands (``cmd_<name>(args) -> exit status``) and the checkpoint loading they share."""

from __future__ import annotations

import json
import pathlib
import sys
import warnings

from mamba_jax.cli.errors import CliError, UsageError, note, one_line
from mamba_jax.cli.inputs import expand_inputs, load_input, run_files


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
    if getattr(args, "method", None) == "joint" and config.model.get("decoder", "transformer") == "none":
        # once, before loading anything: the same for every file
        raise UsageError(f"--method joint needs an attention decoder, but {args.checkpoint} is a CTC-only model "
                         f"(decoder 'none'): use --method ctc_beam or ctc_greedy")
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

    from mamba_jax.fileio import OutputError, check_writable
    from mamba_jax.inference.api import estimate_paths, write_estimates

    out = _out_folder(args.out)
    files = expand_inputs(args.inputs, exclude=out)  # not the estimates of an earlier run into a sub-folder
    try:
        check_writable(out)  # a read-only or full --out: before loading the model
    except OutputError as e:
        raise CliError(f"--out {e}; 0 of {len(files)} input(s) written") from e
    sep = _separator(args)
    sep.progress = sys.stderr.isatty()  # a bar for long inputs, in a terminal only

    def one(path: pathlib.Path, rel: pathlib.Path) -> None:
        dests = estimate_paths(out / rel.parent, rel.stem, sep.num_sources)
        if not args.overwrite:
            for d in dests:
                if d.exists():  # before the separation: fail fast
                    raise FileExistsError(f"{d} already exists (pass --overwrite to replace it, or choose another "
                                          f"--out)")
        wave, rate = load_input(path)
        if rate != sep.sample_rate:
            note(f"{path}: {rate} Hz resampled to the model's {sep.sample_rate} Hz; estimates written at {rate} Hz")
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*resampl.*")  # noted above
            est = np.asarray(sep.separate(wave, rate))  # [S, T] at the input's rate
        try:
            scale = write_estimates(est, rate, dests, overwrite=args.overwrite)
        except OutputError as e:
            e.folder_fault = _out_fault(e, out)
            raise
        if scale != 1.0:  # scale-invariant training leaves the level free: avoid clipping in PCM_16
            note(f"{path}: estimates peaked at {0.999 / scale:.2f}; scaled by {scale:.3f} to avoid clipping")
        print(f"{path}\t" + "\t".join(map(str, dests)), flush=True)

    return run_files(files, one)


def cmd_configs(args) -> int:
    """Lists ``configs/NAME.py`` with the first line of each module docstring (read, not imported)."""
    import ast

    if args.folder is not None:
        folder = pathlib.Path(args.folder).expanduser()
        if not folder.is_dir():
            raise UsageError(f"--folder {args.folder}: no such folder")
    else:
        here = pathlib.Path("configs")
        checkout = pathlib.Path(__file__).resolve().parents[2] / "configs"  # an editable install's checkout
        folder = here if here.is_dir() else checkout
        if not folder.is_dir():
            raise CliError("no configs/ folder here or in the installed checkout: run from the repository root "
                           "(git clone ... && cd mamba-jax), or pass --folder DIR")
    files = sorted(f for f in folder.glob("*.py") if not f.name.startswith("_"))
    if not files:
        raise CliError(f"{folder} holds no config (NAME.py)")
    width = max(len(str(f)) for f in files)
    for f in files:
        try:
            doc = ast.get_docstring(ast.parse(f.read_text(encoding="utf-8"))) or ""
        except (OSError, SyntaxError, ValueError) as e:
            doc = f"(unreadable: {one_line(e)})"
        print(f"{str(f):<{width}}  {doc.strip().splitlines()[0] if doc.strip() else '(no description)'}")
    return 0


def _out_fault(e, out: pathlib.Path) -> bool:
    """Whether the failed write ``e`` (an ``OutputError``) is a fault of the output folder ``out`` itself (the
    batch stops) rather than of one file or sub-folder (the batch goes on): ``out``'s file system is full, or
    ``out`` cannot be written to any more."""
    import errno

    from mamba_jax.fileio import OutputError, check_writable

    def device(p: pathlib.Path) -> int:
        while not p.exists() and p != p.parent:
            p = p.parent
        return p.stat().st_dev

    if e.errno in (errno.ENOSPC, errno.EDQUOT) and device(pathlib.Path(e.path).parent) == device(out):
        return True
    try:
        check_writable(out)
    except OutputError:
        return True
    return False


def cmd_transcribe(args) -> int:
    files = expand_inputs(args.inputs)
    asr = _transcriber(args)

    def one(path: pathlib.Path, rel: pathlib.Path) -> None:
        wave, rate = load_input(path)
        if rate != asr.sample_rate:
            note(f"{path}: {rate} Hz resampled to the model's {asr.sample_rate} Hz")
        with warnings.catch_warnings():  # the Transcriber checks the samples before it resamples
            warnings.filterwarnings("ignore", message=".*resampl.*")  # noted above
            text = asr.transcribe_long(wave, rate, method=args.method, beam_size=args.beam_size,  # pieces of
                                       progress=sys.stderr.isatty())  # <= 20 s: flat memory on long files
        print(f"{path}\t{text}", flush=True)

    return run_files(files, one)


EVAL_OUTPUTS = ("utterances.csv", "summary.json", "spectrogram_*.png")


def _prepare_eval_out(out: str | None, overwrite: bool) -> None:
    """Refuses an ``--out`` that holds an earlier evaluation, or (``--overwrite``) removes its files, so no stale
    spectrogram stays beside the new summary."""
    if out is None:
        return
    from mamba_jax.fileio import OutputError, check_writable

    p = _out_folder(out)
    try:
        check_writable(p)  # read-only or full: before loading the model
    except OutputError as e:
        raise CliError(f"--out {e}") from e
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
        note(f"per-utterance metrics in {pathlib.Path(args.out) / 'utterances.csv'}, "
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
    from mamba_jax.convert import convert_checkpoint, existing_checkpoints

    torch_ckpt = pathlib.Path(args.torch_checkpoint)
    if not torch_ckpt.exists():
        raise CliError(f"{torch_ckpt}: no such file or folder (the PyTorch checkpoint, or a SpeechBrain CKPT+ "
                       f"folder, to convert)")
    out = _out_folder(args.out)
    held = existing_checkpoints(out.absolute() / "checkpoints")
    if held and not args.overwrite:  # orbax would keep the old step 0 and write nothing
        raise UsageError(f"--out {args.out} already holds {held} (separate/transcribe would use them): pass "
                         f"--overwrite to replace them, or choose another --out")
    config = _load_config(args.config)
    try:
        result = convert_checkpoint(config, torch_ckpt, out, overwrite=args.overwrite)
    except ValueError as e:  # keys/shapes that do not fit: the message lists them all, one per line
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()] or [type(e).__name__]
        if "does not fit" not in lines[0]:
            raise CliError(one_line(e)) from e
        first = f"; first: {lines[1]}" if len(lines) > 1 else ""
        raise CliError(f"{lines[0].rstrip(':')}{first}. Is --config {args.config} the model and size this "
                       f"checkpoint was trained with? (--verbose lists every problem)") from e
    print(f"converted {torch_ckpt} -> {result if result is not None else args.out}")
    return 0
