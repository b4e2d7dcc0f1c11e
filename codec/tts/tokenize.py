"""`codec tokenize INPUTS -o OUT`: audio -> a tokenized dataset (`codec.tts.dataset`) for training a speech
language model.

    codec tokenize INPUTS [...] -o OUT [--model M] [-n 37] [--shard-size 256] [--batch-seconds 60]
    torchrun --nnodes N --nproc_per_node P [...] -m codec.tts.tokenize INPUTS -o OUT

Inputs: corpus folders written by `codec data prepare` (their metadata is kept per row), and otherwise
what every command takes (`codec.io.inputs`): audio files, folders, globs and list files. Items are
numbered in that order and cut into fixed units of `--shard-size`; unit u becomes `OUT/shard-{u:05d}.parquet`,
written atomically by rank `u % world_size`. So the shards and the codes in them do not depend on how many
processes ran; a rerun skips shards already written (resumable) and refuses an OUT made with another model,
depth, precision or item list (OUT/plan.json). After every rank is done, rank 0 writes `OUT/index.json`
(model, shards, totals, skipped items). With several nodes OUT must be on a shared file system.

Items are batched by length with zero padding after each one; the model is causal and pads every clip to
whole frames with zeros anyway, so an item gets exactly the codes `model.encode` gives it alone.
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import numpy as np
import torch

from .. import distributed
from ..errors import CodecError, InputError
from ..io.audio import read_audio
from ..io.corpus import corpus_rate, is_corpus, manifest, read_slice
from ..io.inputs import INPUTS_HELP, resolve_inputs
from ..progress import progress_bar
from .dataset import check_plan, plan_for, read_dataset, shard_name, shard_plan, write_index, write_shard

__all__ = ["Item", "encode_batched", "encode_items", "list_items", "read_dataset", "tokenize", "write_index"]


@dataclass(frozen=True)
class Item:
    index: int  # position in the listing
    source: str  # file path, or the corpus manifest's "path"
    path: Path | None = None  # audio file to read, or None for a corpus slice
    corpus: Path | None = None  # corpus folder holding samples.npy
    offset: int = 0  # corpus slice: first sample and length in samples.npy
    length: int = 0
    rate: int = 0  # corpus sample rate
    meta: dict = field(default_factory=dict, compare=False)


def _corpus_items(folder: Path) -> list[dict]:
    rate = corpus_rate(folder)
    out = []
    for number, entry in enumerate(manifest(folder), 1):
        entry = dict(entry)
        offset, length = int(entry.pop("offset")), int(entry.pop("length"))
        source = str(entry.pop("path", f"{folder.name}:{number}"))
        out.append(dict(source=source, corpus=folder, offset=offset, length=length, rate=rate, meta=entry))
    return out


def list_items(inputs: list[str]) -> list[Item]:
    """Corpus folders and the common inputs (files, folders, globs, lists) -> items numbered in order,
    repeats dropped."""
    found: list[dict] = []
    for given in inputs:
        if is_corpus(given):
            found += _corpus_items(Path(given))
        else:
            found += [dict(source=str(i.path), path=i.path) for i in resolve_inputs([given])]
    seen: set[str] = set()
    unique = [f for f in found if not (f["source"] in seen or seen.add(f["source"]))]
    if not unique:
        raise InputError(f"{', '.join(inputs)}: no audio to tokenize")
    return [Item(index=i, **f) for i, f in enumerate(unique)]


def load_item(model, item: Item) -> tuple[torch.Tensor, float]:
    """-> (audio (T,) at the model rate, mono, on the model device; seconds of the source)."""
    if item.corpus is not None:
        data, rate = read_slice(item.corpus, item.offset, item.length)[None], item.rate
        if not data.size or not np.any(data):
            raise InputError(f"{item.source}: empty or silent corpus entry")
    else:
        data, rate = read_audio(item.path)
    wav = model.prepare(torch.from_numpy(data), rate)  # the same resampling and downmix `model.encode` does
    return wav[0, 0], data.shape[1] / rate


def _encode_long(model, wav: torch.Tensor, n_codebooks: int | None, budget: int, bf16: bool) -> torch.Tensor:
    """One clip longer than a batch, through a stream in `budget`-sample chunks (streaming equals offline)."""
    with model.streaming(1, n_codebooks=n_codebooks, bf16=bf16) as s:
        parts = [s.encode(wav[i: i + budget]) for i in range(0, wav.shape[-1], budget)]
        return torch.cat(parts + [s.flush()], dim=-1)[0]


def encode_batched(model, wavs: list[torch.Tensor], n_codebooks: int | None = None, batch_seconds: float = 60.0,
                   bf16: bool = False) -> list[torch.Tensor]:
    """Clips (T_i,) at the model rate -> codes (n, ceil(T_i / frame_size)) each, equal to encoding each alone.

    Clips are grouped longest first so that a batch holds at most `batch_seconds` of padded audio; a clip
    longer than that is coded alone through a stream in `batch_seconds` chunks (bounded memory).
    """
    budget = max(model.frame_size, int(batch_seconds * model.sample_rate))
    order = sorted(range(len(wavs)), key=lambda i: -wavs[i].shape[-1])
    out: list[torch.Tensor | None] = [None] * len(wavs)
    start = 0
    while start < len(order):
        longest = wavs[order[start]].shape[-1]
        if longest > budget:
            out[order[start]] = _encode_long(model, wavs[order[start]], n_codebooks, budget, bf16)
            start += 1
            continue
        group = order[start: start + max(1, budget // max(1, longest))]
        batch = torch.zeros(len(group), 1, longest, device=wavs[group[0]].device)
        for row, i in enumerate(group):
            batch[row, 0, : wavs[i].shape[-1]] = wavs[i]  # zeros after: what encoding alone pads with
        codes = model.encode_prepared(batch, n_codebooks, bf16=bf16)
        for row, i in enumerate(group):
            out[i] = codes[row, :, : model.n_frames(wavs[i].shape[-1])]
        start += len(group)
    return out  # type: ignore[return-value]


def encode_items(model, items: list[Item], n_codebooks: int | None = None, batch_seconds: float = 60.0,
                 bf16: bool = False) -> list[dict]:
    """Read and code items -> one row dict each; an unusable item gets its error and no codes."""
    rows, wavs, good = [], [], []
    n = model.n_codebooks if n_codebooks is None else n_codebooks
    for item in items:
        row = {"index": item.index, "source": item.source, "duration": 0.0, "samples": 0, "frames": 0,
               "codebooks": 0, "codes": np.zeros((0, 0), np.int16), "meta": json.dumps(item.meta), "error": None}
        try:
            wav, seconds = load_item(model, item)
            row.update(duration=seconds, samples=int(wav.shape[-1]), frames=model.n_frames(wav.shape[-1]), codebooks=n)
            wavs.append(wav)
            good.append(row)
        except CodecError as err:
            row["error"] = str(err)
        rows.append(row)
    for row, codes in zip(good, encode_batched(model, wavs, n, batch_seconds, bf16)):
        row["codes"] = codes.cpu().numpy().astype(np.int16)  # codebook_size <= 32768, checked in tokenize
    return rows


def tokenize(inputs: list[str], out: str | Path, model, n_codebooks: int | None = None, shard_size: int = 256,
             batch_seconds: float = 60.0, bf16: bool = False, rank: int = 0, world: int = 1,
             progress: bool = False, items: list[Item] | None = None) -> list[dict]:
    """Write this rank's shards (units rank, rank + world, ...) of `inputs` into `out`, skipping shards a
    previous run finished -> the skipped (unusable) items of the shards written now, as {source, error}.
    The index is written separately (`write_index`), once every rank is done."""
    if model.config.codebook_size > 32768:
        raise InputError(f"codebook size {model.config.codebook_size} does not fit the int16 codes column")
    out = Path(out)
    items = list_items(inputs) if items is None else items
    plan = plan_for(model, [i.source for i in items], n_codebooks, shard_size, bf16)
    check_plan(out, plan, write=rank == 0)
    mine = list(range(rank, plan["units"], world))
    bar = progress_bar(progress, total=sum(len(items[u * shard_size: (u + 1) * shard_size]) for u in mine),
                       desc=f"rank {rank}" if world > 1 else "tokenize", unit="item", position=rank)
    skipped = []
    for unit in mine:
        part, dst = items[unit * shard_size: (unit + 1) * shard_size], out / shard_name(unit)
        if dst.is_file():
            if shard_plan(dst) != plan:
                raise InputError(f"{dst}: belongs to another tokenization; use a new output folder")
        else:
            # encode_items is looked up at call time so that tests can count what is coded
            rows = sys.modules[__name__].encode_items(model, part, plan["n_codebooks"], batch_seconds, bf16)
            write_shard(dst, rows, plan)
            skipped += [{"source": r["source"], "error": r["error"]} for r in rows if r["error"] is not None]
        bar.update(len(part))
    bar.close()
    return skipped


def add_arguments(p) -> None:
    p.epilog = "Under torchrun, each rank writes its own shards and rank 0 the index."
    p.add_argument("inputs", nargs="+", help="corpus folders (codec data prepare), or " + INPUTS_HELP)
    p.add_argument("-o", "--out", "--output", dest="out", required=True,
                   help="output folder: shards, plan.json, index.json")
    p.add_argument("--model", default=None, help="shipped model name or checkpoint folder")
    p.add_argument("-n", "--n-codebooks", type=int, default=None, help="codebooks per frame (default: all)")
    p.add_argument("--shard-size", type=int, default=256, help="items per Parquet shard")
    p.add_argument("--batch-seconds", type=float, default=60.0, help="padded audio coded per batch (bounds memory)")
    p.add_argument("--bf16", action="store_true", help="bfloat16 autocast (codes may differ from fp32 in places)")
    p.add_argument("--index-only", action="store_true", help="only (re)write index.json from finished shards")
    p.add_argument("-q", "--quiet", action="store_true", help="print errors only")


def run(args) -> int:
    from ..checkpoint import load

    out = Path(args.out)
    if args.index_only:
        write_index(out)
        return 0
    model = load(args.model).eval()
    items = list_items(args.inputs)
    # gloo on the CPU; a long timeout: ranks meet only at the end, after hours of work.
    rank, world, _ = distributed.start("cpu", timeout=timedelta(hours=48))
    try:
        if rank == 0:
            check_plan(out, plan_for(model, [i.source for i in items], args.n_codebooks, args.shard_size, args.bf16),
                       write=True)
        distributed.barrier()  # plan.json is checked or written before any rank reads it
        skipped = tokenize(args.inputs, out, model, args.n_codebooks, args.shard_size, args.batch_seconds, args.bf16,
                           rank, world, progress=not args.quiet and sys.stderr.isatty(), items=items)
        for s in skipped:
            print(f"codec: error: {s['error']}", file=sys.stderr)
        distributed.barrier()  # every shard is written: the index can be built
        if rank == 0:
            index = write_index(out)
            if not args.quiet:
                print(f"{out}: {index['items']} items, {index['hours']:.2f} h, {index['frames']} frames in "
                      f"{len(index['shards'])} shards; {len(index['skipped'])} skipped", file=sys.stderr)
        distributed.barrier()  # a rank exiting with an error must not make torchrun stop rank 0 early
        return InputError.exit_code if skipped else 0
    finally:
        distributed.stop()


if __name__ == "__main__":
    from ..cli import main

    sys.exit(main(["tokenize", *sys.argv[1:]]))
