"""Training data: a prepared corpus (one int16 array + a JSON-lines manifest) and random-crop batches.

`prepare` reads folders of audio, one folder per source with one subfolder per speaker, resamples to
24 kHz mono, trims leading and trailing silence, drops clips that are too short, clipped or silent (each
drop counted), and assigns whole sources or speakers to the train / valid / test splits. Files below 16 kHz
are dropped unless a source is given a lower minimum rate: band-limited speech still teaches the low band
(pitch, formants) when input and target are the same. Each clip's manifest record keeps its original rate
and measured bandwidth, so training can weight or filter by them.
"""
from __future__ import annotations

import contextlib
import json
import multiprocessing as mp
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr
import torch

from .audio import AUDIO_SUFFIXES

SAMPLES_FILE, MANIFEST_FILE, SUMMARY_FILE = "samples.npy", "manifest.jsonl", "summary.json"


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
    for path in sorted(root.rglob("*")):
        if path.suffix.lower() in AUDIO_SUFFIXES and path.is_file():
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
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
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
    if rate != opts.sample_rate:
        x = soxr.resample(x, rate, opts.sample_rate, quality="HQ")
    info = {"rate": rate, "bandwidth": round(bandwidth(x, opts.sample_rate, opts.bandwidth_db))}
    return (np.clip(x, -1, 1) * 32767).astype(np.int16), "", info


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
    from tqdm import tqdm

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
        for (src, spk, path), (samples, reason, info) in tqdm(zip(jobs, results), total=len(jobs),
                                                              disable=not progress, desc="prepare"):
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


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="codec data prepare", description=__doc__)
    p.add_argument("dirs", nargs="+", help="one folder per source, one subfolder per speaker")
    p.add_argument("-o", "--out", required=True, help="corpus folder to write")
    p.add_argument("--valid", help="held out for validation: 'source' or 'source/speaker', comma separated")
    p.add_argument("--test", help="held out for testing, same form")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--min-seconds", type=float, default=PrepareOptions.min_seconds)
    p.add_argument("--min-rate", default=str(PrepareOptions.min_rate),
                   help="files below this sample rate are dropped: 'HZ' for every source and/or 'source=HZ' for "
                        "one (keeps a band-limited source), comma separated; default %(default)s")
    args = p.parse_args(argv)
    min_rate, source_min_rate = parse_min_rate(args.min_rate)
    opts = PrepareOptions(min_seconds=args.min_seconds, min_rate=min_rate, source_min_rate=source_min_rate)
    summary = prepare(args.dirs, args.out, args.valid, args.test, opts, workers=args.workers)
    print(json.dumps(summary, indent=2))
    return 0


class Corpus:
    """A prepared corpus opened read-only (memory-mapped): clips by split."""

    def __init__(self, root: str | Path, split: str | None = None):
        root = Path(root)
        self.samples = np.load(root / SAMPLES_FILE, mmap_mode="r")
        with open(root / MANIFEST_FILE) as f:
            records = [json.loads(line) for line in f]
        self.clips = [r for r in records if split is None or r["split"] == split]
        self.sample_rate = json.loads((root / SUMMARY_FILE).read_text())["sample_rate"]

    def __len__(self) -> int:
        return len(self.clips)

    def audio(self, i: int) -> np.ndarray:
        r = self.clips[i]
        return self.samples[r["offset"]: r["offset"] + r["length"]].astype(np.float32) / 32767


