"""The held-out clips an evaluation runs on: a prepared corpus (one split), a manifest, a folder or files.

A Clip is a small picklable description (an id and where its audio lives) so worker processes load the audio
themselves; ids are stable across runs, which is what makes a report resumable.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from codec.errors import InputError
from codec.io.corpus import MANIFEST_FILE, is_corpus, select_split
from codec.io.inputs import resolve_inputs
from codec.signal import resample_array

RATE = 24000  # every comparison happens at the model rate (docs/metrics.md)


@lru_cache(maxsize=4)
def _corpus(path: str, split: str | None):
    """One open (memory-mapped) corpus per process: its manifest is parsed once, not once per clip."""
    from codec.io.corpus import Corpus

    return Corpus(path, split)


@dataclass(frozen=True)
class Clip:
    id: str  # stable, file-name safe
    path: str  # the audio file, or the corpus folder when index is set
    index: int | None = None  # clip number inside a prepared corpus split
    split: str | None = None
    source: str = ""  # where it comes from, for a reader (never an absolute path: reports get published)

    def load(self) -> np.ndarray:
        """Mono float64 [T] at 24 kHz. Raises InputError naming the file when it is unusable."""
        if self.index is not None:
            corpus = _corpus(self.path, self.split)
            x, rate = corpus.audio(self.index).astype(np.float64), corpus.sample_rate
        else:
            from codec.io.audio import read_audio

            data, rate = read_audio(self.path)
            x = data.mean(axis=0).astype(np.float64)
        return resample_array(x, rate, RATE)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "clip"


def spread(items: list, max_clips: int | None) -> list:
    """At most max_clips items, evenly spaced over the list (every speaker, not the first few)."""
    if not max_clips or len(items) <= max_clips:
        return items
    return [items[i] for i in np.linspace(0, len(items) - 1, max_clips).round().astype(int)]


def find_clips(source: str | Path, split: str = "test", max_clips: int | None = None) -> tuple[list[Clip], str]:
    """(clips, a name for the set). `source`: a prepared corpus folder (manifest.jsonl + samples.npy: its
    `split`), a manifest.jsonl of such a corpus, or what every command takes (`codec.io.inputs`): an audio
    file, folder, glob or list file."""
    path = Path(source)
    if path.name == MANIFEST_FILE and path.is_file():
        path = path.parent
    if is_corpus(path):
        with open(path / MANIFEST_FILE) as f:
            records = [json.loads(line) for line in f]
        # "test:asterisk-en,asterisk-es": some sources of the split. Clip.index counts within the whole split
        # (it is how Corpus(path, split) finds the clip again).
        split, numbered = select_split(path, records, split)
        sources = sorted({str(r.get("source", "?")) for _, r in numbered})
        clips = [Clip(f"{i:05d}_{_safe(Path(r['path']).stem)}", str(path), i, split,
                      "/".join([str(r[k]) for k in ("source", "speaker") if r.get(k)] + [Path(r["path"]).name]))
                 for i, r in numbered]
        return spread(clips, max_clips), f"{path.name}:{split} ({', '.join(sources)})"
    if not path.exists() and not any(ch in str(source) for ch in "*?["):
        raise InputError(f"{path}: no such file or folder")
    inputs = spread(resolve_inputs([str(source)]), max_clips)
    clips = [Clip(_safe(str(i.rel.with_suffix(""))), str(i.path), source=str(i.rel)) for i in inputs]
    return clips, path.name
