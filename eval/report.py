"""`codec eval`: bitrate and quality of codecs on the same held-out speech, one table and plots.

    codec eval SOURCE --codec codec:37 --codec codec:17 --codec codec:8 --codec opus:6 --out eval-out

SOURCE: a prepared corpus (its --split, default test), its manifest.jsonl, a folder of audio, a list file or one
file. Writes OUT/files/<codec>/<clip>.json per clip, OUT/summary.{json,md,csv}, OUT/rate_quality.png,
OUT/spectrogram.png and OUT/report.html (players, spectrograms and metrics per clip). Rerunning with the same OUT
reuses finished results (resumable). Definitions: docs/metrics.md; usage and plugging in your own codec:
docs/eval.md.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path


from codec.errors import CodecError, InputError, UsageError
from codec.progress import progress_bar

from .clips import RATE, Clip, find_clips
from .codecs import load_plugin, make_codec
from .protocol import CodecUnavailable
from .metrics import METRICS
from .run import (Worker, audio_path, init_worker, is_done, read_flac, result_path, run_in_worker, slug,
                  version_of)
from .summary import markdown, summarize, to_csv

def add_arguments(p) -> None:
    p.add_argument("source", help="prepared corpus folder or its manifest.jsonl, or an audio file, folder, glob or "
                   "list file (.txt/.lst/.list)")
    p.add_argument("--split", default="test",
                   help="corpus split (default test); SPLIT:SRC[,SRC] keeps only those sources of it")
    p.add_argument("--codec", action="append", metavar="SPEC",
                   help="codec:N (ours, N codebooks), opus:KBPS, codec2:MODE, speex:KBPS, amrwb:KBPS or a plugin's; "
                        "repeatable (default: ours at 8, 17, 37 and the classic codecs found here)")
    p.add_argument("--plugin", action="append", default=[], metavar="MODULE",
                   help="module or .py file that registers your own codec family (docs/eval.md); repeatable")
    p.add_argument("--model", default=None, help="checkpoint folder or shipped name for codec:N (default: shipped)")
    p.add_argument("--max-clips", type=int, default=None, help="at most this many clips, spread over the set")
    p.add_argument("-o", "--out", default="eval-out", help="report folder (default eval-out); reused results resume")
    p.add_argument("--workers", type=int, default=1, help="clips evaluated in parallel processes (default 1)")
    p.add_argument("--extras", default="", help="model-based metrics: comma list of speaker,dnsmos,visqol,wer or all")
    p.add_argument("--max-listen", type=int, default=20, metavar="N",
                   help="clips with players in report.html, spread over the set (default 20; 0: none)")
    p.add_argument("--save-audio", action="store_true",
                   help="keep every decoded file (default: the listened and the plotted clips)")
    p.add_argument("--spectrogram-clip", default=None, help="clip id to plot (default: the first)")
    p.add_argument("--no-plots", action="store_true")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar or skip messages")


def _say(msg: str, quiet: bool) -> None:
    if not quiet:
        print(f"codec eval: {msg}", file=sys.stderr)


def _ready_extras(spec: str) -> list[str]:
    """The extras asked for (`all` or a comma list) that can run here; the others are skipped with a message."""
    from .extras import EXTRAS, ExtraUnavailable

    extras = list(EXTRAS) if spec.strip() == "all" else [e for e in spec.split(",") if e.strip()]
    unknown = [e for e in extras if e not in EXTRAS]
    if unknown:
        raise UsageError(f"unknown extra {unknown[0]!r} (known: {', '.join(EXTRAS)}, all)")
    ready = []
    for name in extras:  # built once here only to check it runs; workers build their own
        try:
            EXTRAS[name]()
            ready.append(name)
        except (ExtraUnavailable, ImportError, OSError) as err:
            _say(f"skipping extra {name}: {err}", False)
    return ready


def _codecs(args) -> dict:
    """spec -> codec for every --codec (or the defaults) that can run here."""
    from .baselines import DEFAULT_SPECS

    explicit = args.codec is not None
    codecs = {}
    for spec in args.codec or list(DEFAULT_SPECS):
        try:
            codecs[spec] = make_codec(spec, args.model)
        except CodecUnavailable as err:
            _say(f"skipping {spec}: {err}", args.quiet and not explicit)
        except ValueError as err:
            raise UsageError(str(err)) from None
    if not codecs:
        raise CodecError("no codec can run here (see the messages above)")
    return codecs


def _todo(out: Path, clips: list[Clip], codecs: dict, versions: dict, columns: list[str], kept: set) -> list:
    """(clip, the specs still to run on it) for every clip with work left; finished results are reused."""
    todo = []
    for clip in clips:
        pending = [s for s in codecs if not is_done(result_path(out, s, clip.id), versions[s], columns)]
        if clip.id in kept:  # its audio must exist even when its results were reused
            pending = [s for s in codecs if s in pending or not audio_path(out, slug(s), clip.id).is_file()]
        if pending or (clip.id in kept and not audio_path(out, "reference", clip.id).is_file()):
            todo.append((clip, pending))  # with no codec pending, evaluate() writes the reference audio alone
    return todo


def _evaluate_all(todo: list, workers: int, kwargs: dict, quiet: bool) -> int:
    """Run every (clip, specs) in this process or in `workers` processes; returns the first failure's code."""
    show = not quiet and sys.stderr.isatty()
    with progress_bar(show, total=len(todo), desc="eval", unit="clip") as bar:
        if workers <= 1 or len(todo) <= 1:
            worker = Worker(**kwargs)
            return _collect((_safe_eval(worker, clip, specs) for clip, specs in todo), bar, quiet)
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor, as_completed

        # spawn: fresh interpreters, no torch thread pool or open files inherited through fork
        with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=init_worker,
                                 initargs=(kwargs,)) as pool:
            futures = [pool.submit(run_in_worker, clip, specs) for clip, specs in todo]
            return _collect((f.result() for f in as_completed(futures)), bar, quiet)