def loudness_normalize(x: np.ndarray, target_dbfs: float) -> np.ndarray:
    """Scale so the mean power of the louder half of 20 ms frames sits at target_dbfs, never clipping."""
    hop = 480
    n = len(x) // hop
    if n == 0:
        return x
    power = np.sort(np.mean(x[: n * hop].reshape(n, hop) ** 2, axis=1))[n // 2:]
    gain = 10 ** (target_dbfs / 20) / np.sqrt(power.mean() + 1e-10)
    peak = np.abs(x).max() * gain
    return x * (gain / peak * 0.99 if peak > 0.99 else gain)


AUGMENT_DEFAULTS = {
    "gain_db": 7.0,  # loudness drawn uniformly in loudness_db +- gain_db: the model meets every level
    "noise_prob": 0.0,  # share of crops given white noise at a random SNR
    "noise_snr_db": [30.0, 50.0],  # mild: audible only in pauses, where real recordings have it too
    "bandlimit_prob": 0.0,  # share of crops low-passed at a random cutoff (much of the corpus is band-limited)
    "bandlimit_hz": [4000.0, 11000.0],
}


def augment_crop(x: np.ndarray, rng: np.random.Generator, loudness_db: float, aug: dict, rate: int) -> np.ndarray:
    """Loudness-normalize one crop (T,) to a random level, then maybe low-pass it and add mild noise.

    The codec reproduces what it is given, so augmentation changes input and target alike: it widens the
    kinds of audio the model learns to code, it does not teach denoising.
    """
    from scipy.signal import butter, sosfilt

    # Every random draw is made whether or not it is used, so switching one augmentation on or off
    # leaves the crops and the other augmentations of every step unchanged.
    level = loudness_db + rng.uniform(-aug["gain_db"], aug["gain_db"])
    do_band, cutoff = rng.random() < aug["bandlimit_prob"], rng.uniform(*aug["bandlimit_hz"])
    do_noise, snr = rng.random() < aug["noise_prob"], rng.uniform(*aug["noise_snr_db"])
    noise_seed = int(rng.integers(2**31))
    if do_band and cutoff < rate / 2:
        x = sosfilt(butter(8, cutoff, fs=rate, output="sos"), x).astype(np.float32)
    x = loudness_normalize(x, level)
    if do_noise and len(x):
        speech_power = 10 ** (level / 10)  # loudness_normalize put the active frames at `level` dBFS
        noise = np.random.default_rng(noise_seed).standard_normal(len(x)).astype(np.float32)
        x = np.clip(x + noise * np.sqrt(speech_power / 10 ** (snr / 10)), -1, 1)
    return x.astype(np.float32)


class StepBatches(torch.utils.data.Dataset):
    """Map-style: item `step` is this rank's share of the global batch of training step `step`.

    The global batch is `batch_size` random crops; crop j of step s depends only on (seed, s, j), and rank r
    of `world` takes crops [r * B / world, (r + 1) * B / world). So a batch is a pure function of
    (seed, step, rank): resuming, worker processes and prefetching cannot change what a step sees, and N
    processes together see exactly the batch one process would (this is the distributed sampler).
    Returns wav (B / world, 1, crop) float32.
    """

    def __init__(self, root: str | Path, crop: int, batch_size: int, seed: int, rank: int = 0, world: int = 1,
                 loudness_db: float = -23.0, augment: dict | None = None, split: str = "train"):
        if batch_size % world:
            raise ValueError(f"batch_size {batch_size} is not a multiple of the {world} processes")
        self.root, self.crop, self.batch_size, self.seed = str(root), crop, batch_size, seed
        self.rank, self.world, self.split = rank, world, split
        self.loudness_db, self.augment = loudness_db, {**AUGMENT_DEFAULTS, **(augment or {})}
        corpus = Corpus(root, split)
        if len(corpus) == 0:
            raise ValueError(f"{root}: no {split} clips in {MANIFEST_FILE}")
        lengths = np.array([min(c["length"], crop) for c in corpus.clips], dtype=np.float64)
        self.weights = lengths / lengths.sum()  # pick clips in proportion to the audio they can give
        self.sample_rate = corpus.sample_rate
        self._corpus: Corpus | None = None  # opened in each worker: a memory map does not pickle cheaply

    def __len__(self) -> int:
        return 2**62  # endless: any step is a valid index

    def __getitem__(self, step: int) -> torch.Tensor:
        if self._corpus is None:
            self._corpus = Corpus(self.root, self.split)
        local = self.batch_size // self.world
        out = np.zeros((local, 1, self.crop), dtype=np.float32)
        for b in range(local):
            rng = np.random.default_rng([self.seed, int(step), self.rank * local + b])
            x = self._corpus.audio(int(rng.choice(len(self.weights), p=self.weights)))
            start = int(rng.integers(0, max(1, len(x) - self.crop + 1)))
            x = augment_crop(x[start: start + self.crop], rng, self.loudness_db, self.augment, self.sample_rate)
            out[b, 0, : len(x)] = x  # shorter clips are zero padded at the end
        return torch.from_numpy(out)


def valid_crops(root: str | Path, n_clips: int, samples: int, loudness_db: float = -23.0) -> tuple[torch.Tensor, list[int]]:
    """A fixed validation set: `n_clips` valid clips evenly spaced through the split, each cut to `samples`
    and loudness-normalized -> (wav (N, 1, samples) zero padded, true lengths)."""
    corpus = Corpus(root, "valid")
    if len(corpus) == 0:
        return torch.zeros(0, 1, samples), []
    idx = np.linspace(0, len(corpus) - 1, min(n_clips, len(corpus))).astype(int)
    out, lengths = torch.zeros(len(idx), 1, samples), []
    for j, i in enumerate(idx):
        x = loudness_normalize(corpus.audio(int(i))[:samples], loudness_db)
        out[j, 0, : len(x)] = torch.from_numpy(x)
        lengths.append(len(x))
    return out, lengths
