"""Training data: a prepared corpus (one int16 array + a JSON-lines manifest) and random-crop batches.

`prepare` reads folders of audio, one folder per source with one subfolder per speaker, resamples to
24 kHz mono, trims leading and trailing silence, drops clips that are too short, clipped or silent (each
drop counted), and assigns whole sources or speakers to the train / valid / test splits.
"""
from __future__ import annotations

import json
import multiprocessing as mp
from collections import Counter
from dataclasses import dataclass
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
    min_seconds: float = 0.4
    clip_share: float = 0.01  # more than 1 % of samples at full scale: distorted, dropped
    silence_db: float = -40.0  # frames this far below the loudest frame are silence for trimming
    floor_dbfs: float = -55.0  # a clip whose loudest 20 ms stay below this is silent: dropped
    margin_s: float = 0.05  # silence kept around the speech after trimming


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


def process_file(path: Path, opts: PrepareOptions) -> tuple[np.ndarray | None, str]:
    """Read, check and clean one file -> (int16 samples at the target rate, '') or (None, reason)."""
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception:  # noqa: BLE001 - any unreadable file is counted and skipped, never fatal
        return None, "unreadable"
    if rate < opts.min_rate:
        return None, "low sample rate"
    x = data.mean(axis=1)
    if len(x) < opts.min_seconds * rate:
        return None, "too short"
    if not np.isfinite(x).all():
        return None, "non-finite"
    if np.mean(np.abs(data) >= 0.999) > opts.clip_share:
        return None, "clipped"
    db = _frame_db(x, rate)
    if db.max() < opts.floor_dbfs:
        return None, "silent"
    active = np.nonzero(db > db.max() + opts.silence_db)[0]
    hop, margin = int(0.02 * rate), int(opts.margin_s * rate)
    start = max(0, active[0] * hop - margin)
    end = min(len(x), (active[-1] + 1) * hop + margin)
    x = x[start:end]
    if len(x) < opts.min_seconds * rate:
        return None, "too short"
    if rate != opts.sample_rate:
        x = soxr.resample(x, rate, opts.sample_rate, quality="HQ")
    return (np.clip(x, -1, 1) * 32767).astype(np.int16), ""


def _work(args):
    path, opts = args
    return process_file(path, opts)


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
    chunks, records, dropped, offset = [], [], Counter(), 0
    with mp.get_context("spawn").Pool(workers) as pool:
        results = pool.imap(_work, [(p, opts) for _, _, p in jobs], chunksize=16)
        for (src, spk, path), (samples, reason) in tqdm(zip(jobs, results), total=len(jobs),
                                                        disable=not progress, desc="prepare"):
            if samples is None:
                dropped[reason] += 1
                continue
            chunks.append(samples)
            records.append({"path": str(path), "source": src, "speaker": spk, "offset": offset,
                            "length": len(samples), "split": split_of(src, spk, valid_set, test_set)})
            offset += len(samples)
    np.save(out / SAMPLES_FILE, np.concatenate(chunks) if chunks else np.zeros(0, np.int16))
    with open(out / MANIFEST_FILE, "w") as f:
        for r in records:
            f.write(json.dumps(r) + "\n")
    hours = Counter()
    for r in records:
        hours[r["split"]] += r["length"] / opts.sample_rate / 3600
    summary = {"files": len(jobs), "kept": len(records), "dropped": dict(dropped),
               "hours": {k: round(v, 3) for k, v in hours.items()}, "sample_rate": opts.sample_rate,
               "valid": format_holdout(valid_set), "test": format_holdout(test_set),
               "sources": sorted({r["source"] for r in records})}
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
    args = p.parse_args(argv)
    summary = prepare(args.dirs, args.out, args.valid, args.test, PrepareOptions(min_seconds=args.min_seconds),
                      workers=args.workers)
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


class RandomCrops(torch.utils.data.IterableDataset):
    """Endless random crops of `crop` samples from the train clips, loudness-normalized to a random
    level in [-30, -16] dBFS; clips shorter than the crop are zero padded at the end. `rank`/`world`
    give each process its own random stream."""

    def __init__(self, root: str | Path, crop: int, split: str = "train", seed: int = 0):
        self.root, self.crop, self.split, self.seed = root, crop, split, seed

    def __iter__(self):
        corpus = Corpus(self.root, self.split)
        info = torch.utils.data.get_worker_info()
        rank = int(torch.distributed.get_rank()) if torch.distributed.is_initialized() else 0
        rng = np.random.default_rng([self.seed, rank, info.id if info else 0])
        lengths = np.array([c["length"] for c in corpus.clips], dtype=np.float64)
        weights = np.minimum(lengths, self.crop) / np.minimum(lengths, self.crop).sum()  # by usable audio
        while True:
            i = rng.choice(len(corpus), p=weights)
            x = corpus.audio(i)
            if len(x) > self.crop:
                start = rng.integers(0, len(x) - self.crop + 1)
                x = x[start: start + self.crop]
            x = loudness_normalize(x, rng.uniform(-30, -16))
            out = np.zeros(self.crop, dtype=np.float32)
            out[: len(x)] = x
            yield torch.from_numpy(out)[None]
