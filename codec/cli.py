"""The `codec` command line: encode, decode, info, train, bench, tokenize.

Exit codes: 0 success; 1 other codec error; 2 bad usage (including outputs that would collide); 3 bad input
audio; 4 bad codes file; 5 bad or missing weights; 6 an output cannot be written (read-only folder, permission
denied, disk full); 130 interrupted. With several inputs, every file is tried and the exit code is that of
the first failure.
"""
from __future__ import annotations

import argparse
import glob
import math
import os
import sys
from pathlib import Path
from typing import NamedTuple

from .audio import AUDIO_SUFFIXES, audio_files, output_format
from .errors import CodecError, InputError, UsageError
from .progress import progress_bar
from .threads import STREAM_THREADS, torch_threads

CODES_SUFFIX = ".codes"
EXIT_INTERRUPTED = 130


class Input(NamedTuple):
    path: Path
    rel: Path  # where its output goes under an output folder: the input's place under the folder or glob
    listed: bool  # found by listing a folder or expanding a glob, not named on the command line


def expand_inputs(items: list[str], suffixes: set[str]) -> list[Input]:
    """Files as given, folders searched recursively for `suffixes`, globs expanded; order kept, no repeats."""
    out: list[Input] = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            found = audio_files(path, suffixes)
            if not found:
                raise InputError(f"{path}: folder holds no {'/'.join(sorted(suffixes))} files")
            out += [Input(p, p.relative_to(path), True) for p in found]
        elif any(ch in item for ch in "*?[") and not path.exists():
            matches = sorted(Path(p) for p in glob.glob(item, recursive=True) if Path(p).is_file())
            if not matches:
                raise InputError(f"{item}: pattern matches no files")
            base = _fixed_part(path)
            out += [Input(p, p.relative_to(base) if p.is_relative_to(base) else Path(p.name), True) for p in matches]
        else:
            out.append(Input(path, Path(path.name), False))  # a missing file is reported when it is processed
    seen: set[Path] = set()
    return [i for i in out if not (i.path in seen or seen.add(i.path))]


def _fixed_part(pattern: Path) -> Path:
    """The leading folders of a glob pattern that hold no wildcard: what its matches are mirrored under."""
    parts = []
    for part in pattern.parent.parts:
        if any(ch in part for ch in "*?["):
            break
        parts.append(part)
    return Path(*parts) if parts else Path(".")


def output_paths(inputs: list[Input], output: str | None, suffix: str) -> list[Path]:
    """One output per input: beside it by default. `output` names a file for a single input, or a folder
    (it ends in / or exists as one) under which the inputs' tree is mirrored. Raises UsageError before
    anything is written if two inputs would share an output or an output would overwrite an input."""
    if output is None:
        outputs = [i.path.with_suffix(suffix) for i in inputs]
    elif output.endswith(("/", os.sep)) or Path(output).is_dir():
        outputs = [Path(output) / i.rel.with_suffix(suffix) for i in inputs]
    elif len(inputs) > 1 or any(i.listed for i in inputs):
        raise UsageError(f"-o {output}: several inputs, or a folder or pattern, need an output folder: end it "
                         f"with / (-o {output}/) or create the folder first")
    else:
        outputs = [Path(output)]
    sources = {_key(i.path) for i in inputs}
    writers: dict[str, Path] = {}
    for i, dst in zip(inputs, outputs):
        key = _key(dst)
        if key in sources:
            raise UsageError(f"{dst}: the output of {i.path} would overwrite an input; nothing was written")
        if key in writers:
            raise UsageError(f"{writers[key]} and {i.path} would both be written to {dst}; nothing was written: "
                             "rename one or code them in separate runs")
        writers[key] = i.path
    return outputs


def _key(path: Path) -> str:
    return os.path.normcase(os.path.abspath(path))


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


def cmd_encode(args) -> int:
    from .streaming_io import encode_file

    if not 0 < args.chunk_seconds < math.inf:
        raise UsageError(f"--chunk-seconds must be a positive number of seconds, got {args.chunk_seconds:g}")
    inputs = expand_inputs(args.inputs, AUDIO_SUFFIXES)
    jobs = list(zip([i.path for i in inputs], output_paths(inputs, args.output, CODES_SUFFIX)))
    model = _load(args)
    return _run_batch(args, jobs, lambda src, dst, show: encode_file(
        model, src, dst, n_codebooks=args.n_codebooks, mono=not args.keep_channels,
        chunk_seconds=args.chunk_seconds, bf16=args.bf16, progress=show))


def cmd_decode(args) -> int:
    from .streaming_io import decode_file, decode_to_stdout

    if args.stream and args.output != "-":
        raise UsageError("--stream writes raw PCM frame by frame to standard output: use it with -o -")
    if args.chunk_frames < 1:
        raise UsageError(f"--chunk-frames must be at least 1, got {args.chunk_frames}")
    if args.threads is not None and args.threads < 1:
        raise UsageError(f"--threads must be at least 1, got {args.threads}")
    inputs = expand_inputs(args.inputs, {CODES_SUFFIX})
    if args.output == "-":  # always frame by frame (--stream states it explicitly)
        if len(inputs) != 1:
            raise UsageError(f"-o - (raw PCM to standard output) takes exactly one codes file, got {len(inputs)}")
        decode_to_stdout(_load(args), inputs[0].path, bf16=args.bf16, threads=args.threads or STREAM_THREADS)
        return 0
    jobs = list(zip([i.path for i in inputs], output_paths(inputs, args.output, ".wav")))
    for _, dst in jobs:
        output_format(dst)  # an output that is not audio (-o x.txt) is refused before anything is written
    model = _load(args)
    with torch_threads(args.threads):
        return _run_batch(args, jobs, lambda src, dst, show: decode_file(
            model, src, dst, chunk_frames=args.chunk_frames, bf16=args.bf16, progress=show))


