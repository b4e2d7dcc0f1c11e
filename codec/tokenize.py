"""Dataset tokenization: audio -> Parquet shards of codes for training a speech language model.

    codec tokenize DIR_OR_MANIFEST [...] -o OUT [--model M] [-n 37] [--shard-size 256] [--batch-seconds 60]
    torchrun --nnodes N --nproc_per_node P [...] -m codec.tokenize DIR_OR_MANIFEST -o OUT

Inputs: a folder of audio (searched recursively), an audio file, a corpus folder written by
`codec data prepare` (samples.npy + manifest.jsonl: its metadata is kept per row), or a list file with one
audio path per line (relative to the list's folder; `#` starts a comment; a tab ends the path).
Items are numbered in that order and cut into fixed units of `--shard-size`; unit u becomes
`OUT/shard-{u:05d}.parquet`, written atomically by rank `u % world_size`. So the shards and the codes in
them do not depend on how many processes ran; a rerun skips shards already written (resumable) and
refuses an OUT made with another model, depth, precision or item list (OUT/plan.json). After every rank
is done, rank 0 writes `OUT/index.json` (model, shards, totals, skipped items). With several nodes OUT
must be on a shared file system.

One row per item:
    index          int64            position in the input listing (rows are in this order)
    source         str              the file path (or the corpus manifest's "path")
    duration       float64          seconds of the source at its own rate
    samples        int64            samples at the model rate (decode with `length=samples`)
    frames         int32            ceil(samples / frame_size)
    codebooks      int32            codes per frame
    codes          list<list<int16>> (codebooks, frames): `np.array(row)` is the codes
    model_checksum str              SHA-256 of the model weights
    meta           str              JSON: the corpus manifest's other fields ({} for plain files)
    error          str or null      why the item has no codes (unreadable, silent, ...): it is skipped

Items are batched by length with zero padding after each one; the model is causal and pads every clip to
whole frames with zeros anyway, so an item gets exactly the codes `model.encode` gives it alone.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from .audio import AUDIO_SUFFIXES, atomic_path, audio_files, read_audio
from .errors import CodecError, InputError

INDEX_FILE, PLAN_FILE = "index.json", "plan.json"
FORMAT, VERSION = "codec-tokens", 1


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


# ------------------------------------------------------------------------------------------ inputs
def _corpus_items(folder: Path) -> list[dict]:
    from .data import MANIFEST_FILE, SUMMARY_FILE

    rate = int(json.loads((folder / SUMMARY_FILE).read_text()).get("sample_rate", 24000))
    out = []
    for number, line in enumerate((folder / MANIFEST_FILE).read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
            offset, length = int(entry.pop("offset")), int(entry.pop("length"))
        except (ValueError, KeyError) as err:
            raise InputError(f"{folder / MANIFEST_FILE}: line {number}: not a corpus entry ({err})") from None
        source = str(entry.pop("path", f"{folder.name}:{number}"))
        out.append(dict(source=source, corpus=folder, offset=offset, length=length, rate=rate, meta=entry))
    return out


def list_items(inputs: list[str]) -> list[Item]:
    """Folders, audio files, corpus folders and list files -> items numbered in order (repeats dropped)."""
    from .data import MANIFEST_FILE, SAMPLES_FILE

    found: list[dict] = []
    for given in inputs:
        src = Path(given)
        if src.is_dir() and (src / SAMPLES_FILE).is_file() and (src / MANIFEST_FILE).is_file():
            found += _corpus_items(src)
        elif src.is_dir():
            files = audio_files(src)
            if not files:
                raise InputError(f"{src}: folder holds no {'/'.join(sorted(AUDIO_SUFFIXES))} files")
            found += [dict(source=str(p), path=p) for p in files]
        elif not src.is_file():
            raise InputError(f"{src}: no such folder, audio file or list")
        elif src.suffix.lower() in AUDIO_SUFFIXES:
            found.append(dict(source=str(src), path=src))
        else:
            for line in src.read_text(encoding="utf-8").splitlines():
                entry = line.split("\t", 1)[0].strip()
                if entry and not entry.startswith("#"):
                    path = Path(entry) if Path(entry).is_absolute() else src.parent / entry
                    found.append(dict(source=str(path), path=path))
    seen: set[str] = set()
    unique = [f for f in found if not (f["source"] in seen or seen.add(f["source"]))]
    if not unique:
        raise InputError(f"{', '.join(inputs)}: no audio to tokenize")
    return [Item(index=i, **f) for i, f in enumerate(unique)]


def shard_name(unit: int) -> str:
    return f"shard-{unit:05d}.parquet"


def plan_for(model, items: list[Item], n_codebooks: int | None, shard_size: int, bf16: bool) -> dict:
    """What fixes the contents of every shard: a rerun into the same OUT must match it exactly."""
    n = model.n_codebooks if n_codebooks is None else int(n_codebooks)
    if not 1 <= n <= model.n_codebooks:
        raise InputError(f"--n-codebooks must be 1 to {model.n_codebooks}, got {n}")
    if shard_size < 1:
        raise InputError(f"--shard-size must be at least 1, got {shard_size}")
    listing = hashlib.sha256("\n".join(i.source for i in items).encode()).hexdigest()
    return {"format": FORMAT, "version": VERSION, "model": model.config.name, "model_checksum": model.checksum,
            "sample_rate": model.sample_rate, "frame_size": model.frame_size, "frame_rate": model.frame_rate,
            "codebook_size": model.config.codebook_size, "n_codebooks": n, "precision": "bf16" if bf16 else "fp32",
            "shard_size": shard_size, "n_items": len(items), "sources_sha256": listing,
            "units": math.ceil(len(items) / shard_size)}


def _check_plan(out: Path, plan: dict, write: bool) -> None:
    path = out / PLAN_FILE
    if path.is_file():
        old = json.loads(path.read_text())
        diff = [f"{k}: {old.get(k)} != {plan[k]}" for k in plan if old.get(k) != plan[k]]
        if diff:
            raise InputError(f"{out}: holds another tokenization ({'; '.join(diff)}); use a new output folder")
    elif write:
        out.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(plan, indent=1) + "\n")


# ----------------------------------------------------------------------------------------- coding
def load_item(model, item: Item) -> tuple[torch.Tensor, float]:
    """-> (audio (T,) at the model rate, mono, on the model device; seconds of the source)."""
    if item.corpus is not None:
        from .data import SAMPLES_FILE

        samples = np.load(item.corpus / SAMPLES_FILE, mmap_mode="r")  # the corpus can exceed memory
        data = samples[item.offset: item.offset + item.length].astype(np.float32)[None] / 32767  # as data.py reads it
        rate = item.rate
        if not data.size or not np.any(data):
            raise InputError(f"{item.source}: empty or silent corpus entry")
    else:
        data, rate = read_audio(item.path)
    wav = model.prepare(torch.from_numpy(data), rate)  # the same resampling and downmix `model.encode` does
    return wav[0, 0], data.shape[1] / rate


def encode_batched(model, wavs: list[torch.Tensor], n_codebooks: int | None = None, batch_seconds: float = 60.0,
                   bf16: bool = False) -> list[torch.Tensor]:
    """Clips (T_i,) at the model rate -> codes (n, ceil(T_i / frame_size)) each, equal to encoding each alone.

    Clips are grouped longest first so that a batch holds at most `batch_seconds` of padded audio; a clip
    longer than that is coded alone through a stream in `batch_seconds` chunks (bounded memory; streaming
    equals offline).
    """
    budget = max(model.frame_size, int(batch_seconds * model.sample_rate))
    order = sorted(range(len(wavs)), key=lambda i: -wavs[i].shape[-1])
    out: list[torch.Tensor | None] = [None] * len(wavs)
    start = 0
    while start < len(order):
        longest = wavs[order[start]].shape[-1]
        if longest > budget:
            wav = wavs[order[start]]
            with model.streaming(1, n_codebooks=n_codebooks, bf16=bf16) as s:
                parts = [s.encode(wav[i: i + budget]) for i in range(0, wav.shape[-1], budget)]
                out[order[start]] = torch.cat(parts + [s.flush()], dim=-1)[0]
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


def _table(rows: list[dict], plan: dict):
    """Row dicts (codes (n, F) int16, n = 0 for a skipped item) -> a pyarrow Table carrying the plan."""
    import pyarrow as pa

    codes = [r["codes"] for r in rows]
    inner_offsets = np.concatenate([[0], np.cumsum([c.shape[1] for c in codes for _ in range(c.shape[0])])])
    values = np.concatenate([c.reshape(-1) for c in codes] + [np.zeros(0, np.int16)]).astype(np.int16)
    inner = pa.ListArray.from_arrays(pa.array(inner_offsets.astype(np.int32)), pa.array(values))
    outer_offsets = np.concatenate([[0], np.cumsum([c.shape[0] for c in codes])]).astype(np.int32)
    columns = {
        "index": pa.array([r["index"] for r in rows], pa.int64()),
        "source": pa.array([r["source"] for r in rows], pa.string()),
        "duration": pa.array([r["duration"] for r in rows], pa.float64()),
        "samples": pa.array([r["samples"] for r in rows], pa.int64()),
        "frames": pa.array([r["frames"] for r in rows], pa.int32()),
        "codebooks": pa.array([r["codebooks"] for r in rows], pa.int32()),
        "codes": pa.ListArray.from_arrays(pa.array(outer_offsets), inner),
        "model_checksum": pa.array([plan["model_checksum"]] * len(rows), pa.string()),
        "meta": pa.array([r["meta"] for r in rows], pa.string()),
        "error": pa.array([r["error"] for r in rows], pa.string()),
    }
    return pa.table(columns).replace_schema_metadata({b"codec": json.dumps(plan).encode()})


def _shard_plan(path: Path) -> dict:
    import pyarrow.parquet as pq

    try:
        meta = pq.read_schema(path).metadata or {}
    except Exception as err:  # noqa: BLE001 - an unreadable shard is named, never silently trusted
        raise InputError(f"{path}: not a readable Parquet shard ({err}); delete it to redo it") from None
    return json.loads(meta.get(b"codec", b"{}"))


def tokenize(inputs: list[str], out: str | Path, model, n_codebooks: int | None = None, shard_size: int = 256,
             batch_seconds: float = 60.0, bf16: bool = False, rank: int = 0, world: int = 1,
             progress: bool = False, items: list[Item] | None = None) -> list[dict]:
    """Write this rank's shards (units rank, rank + world, ...) of `inputs` into `out`, skipping shards a
    previous run finished -> the skipped (unusable) items of the shards written now, as {source, error}.
    The index is written separately (`write_index`), once every rank is done."""
    from tqdm import tqdm
    import pyarrow.parquet as pq

    if model.config.codebook_size > 32768:
        raise InputError(f"codebook size {model.config.codebook_size} does not fit the int16 codes column")
    out = Path(out)
    items = list_items(inputs) if items is None else items
    plan = plan_for(model, items, n_codebooks, shard_size, bf16)
    _check_plan(out, plan, write=rank == 0)
    mine = list(range(rank, plan["units"], world))
    bar = tqdm(total=sum(len(items[u * shard_size: (u + 1) * shard_size]) for u in mine), disable=not progress,
               desc=f"rank {rank}" if world > 1 else "tokenize", unit="item", position=rank, leave=False,
               dynamic_ncols=True)
    skipped = []
    for unit in mine:
        part, dst = items[unit * shard_size: (unit + 1) * shard_size], out / shard_name(unit)
        if dst.is_file():
            if _shard_plan(dst) != plan:
                raise InputError(f"{dst}: belongs to another tokenization; use a new output folder")
        else:
            # encode_items is looked up at call time so that tests can count what is coded
            rows = sys.modules[__name__].encode_items(model, part, plan["n_codebooks"], batch_seconds, bf16)
            with atomic_path(dst) as tmp:
                pq.write_table(_table(rows, plan), tmp)
            skipped += [{"source": r["source"], "error": r["error"]} for r in rows if r["error"] is not None]
        bar.update(len(part))
    bar.close()
    return skipped


def write_index(out: str | Path, model=None) -> dict:
    """Summarize every shard (not its codes) -> OUT/index.json; returns it. `model`, if given, must be the
    model the shards were made with."""
    import pyarrow.parquet as pq

    out = Path(out)
    if not (out / PLAN_FILE).is_file():
        raise InputError(f"{out}: no {PLAN_FILE}; not a tokenized folder")
    plan = json.loads((out / PLAN_FILE).read_text())
    if model is not None and model.checksum != plan["model_checksum"]:
        raise InputError(f"{out}: tokenized with model {plan['model_checksum'][:12]}, not {model.checksum[:12]}")
    shards, skipped, totals = [], [], {"items": 0, "frames": 0, "seconds": 0.0}
    for unit in range(plan["units"]):
        path = out / shard_name(unit)
        if not path.is_file():
            raise InputError(f"{path}: missing; rerun the tokenizer (it resumes) before writing the index")
        t = pq.read_table(path, columns=["source", "frames", "duration", "error"]).to_pydict()
        ok = [e is None for e in t["error"]]
        skipped += [{"source": s, "error": e} for s, e in zip(t["source"], t["error"]) if e is not None]
        frames = sum(f for f, k in zip(t["frames"], ok) if k)
        shards.append({"file": path.name, "rows": len(ok), "items": sum(ok), "frames": frames})
        totals["items"] += sum(ok)
        totals["frames"] += frames
        totals["seconds"] += sum(d for d, k in zip(t["duration"], ok) if k)
    index = {**plan, **totals, "hours": totals["seconds"] / 3600, "shards": shards, "skipped": skipped}
    with atomic_path(out / INDEX_FILE) as tmp:
        tmp.write_text(json.dumps(index, indent=1) + "\n")
    return index


def read_dataset(out: str | Path) -> Iterator[dict]:
    """Read a tokenized folder back in index order -> row dicts with codes (codebooks, frames) int64 and
    meta as a dict; skipped items are left out."""
    import pyarrow.parquet as pq

    out = Path(out)
    if not (out / INDEX_FILE).is_file():
        raise InputError(f"{out}: no {INDEX_FILE}; run codec tokenize to the end (or --index-only)")
    for shard in json.loads((out / INDEX_FILE).read_text())["shards"]:
        for row in pq.read_table(out / shard["file"]).to_pylist():
            if row["error"] is None:
                row["codes"] = np.asarray(row["codes"], dtype=np.int64).reshape(row["codebooks"], row["frames"])
                row["meta"] = json.loads(row["meta"])
                yield row


# ------------------------------------------------------------------------------------------- main
def _distributed() -> tuple[int, int, bool]:
    """(rank, world size, whether a process group was started), from torchrun's environment."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, False
    import torch.distributed as dist

    # gloo: works on CPU everywhere. A long timeout: ranks meet only at the end, after hours of work.
    dist.init_process_group("gloo", timeout=timedelta(hours=48))
    return dist.get_rank(), dist.get_world_size(), True


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="codec tokenize", description=__doc__.split("\n\n")[0],
                                epilog="Under torchrun, each rank writes its own shards and rank 0 the index.")
    p.add_argument("inputs", nargs="+", help="audio folders or files, corpus folders (codec data prepare), list files")
    p.add_argument("-o", "--output", required=True, help="output folder: shards, plan.json, index.json")
    p.add_argument("--model", default=None, help="shipped model name or checkpoint folder")
    p.add_argument("-n", "--n-codebooks", type=int, default=None, help="codebooks per frame (default: all)")
    p.add_argument("--shard-size", type=int, default=256, help="items per Parquet shard")
    p.add_argument("--batch-seconds", type=float, default=60.0, help="padded audio coded per batch (bounds memory)")
    p.add_argument("--bf16", action="store_true", help="bfloat16 autocast (codes may differ from fp32 in places)")
    p.add_argument("--index-only", action="store_true", help="only (re)write index.json from finished shards")
    p.add_argument("-q", "--quiet", action="store_true", help="print errors only")
    args = p.parse_args(argv)
    out = Path(args.output)
    started = False
    try:
        if args.index_only:
            write_index(out)
            return 0
        from .weights import load

        model = load(args.model).eval()
        items = list_items(args.inputs)
        rank, world, started = _distributed()
        plan = plan_for(model, items, args.n_codebooks, args.shard_size, args.bf16)
        if rank == 0:
            _check_plan(out, plan, write=True)
        if started:
            torch.distributed.barrier()  # plan.json is checked or written before any rank reads it
        skipped = tokenize(args.inputs, out, model, args.n_codebooks, args.shard_size, args.batch_seconds, args.bf16,
                           rank, world, progress=not args.quiet and sys.stderr.isatty(), items=items)
        for s in skipped:
            print(f"codec: error: {s['error']}", file=sys.stderr)
        if started:
            torch.distributed.barrier()  # every shard is written: the index can be built
        if rank == 0:
            index = write_index(out)
            if not args.quiet:
                print(f"{out}: {index['items']} items, {index['hours']:.2f} h, {index['frames']} frames in "
                      f"{len(index['shards'])} shards; {len(index['skipped'])} skipped", file=sys.stderr)
        if started:
            torch.distributed.barrier()  # a rank exiting with an error must not make torchrun stop rank 0 early
        status = InputError.exit_code if skipped else 0
        return status
    except CodecError as err:
        print(f"codec: error: {err}", file=sys.stderr)
        return err.exit_code
    finally:
        if started:
            torch.distributed.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
