"""A prepared corpus (written by `codec data prepare`): one int16 array of every clip's samples
(samples.npy), a JSON-lines manifest of the clips (manifest.jsonl) and a summary (summary.json)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..errors import InputError

SAMPLES_FILE, MANIFEST_FILE, SUMMARY_FILE = "samples.npy", "manifest.jsonl", "summary.json"
PCM_SCALE = 32767  # int16 samples <-> float in [-1, 1]


def is_corpus(path: str | Path) -> bool:
    path = Path(path)
    return (path / SAMPLES_FILE).is_file() and (path / MANIFEST_FILE).is_file()


def corpus_rate(root: str | Path) -> int:
    return int(json.loads((Path(root) / SUMMARY_FILE).read_text()).get("sample_rate", 24000))


def manifest(root: str | Path) -> list[dict]:
    """The manifest's records in order; a line that is no clip record is an InputError naming it."""
    path = Path(root) / MANIFEST_FILE
    out = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            int(record["offset"]), int(record["length"])
        except (ValueError, KeyError, TypeError) as err:
            raise InputError(f"{path}: line {number}: not a corpus entry ({err})") from None
        out.append(record)
    return out


def read_slice(root: str | Path, offset: int, length: int) -> np.ndarray:
    """Samples [offset, offset + length) of a corpus as float32 (memory-mapped: a corpus can exceed memory)."""
    samples = np.load(Path(root) / SAMPLES_FILE, mmap_mode="r")
    return samples[offset: offset + length].astype(np.float32) / PCM_SCALE


def select_split(root: str | Path, records: list[dict], split: str) -> tuple[str, list[tuple[int, dict]]]:
    """"SPLIT" or "SPLIT:SRC[,SRC]" -> (the split's name, [(index within the whole split, record)] of the
    chosen sources). Raises InputError naming the corpus when the split or a source has no clips."""
    name, _, only = split.partition(":")
    chosen = [r for r in records if r["split"] == name]
    if not chosen:
        splits = sorted({r["split"] for r in records})
        raise InputError(f"{root}: corpus has no clips in split {name!r} (splits: {', '.join(splits)})")
    numbered = list(enumerate(chosen))
    if only:
        wanted = set(only.split(","))
        missing = wanted - {str(r.get("source")) for r in chosen}
        if missing:
            raise InputError(f"{root}: split {name!r} has no source {', '.join(sorted(missing))}")
        numbered = [(i, r) for i, r in numbered if str(r.get("source")) in wanted]
    return name, numbered


class Corpus:
    """A prepared corpus opened read-only (memory-mapped): clips by split."""

    def __init__(self, root: str | Path, split: str | None = None):
        self.root = root = Path(root)
        self.samples = np.load(root / SAMPLES_FILE, mmap_mode="r")
        self.clips = [r for r in manifest(root) if split is None or r["split"] == split]
        self.sample_rate = corpus_rate(root)

    def __len__(self) -> int:
        return len(self.clips)

    def audio(self, i: int) -> np.ndarray:
        r = self.clips[i]
        return self.samples[r["offset"]: r["offset"] + r["length"]].astype(np.float32) / PCM_SCALE
