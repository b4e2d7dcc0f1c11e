"""`codec data prepare DIRS -o CORPUS`: build a training corpus (`codec.io.corpus`) from folders of audio.

`prepare` reads folders of audio, one folder per source with one subfolder per speaker, resamples to
24 kHz mono, trims leading and trailing silence, drops clips that are too short, clipped or silent (each
drop counted), and assigns whole sources or speakers to the train / valid / test splits. Files below 16 kHz
are dropped unless a source is given a lower minimum rate: band-limited speech still teaches the low band
(pitch, formants) when input and target are the same. Each clip's manifest record keeps its original rate
and measured bandwidth, so training can weight or filter by them.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing as mp
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..io.audio import open_audio
from ..io.corpus import MANIFEST_FILE, PCM_SCALE, SAMPLES_FILE, SUMMARY_FILE
from ..io.inputs import audio_files
from ..progress import progress_bar
from ..signal import resample_array


@dataclass
class PrepareOptions:
    sample_rate: int = 24000
    min_rate: int = 16000  # below this a file holds no wideband speech: dropped, not upsampled
    source_min_rate: dict[str, int] = field(default_factory=dict)  # per-source exceptions: band-limited sources kept
    min_seconds: float = 0.4
    clip_share: float = 0.01  # more than 1 % of samples at full scale: distorted, dropped
    silence_db: float = -40.0  # frames this far below the loudest frame are silence for trimming
    floor_dbfs: float = -55.0  # a clip whose loudest 20 ms stay below this is silent: dropped
    margin_s: float = 0.05  # silence kept around the speech after trimming
    bandwidth_db: float = -60.0  # a clip's bandwidth: highest frequency within this of its spectrum's peak

    def min_rate_for(self, source: str) -> int:
        return self.source_min_rate.get(source, self.min_rate)


def parse_min_rate(spec: str) -> tuple[int, dict[str, int]]:
    """'16000' or 'src=11025,src2=8000' or both, comma separated -> (default, {source: rate})."""
    default, per_source = PrepareOptions.min_rate, {}
    for item in filter(None, (s.strip() for s in spec.split(","))):
        name, _, rate = item.rpartition("=")
        if name:
            per_source[name] = int(rate)
        else:
            default = int(rate)
    return default, per_source


def find_audio(root: Path) -> list[tuple[str, Path]]:
    """(speaker, path) for the audio files below `root`; speaker = first subfolder, '-' at top level."""
    items = []
    for path in audio_files(root):
        rel = path.relative_to(root).parts
        items.append((rel[0] if len(rel) > 1 else "-", path))
    return items


def _frame_db(x: np.ndarray, rate: int) -> np.ndarray:
    hop = int(0.02 * rate)
    n = max(1, len(x) // hop)
    frames = x[: n * hop].reshape(n, hop) if len(x) >= hop else x[None]
    return 10 * np.log10(np.mean(frames.astype(np.float64) ** 2, axis=1) + 1e-12)


def bandwidth(x: np.ndarray, rate: int, floor_db: float) -> float:
    """The highest frequency (Hz) at which the long-term spectrum of `x` is within `floor_db` of its peak."""
    from scipy.signal import welch

    freqs, power = welch(x, rate, nperseg=min(512, len(x)))
    db = 10 * np.log10(power + 1e-20)
    return float(freqs[np.nonzero(db > db.max() + floor_db)[0][-1]])


def process_file(path: Path, opts: PrepareOptions, min_rate: int | None = None
                 ) -> tuple[np.ndarray | None, str, dict]:
    """Read, check and clean one file -> (int16 samples at the target rate, '', {'rate': original rate,
    'bandwidth': Hz measured on the result}) or (None, reason, {}). `min_rate` defaults to opts.min_rate."""
    try:
        with open_audio(path) as f:
            data, rate = f.read(dtype="float32", always_2d=True), f.samplerate
    except Exception:  # noqa: BLE001 - any unreadable file is counted and skipped, never fatal
        return None, "unreadable", {}
    if rate < (opts.min_rate if min_rate is None else min_rate):
        return None, "low sample rate", {}
    x = data.mean(axis=1)
    if len(x) < opts.min_seconds * rate:
        return None, "too short", {}
    if not np.isfinite(x).all():
        return None, "non-finite", {}
    if np.mean(np.abs(data) >= 0.999) > opts.clip_share:
        return None, "clipped", {}
    db = _frame_db(x, rate)
    if db.max() < opts.floor_dbfs:
        return None, "silent", {}
    active = np.nonzero(db > db.max() + opts.silence_db)[0]
    hop, margin = int(0.02 * rate), int(opts.margin_s * rate)
    start = max(0, active[0] * hop - margin)
    end = min(len(x), (active[-1] + 1) * hop + margin)
    x = x[start:end]
    if len(x) < opts.min_seconds * rate:
        return None, "too short", {}
    x = resample_array(x, rate, opts.sample_rate)
    info = {"rate": rate, "bandwidth": round(bandwidth(x, opts.sample_rate, opts.bandwidth_db))}
    return (np.clip(x, -1, 1) * PCM_SCALE).astype(np.int16), "", info


def _work(args):
    return process_file(*args)


def format_holdout(held: set[tuple[str, str | None]]) -> list[str]:
    return sorted(src if spk is None else f"{src}/{spk}" for src, spk in held)


def parse_holdout(spec: str | None) -> set[tuple[str, str | None]]:
    """'src,src/speaker' -> {(src, None), (src, speaker)}."""
    out = set()
    for item in filter(None, (s.strip() for s in (spec or "").split(","))):
        src, _, spk = item.partition("/")
        out.add((src, spk or None))
    return out


def split_of(source: str, speaker: str, valid: set, test: set) -> str:
    for name, held in (("test", test), ("valid", valid)):
        if (source, None) in held or (source, speaker) in held:
            return name
    return "train"


def _count(items) -> dict:
    return dict(sorted(Counter(items).items()))


def _hours(records, rate: int) -> dict:
    hours = Counter()
    for r in records:
        hours[r["split"]] += r["length"] / rate / 3600
    return {k: round(v, 3) for k, v in sorted(hours.items())}


def prepare(dirs: list[str | Path], out: str | Path, valid: str | None = None, test: str | None = None,
            opts: PrepareOptions | None = None, workers: int = 2, progress: bool = True) -> dict:
    """Build a corpus folder from source folders. Returns the summary (also written as summary.json)."""
    opts = opts or PrepareOptions()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    valid_set, test_set = parse_holdout(valid), parse_holdout(test)
    jobs = []
    for d in dirs:
        d = Path(d)
        if not d.is_dir():
            raise FileNotFoundError(f"{d}: not a folder")
        jobs += [(d.name, spk, p) for spk, p in find_audio(d)]
    records, dropped, offset = [], Counter(), 0
    part = out / (SAMPLES_FILE + ".part")  # clips are appended here as they come: memory stays flat
    # workers <= 1: in this process (no spawn start-up cost, and safe where __main__ is unguarded).
    pool = mp.get_context("spawn").Pool(workers) if workers > 1 else None
    with pool or contextlib.nullcontext(), open(part, "wb") as raw:
        tasks = [(p, opts, opts.min_rate_for(src)) for src, _, p in jobs]
        results = pool.imap(_work, tasks, chunksize=16) if pool else map(_work, tasks)
        for (src, spk, path), (samples, reason, info) in progress_bar(progress, iterable=zip(jobs, results),
                                                                      total=len(jobs), desc="prepare"):
            if samples is None:
                dropped[(src, reason)] += 1
                continue
            raw.write(samples.tobytes())
            records.append({"path": str(path), "source": src, "speaker": spk, "offset": offset,
                            "length": len(samples), "split": split_of(src, spk, valid_set, test_set), **info})
            offset += len(samples)
    samples = np.lib.format.open_memmap(out / SAMPLES_FILE, mode="w+", dtype=np.int16, shape=(offset,))
    written = np.memmap(part, dtype=np.int16, mode="r") if offset else np.zeros(0, np.int16)
    for i in range(0, offset, 1 << 24):
        samples[i:i + (1 << 24)] = written[i:i + (1 << 24)]
    samples.flush()
    del samples, written
    part.unlink()
    with open(out / MANIFEST_FILE, "w") as f:
        for r in records:
            f.write(json.dumps(r) + "\n")
    summary = {"files": len(jobs), "kept": len(records), "dropped": _count(r for _, r in dropped.elements()),
               "hours": _hours(records, opts.sample_rate), "sample_rate": opts.sample_rate,
               "valid": format_holdout(valid_set), "test": format_holdout(test_set),
               "sources": sorted({r["source"] for r in records}),
               "min_rate": opts.min_rate, "source_min_rate": dict(opts.source_min_rate),
               "by_source": {}}
    for src in sorted({src for src, _, _ in jobs}):
        mine = [r for r in records if r["source"] == src]
        summary["by_source"][src] = {
            "kept": len(mine), "hours": _hours(mine, opts.sample_rate),
            "dropped": _count(reason for (s, reason) in dropped.elements() if s == src),
            "rates": {str(k): n for k, n in _count(r["rate"] for r in mine).items()},  # JSON keys are text
            "median_bandwidth": int(np.median([r["bandwidth"] for r in mine])) if mine else None}
    (out / SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def add_arguments(p) -> None:
    sub = p.add_subparsers(dest="data_command", required=True, metavar="prepare")
    prep = sub.add_parser("prepare", description=__doc__, help="build a training corpus from folders of audio",
                          formatter_class=argparse.RawDescriptionHelpFormatter)
    prep.add_argument("dirs", nargs="+", help="one folder per source, one subfolder per speaker")
    prep.add_argument("-o", "--out", required=True, help="corpus folder to write")
    prep.add_argument("--valid", help="held out for validation: 'source' or 'source/speaker', comma separated")
    prep.add_argument("--test", help="held out for testing, same form")
    prep.add_argument("--workers", type=int, default=2)
    prep.add_argument("--min-seconds", type=float, default=PrepareOptions.min_seconds)
    prep.add_argument("--min-rate", default=str(PrepareOptions.min_rate),
                      help="files below this sample rate are dropped: 'HZ' for every source and/or 'source=HZ' for "
                           "one (keeps a band-limited source), comma separated; default %(default)s")


def run(args) -> int:
    min_rate, source_min_rate = parse_min_rate(args.min_rate)
    opts = PrepareOptions(min_seconds=args.min_seconds, min_rate=min_rate, source_min_rate=source_min_rate)
    summary = prepare(args.dirs, args.out, args.valid, args.test, opts, workers=args.workers)
    print(json.dumps(summary, indent=2))
    return 0
