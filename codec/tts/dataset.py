"""A tokenized dataset: Parquet shards of codes, the plan that fixes their contents, and the index.

    OUT/plan.json             what fixes every shard (model, depth, precision, item list, shard size)
    OUT/shard-{u:05d}.parquet unit u of the item list, `shard_size` items, one row each
    OUT/index.json            the plan, each shard's counts, totals and the skipped items

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
"""
from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Iterator

import numpy as np

from ..errors import InputError
from ..io.atomic import atomic_path

INDEX_FILE, PLAN_FILE = "index.json", "plan.json"
FORMAT, VERSION = "codec-tokens", 1


def shard_name(unit: int) -> str:
    return f"shard-{unit:05d}.parquet"


def plan_for(model, sources: list[str], n_codebooks: int | None, shard_size: int, bf16: bool) -> dict:
    """What fixes the contents of every shard: a rerun into the same OUT must match it exactly."""
    n = model.n_codebooks if n_codebooks is None else int(n_codebooks)
    if not 1 <= n <= model.n_codebooks:
        raise InputError(f"--n-codebooks must be 1 to {model.n_codebooks}, got {n}")
    if shard_size < 1:
        raise InputError(f"--shard-size must be at least 1, got {shard_size}")
    listing = hashlib.sha256("\n".join(sources).encode()).hexdigest()
    return {"format": FORMAT, "version": VERSION, "model": model.config.name, "model_checksum": model.checksum,
            "sample_rate": model.sample_rate, "frame_size": model.frame_size, "frame_rate": model.frame_rate,
            "codebook_size": model.config.codebook_size, "n_codebooks": n, "precision": "bf16" if bf16 else "fp32",
            "shard_size": shard_size, "n_items": len(sources), "sources_sha256": listing,
            "units": math.ceil(len(sources) / shard_size)}


def check_plan(out: Path, plan: dict, write: bool) -> None:
    """Refuse an OUT that holds another tokenization; write the plan there if it has none and `write`."""
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


def write_shard(path: Path, rows: list[dict], plan: dict) -> None:
    import pyarrow.parquet as pq

    with atomic_path(path) as tmp:
        pq.write_table(_table(rows, plan), tmp)


def shard_plan(path: Path) -> dict:
    """The plan a finished shard was written under."""
    import pyarrow.parquet as pq

    try:
        meta = pq.read_schema(path).metadata or {}
    except Exception as err:  # noqa: BLE001 - an unreadable shard is named, never silently trusted
        raise InputError(f"{path}: not a readable Parquet shard ({err}); delete it to redo it") from None
    return json.loads(meta.get(b"codec", b"{}"))


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