def _load(args):
    from .weights import load

    model = load(args.model)
    if getattr(args, "n_codebooks", None) is not None and not 1 <= args.n_codebooks <= model.n_codebooks:
        raise UsageError(f"--n-codebooks must be 1 to {model.n_codebooks}")
    return model


def cmd_info(args) -> int:
    from .codes_file import read_header
    from .weights import load

    if args.codes:
        status = 0
        for path in (i.path for i in expand_inputs(args.codes, {CODES_SUFFIX})):
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
    model = load(args.model)
    print(describe(model))
    return 0


def describe(model) -> str:
    """A human summary of a model: shape, bitrates, checksum, and how it was trained."""
    cfg = model.config
    params = sum(p.numel() for p in model.parameters())
    lines = [
        f"model       {cfg.name}",
        f"checksum    {model.checksum}",
        f"parameters  {params / 1e6:.2f} M",
        f"audio       {cfg.sample_rate} Hz mono, frames of {cfg.frame_size} samples ({cfg.frame_rate:g} frames/s)",
        f"latency     {cfg.latency_ms:g} ms algorithmic (one frame + {cfg.lookahead} samples lookahead + "
        f"{cfg.synthesis_delay} samples of synthesis overlap)",
        f"codebooks   {cfg.n_codebooks} x {cfg.codebook_size} entries ({cfg.bits_per_code} bits each)",
        "bitrates    " + ", ".join(f"{n}: {cfg.bitrate(n) / 1000:.3g} kbit/s" for n in (1, 8, 17, 37) if n <= cfg.n_codebooks),
    ]
    if cfg.training:
        lines.append("training")
        lines += [f"  {k:<22} {v}" for k, v in cfg.training.items()]
    else:
        lines.append("training    none recorded: these weights are untrained or of unknown origin")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="codec", description="Neural speech codec: 24 kHz, 12.5 frames/s, up to 37 codebooks.",
                                epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp):
        sp.add_argument("--model", default=None, help="shipped model name or checkpoint folder (default: the shipped model)")
        sp.add_argument("--bf16", action="store_true", help="bfloat16 autocast (fast only on CPUs with native bf16)")
        sp.add_argument("-q", "--quiet", action="store_true", help="print errors only")

    enc = sub.add_parser("encode", help="audio files, folders or globs -> .codes files")
    enc.add_argument("inputs", nargs="+")
    enc.add_argument("-o", "--output", help="output file (one input file), or folder (ends in / or exists) under "
                     "which the inputs' tree is mirrored; default: beside each input")
    enc.add_argument("-n", "--n-codebooks", type=int, default=None, help="codebooks to keep, 1-37 (8 = 1 kbit/s)")
    enc.add_argument("--keep-channels", action="store_true", help="code each channel on its own instead of downmixing")
    enc.add_argument("--chunk-seconds", type=float, default=10.0, help="audio read and coded per step (bounds memory)")
    common(enc)

    dec = sub.add_parser("decode", help=".codes files or folders -> audio (wav, or flac/ogg by the -o suffix)")
    dec.add_argument("inputs", nargs="+")
    dec.add_argument("-o", "--output", help="output file (one input file), folder (ends in / or exists; the inputs' "
                     "tree is mirrored), or - for raw 16-bit PCM on stdout")
    dec.add_argument("--stream", action="store_true",
                     help="with -o -: decode and write each 80 ms frame as soon as it is ready (raw s16le PCM)")
    dec.add_argument("--chunk-frames", type=int, default=125,
                     help="frames decoded per step (125 = 10 s; bounds memory)")
    dec.add_argument("--threads", type=int, default=None,
                     help=f"torch intra-op threads (default: {STREAM_THREADS} with -o -, whose per-frame calls are "
                          "too small to share out; torch's default otherwise)")
    common(dec)

    info = sub.add_parser("info", help="describe the model (or codes files given as arguments)")
    info.add_argument("codes", nargs="*", help=".codes files to describe instead of the model")
    info.add_argument("--model", default=None)

    sub.add_parser("train", help="train a codec from a YAML recipe (see codec train --help)", add_help=False)
    sub.add_parser("bench", help="speed benchmarks (codec bench kernels)", add_help=False)
    sub.add_parser("eval", help="quality table of codecs on held-out speech (codec eval --help)", add_help=False)
    sub.add_parser("tokenize", help="codec tokenize DIR_OR_MANIFEST -o OUT: Parquet shards of codes for LM training",
                   add_help=False)
    sub.add_parser("export", help="codec export RUN -o DIR: a training run -> an inference checkpoint", add_help=False)
    sub.add_parser("data", help="codec data prepare DIRS -o CORPUS: build a training corpus", add_help=False)
    return p


def _version() -> str:
    from . import __version__

    return __version__


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv[:1] == ["train"]:
            from .train import main as train_main

            return train_main(argv[1:])
        if argv[:2] == ["data", "prepare"]:
            from .data import main as prepare_main

            return prepare_main(argv[2:])
        if argv[:1] == ["eval"]:
            from .eval.report import main as eval_main

            return eval_main(argv[1:])
        if argv[:1] == ["tokenize"]:
            from .tokenize import main as tokenize_main

            return tokenize_main(argv[1:])
        if argv[:1] == ["export"]:
            from .export import main as export_main

            return export_main(argv[1:])
        if argv[:1] == ["bench"]:
            from .bench import main as bench_main

            return bench_main(argv[1:])
        args = build_parser().parse_args(argv)
        if args.command == "info":
            return cmd_info(args)
        return cmd_encode(args) if args.command == "encode" else cmd_decode(args)
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