def _write_report(args, out: Path, summary: dict, clips: list[Clip], listen: list[Clip], columns: list[str],
                  versions: dict, set_name: str, plot_clip: str) -> None:
    specs = list(versions)
    """summary.md / .csv / .json, the plots and report.html."""
    from .listening import write_page

    title = f"{set_name}: {len(clips)} clips, {sum(r['seconds'] for r in summary.values()) / len(summary):.1f} s"
    text = markdown(summary, columns, title)
    (out / "summary.md").write_text(text)
    (out / "summary.csv").write_text(to_csv(summary, columns))
    (out / "summary.json").write_text(json.dumps({"set": set_name, "clips": [c.id for c in clips],
                                                  "versions": versions, "codecs": summary}, indent=1))
    print(text)
    if not args.no_plots:
        try:
            _plots(out, summary, plot_clip, specs)
            _say(f"plots: {out / 'rate_quality.png'}, {out / 'spectrogram.png'}", args.quiet)
        except RuntimeError as err:
            _say(f"no plots: {err}", False)
    try:
        page = write_page(out, summary, clips, listen, columns, title, images=not args.no_plots)
    except RuntimeError as err:  # matplotlib missing: the page without spectrograms
        _say(f"no spectrograms in the report: {err}", False)
        page = write_page(out, summary, clips, listen, columns, title, images=False)
    _say(f"report: {page}", args.quiet)


def run(args) -> int:
    from .extras import EXTRAS
    from .listening import listen_clips

    if args.max_clips is not None and args.max_clips < 1:
        raise UsageError("--max-clips must be at least 1")
    if args.max_listen < 0:
        raise UsageError("--max-listen must be 0 or more")
    try:
        for plugin in args.plugin:
            load_plugin(plugin)
    except (ImportError, ValueError) as err:
        raise UsageError(f"plugin {err}") from None
    ready_extras = _ready_extras(args.extras)
    codecs = _codecs(args)
    clips, set_name = find_clips(args.source, args.split, args.max_clips)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    columns = list(METRICS) + [c for name in ready_extras for c in EXTRAS[name].columns]
    plot_clip = args.spectrogram_clip or clips[0].id
    if plot_clip not in {c.id for c in clips}:
        raise UsageError(f"--spectrogram-clip {plot_clip!r} is not among the clips")
    listen = listen_clips(clips, args.max_listen)
    kept = {c.id for c in listen} | {plot_clip}  # clips whose audio the page or the plot needs
    versions = {spec: version_of(c) for spec, c in codecs.items()}
    todo = _todo(out, clips, codecs, versions, columns, kept)
    if len(todo) < len(clips):
        _say(f"reusing finished results for {len(clips) - len(todo)} of {len(clips)} clips in {out}", args.quiet)
    kwargs = dict(out=str(out), model_dir=args.model, plugins=tuple(args.plugin), extras=tuple(ready_extras),
                  save_audio=True if args.save_audio else tuple(sorted(kept)))
    status = _evaluate_all(todo, args.workers, kwargs, args.quiet)
    summary = summarize(out, list(codecs), clips, columns)
    if not summary:
        print("codec: error: no clip could be evaluated", file=sys.stderr)
        return status or 1
    _write_report(args, out, summary, clips, listen, columns, versions, set_name, plot_clip)
    return status


def _safe_eval(worker: Worker, clip: Clip, specs: list[str]) -> list[dict]:
    try:
        return worker.evaluate(clip, specs)
    except InputError as err:
        return [{"clip": clip.id, "codec": None, "error": str(err), "input_error": True}]


def _collect(results, bar, quiet: bool) -> int:
    """Drain results, print one line per failure; the exit code is the first failure's (3: bad input)."""
    status = 0
    for batch in results:
        for r in batch:
            if "error" in r:
                where = f"{r['clip']}" + (f" with {r['codec']}" if r.get("codec") else "")
                bar.write(f"codec eval: error: {where}: {r['error']}", file=sys.stderr)
                status = status or (3 if r.get("input_error") else 1)
        bar.update(1)
    return status


def _plots(out: Path, summary: dict, clip_id: str, specs: list[str]) -> None:
    from .plots import rate_quality, spectrograms

    rate_quality(summary, out / "rate_quality.png")
    wavs = []
    for label, name in [("reference", "reference")] + [(s, slug(s)) for s in specs if s in summary]:
        path = audio_path(out, name, clip_id)
        if path.is_file():
            row = summary.get(label, {})
            tag = f"{label}  {row['payload_kbps']:.2f} kbit/s" if row else label
            wavs.append((tag, read_flac(path)))
    if wavs:
        spectrograms(wavs, RATE, out / "spectrogram.png", title=f"clip {clip_id}")
