"""`codec eval`: quality of codecs on held-out speech, one table. Inputs: a prepared corpus folder (its
`--split`, default test) or a folder of audio files. Codecs: `codec:N` (ours at N codebooks)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from .metrics import METRICS, all_metrics


def load_clips(source: str | Path, split: str = "test", max_clips: int | None = None) -> list[tuple[str, np.ndarray, int]]:
    """(name, mono float audio, rate) for each clip: evenly spaced over the set when `max_clips` cuts it."""
    source = Path(source)
    if (source / "manifest.jsonl").is_file():
        from codec.data import Corpus

        corpus = Corpus(source, split)
        idx = range(len(corpus))
        if max_clips and len(corpus) > max_clips:
            idx = np.linspace(0, len(corpus) - 1, max_clips).astype(int)
        return [(Path(corpus.clips[i]["path"]).name, corpus.audio(i), corpus.sample_rate) for i in idx]
    from codec.audio import read_audio
    from codec.cli import expand_inputs
    from codec.audio import AUDIO_SUFFIXES

    files = expand_inputs([str(source)], AUDIO_SUFFIXES)
    if max_clips and len(files) > max_clips:
        files = [files[i] for i in np.linspace(0, len(files) - 1, max_clips).astype(int)]
    out = []
    for f in files:
        data, rate = read_audio(f)
        out.append((f.name, data.mean(axis=0), rate))
    return out


def parse_codec(spec: str) -> int:
    name, _, depth = spec.partition(":")
    if name != "codec" or not depth.isdigit():
        raise ValueError(f"unknown codec {spec!r}: this build evaluates codec:N (ours at N codebooks)")
    return int(depth)


def evaluate(model, clips, depths, progress: bool = True) -> dict[str, dict]:
    """Mean of each metric per codec over the clips where it is computable, with counts."""
    from tqdm import tqdm

    rows: dict[str, dict] = {}
    per_file = []
    for name, x, rate in tqdm(clips, disable=not progress, desc="eval", leave=False):
        ref24 = model.prepare(torch.from_numpy(x), rate)
        for n in depths:
            codes = model.encode_prepared(ref24, n)
            deg = model.decode(codes, length=ref24.shape[-1])[0, 0].numpy()
            m = all_metrics(ref24[0, 0].numpy(), deg, model.sample_rate)
            per_file.append({"file": name, "codec": f"codec:{n}", **m})
    for n in depths:
        key = f"codec:{n}"
        mine = [r for r in per_file if r["codec"] == key]
        summary = {"kbit_s": model.config.bitrate(n) / 1000, "files": len(mine)}
        for metric in METRICS:
            values = [r[metric] for r in mine if isinstance(r[metric], float)]
            summary[metric] = float(np.mean(values)) if values else None
            summary[f"{metric}_n"] = len(values)
        rows[key] = summary
    return {"summary": rows, "files": per_file}


def format_table(summary: dict[str, dict]) -> str:
    cols = list(METRICS)
    lines = ["| codec | kbit/s | " + " | ".join(cols) + " |", "|---|---:|" + "---:|" * len(cols)]
    for key, row in summary.items():
        cells = []
        for c in cols:
            v = row[c]
            cells.append("n/a" if v is None else f"{v:.3f}" + ("" if row[f"{c}_n"] == row["files"] else f" ({row[f'{c}_n']})"))
        lines.append(f"| {key} | {row['kbit_s']:.3g} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="codec eval", description=__doc__)
    p.add_argument("source", help="prepared corpus folder or folder of audio")
    p.add_argument("--split", default="test")
    p.add_argument("--codec", action="append", default=None, help="codec:N, repeatable (default codec:8, 17, 37)")
    p.add_argument("--max-clips", type=int, default=None)
    p.add_argument("--model", default=None)
    p.add_argument("--json", help="write per-file and summary results here")
    args = p.parse_args(argv)
    from codec.weights import load

    model = load(args.model)
    depths = [parse_codec(c) for c in (args.codec or ["codec:8", "codec:17", "codec:37"])]
    result = evaluate(model, load_clips(args.source, args.split, args.max_clips), depths)
    print(format_table(result["summary"]))
    print("\n(n) after a value: files where the metric was computable, when fewer than all")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    return 0
