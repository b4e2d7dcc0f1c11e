"""The `codec` command line: one parser tree. Each command is a module with `add_arguments(parser)` and
`run(args) -> exit code`; only the chosen command's module is imported.

Exit codes: 0 success; 1 other codec error; 2 bad usage (including outputs that would collide); 3 bad input
audio; 4 bad codes file; 5 bad or missing weights; 6 an output cannot be written (read-only folder, permission
denied, disk full); 130 interrupted. With several inputs, every file is tried and the exit code is that of
the first failure.
"""
from __future__ import annotations

import argparse
import importlib
import math
import sys
from pathlib import Path

from .errors import CodecError, UsageError
from .io.audio import AUDIO_SUFFIXES
from .io.inputs import INPUTS_HELP, output_paths, resolve_inputs
from .progress import progress_bar
from .threads import STREAM_THREADS, torch_threads

CODES_SUFFIX = ".codes"
EXIT_INTERRUPTED = 130
OUT_HELP = ("output file (one input file), or folder (ends in / or exists) under which the inputs' tree is "
            "mirrored; default: beside each input")

# command -> (module with add_arguments and run, one-line help)
COMMANDS = {
    "encode": ("codec.cli", "audio files, folders, globs or lists -> .codes files"),
    "decode": ("codec.cli", ".codes files -> audio (wav, or flac/ogg/... by the -o suffix)"),
    "info": ("codec.cli", "describe the model, or the codes files given"),
    "train": ("codec.train.loop", "train a codec from a YAML recipe"),
    "export": ("codec.train.export", "a training run -> an inference checkpoint"),
    "data": ("codec.train.prepare", "codec data prepare DIRS -o CORPUS: build a training corpus"),
    "eval": ("codec.eval.report", "quality table of codecs on held-out speech"),
    "compare": ("codec.eval.compare", "two `codec eval` reports on the same clips, clip by clip (paired differences)"),
    "tokenize": ("codec.tts.tokenize", "audio -> Parquet shards of codes for LM training"),
    "bench": ("codec.bench", "speed tables (codec bench model|stream|train|kernels)"),
    "diagnose": ("codec.diagnose",
                 "measurements of the model's parts on a corpus split (phase|head|pitch|rvq|envelope|fit|stream)"),
}


def _run_batch(args, jobs: list[tuple[Path, Path]], work) -> int:
    """Run `work(src, dst, show_progress)` for every pair; a failure is one line and the next file is still
    tried. Returns the first failure's exit code, or 0."""
    status = 0
    show = not args.quiet and sys.stderr.isatty()
    for src, dst in progress_bar(show and len(jobs) > 1, iterable=jobs, desc="files", unit="file"):
        try:
            work(src, dst, show)
            if not args.quiet:
                print(f"{src} -> {dst}", file=sys.stderr)
        except CodecError as err:
            print(f"codec: error: {err}", file=sys.stderr)
            status = status or err.exit_code
    return status


def _load(args):
    from .checkpoint import load

    model = load(args.model)
    if getattr(args, "n_codebooks", None) is not None and not 1 <= args.n_codebooks <= model.n_codebooks:
        raise UsageError(f"--n-codebooks must be 1 to {model.n_codebooks}")
    return model


def _common(p) -> None:
    p.add_argument("--model", default=None, help="shipped model name or checkpoint folder (default: the shipped model)")
    p.add_argument("--bf16", action="store_true", help="bfloat16 autocast (fast only on CPUs with native bf16)")
    p.add_argument("-q", "--quiet", action="store_true", help="print errors only")


def add_encode_arguments(p) -> None:
    p.add_argument("inputs", nargs="+", help=INPUTS_HELP)
    p.add_argument("-o", "--out", "--output", dest="out", help=OUT_HELP)
    p.add_argument("-n", "--n-codebooks", type=int, default=None, help="codebooks to keep, 1-37 (8 = 1 kbit/s)")
    p.add_argument("--keep-channels", action="store_true", help="code each channel on its own instead of downmixing")
    p.add_argument("--chunk-seconds", type=float, default=10.0, help="audio read and coded per step (bounds memory)")
    _common(p)


def run_encode(args) -> int:
    from .io.file_coding import encode_file

    if not 0 < args.chunk_seconds < math.inf:
        raise UsageError(f"--chunk-seconds must be a positive number of seconds, got {args.chunk_seconds:g}")
    inputs = resolve_inputs(args.inputs)
    jobs = list(zip([i.path for i in inputs], output_paths(inputs, args.out, CODES_SUFFIX)))
    for _, dst in jobs:
        if dst.suffix.lower() in AUDIO_SUFFIXES:  # codes under an audio name would overwrite audio unnoticed
            raise UsageError(f"-o {dst}: encode writes a codes file, not audio; name it "
                             f"{dst.with_suffix(CODES_SUFFIX)} (nothing was written)")
    model = _load(args)
    return _run_batch(args, jobs, lambda src, dst, show: encode_file(
        model, src, dst, n_codebooks=args.n_codebooks, mono=not args.keep_channels,
        chunk_seconds=args.chunk_seconds, bf16=args.bf16, progress=show))


def add_decode_arguments(p) -> None:
    p.add_argument("inputs", nargs="+", help=INPUTS_HELP)
    p.add_argument("-o", "--out", "--output", dest="out", help=OUT_HELP + "; - for raw 16-bit PCM on stdout")
    p.add_argument("--stream", action="store_true",
                   help="with -o -: decode and write each 80 ms frame as soon as it is ready (raw s16le PCM)")
    p.add_argument("--chunk-frames", type=int, default=125, help="frames decoded per step (125 = 10 s; bounds memory)")
    p.add_argument("--threads", type=int, default=None,
                   help=f"torch intra-op threads (default: {STREAM_THREADS} with -o -, whose per-frame calls are "
                        "too small to share out; torch's default otherwise)")
    _common(p)


def run_decode(args) -> int:
    from .io.audio import output_format
    from .io.file_coding import decode_file, decode_to_stdout

    if args.stream and args.out != "-":
        raise UsageError("--stream writes raw PCM frame by frame to standard output: use it with -o -")
    if args.chunk_frames < 1:
        raise UsageError(f"--chunk-frames must be at least 1, got {args.chunk_frames}")
    if args.threads is not None and args.threads < 1:
        raise UsageError(f"--threads must be at least 1, got {args.threads}")
    inputs = resolve_inputs(args.inputs, {CODES_SUFFIX})
    if args.out == "-":  # always frame by frame (--stream states it explicitly)
        if len(inputs) != 1:
            raise UsageError(f"-o - (raw PCM to standard output) takes exactly one codes file, got {len(inputs)}")
        decode_to_stdout(_load(args), inputs[0].path, bf16=args.bf16, threads=args.threads or STREAM_THREADS)
        return 0
    jobs = list(zip([i.path for i in inputs], output_paths(inputs, args.out, ".wav")))
    for _, dst in jobs:
        output_format(dst)  # an output that is not audio (-o x.txt) is refused before anything is written
    model = _load(args)
    with torch_threads(args.threads):
        return _run_batch(args, jobs, lambda src, dst, show: decode_file(
            model, src, dst, chunk_frames=args.chunk_frames, bf16=args.bf16, progress=show))


def add_info_arguments(p) -> None:
    p.add_argument("codes", nargs="*", help=".codes files to describe instead of the model (" + INPUTS_HELP + ")")
    p.add_argument("--model", default=None)


def run_info(args) -> int:
    from .checkpoint import describe, load
    from .io.codes_file import read_header

    if not args.codes:
        print(describe(load(args.model)))
        return 0
    status = 0
    for path in (i.path for i in resolve_inputs(args.codes, {CODES_SUFFIX})):
        try:
            header = read_header(path)  # checks the whole file, holds only the header
        except CodecError as err:
            print(f"codec: error: {err}", file=sys.stderr)
            status = status or err.exit_code
            continue
        seconds = header.samples / header.sample_rate
        print(f"{path}: {header.channels} channel(s), {header.n_codebooks} codebooks x {header.frames} frames, "
              f"{seconds:.2f} s at {header.sample_rate} Hz, model {header.model} ({header.checksum[:12]})")
    return status


_HERE = {"encode": (add_encode_arguments, run_encode), "decode": (add_decode_arguments, run_decode),
         "info": (add_info_arguments, run_info)}


def _command(name: str):
    """(add_arguments, run) of a command."""
    if name in _HERE:
        return _HERE[name]
    module = importlib.import_module(COMMANDS[name][0])
    return module.add_arguments, module.run


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser tree; the arguments of `command` only (the others would import every command's code)."""
    p = argparse.ArgumentParser(prog="codec", description="Neural speech codec: 24 kHz, 12.5 frames/s, up to 37 "
                                "codebooks.", epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (_, help_text) in COMMANDS.items():
        sp = sub.add_parser(name, help=help_text, description=help_text,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
        if name == command:
            if name not in _HERE:  # the command module's docstring is its manual
                sp.description = importlib.import_module(COMMANDS[name][0]).__doc__
            _command(name)[0](sp)
    return p


def _version() -> str:
    from . import __version__

    return __version__


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv[:2] == ["bench", "kernels"]:
            # Its options go to the kernel benchmark untouched (--help included).
            from .kernels.bench import main as kernels_main

            return kernels_main(argv[2:])
        command = argv[0] if argv and argv[0] in COMMANDS else None
        args = build_parser(command).parse_args(argv)
        return _command(args.command)[1](args)
    except CodecError as err:
        print(f"codec: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("codec: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return 0  # the reader of standard output went away (e.g. a player closed): not an error


if __name__ == "__main__":
    sys.exit(main())
