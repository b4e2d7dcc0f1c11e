"""`codec export RUN_DIR -o DIR [--which best|last]`: a training run -> an inference checkpoint.

Reads a run folder written by `codec train` (checkpoint/ with the last state, best/ with the weights of
lowest full-depth validation mel distance, metrics.jsonl), checks the weights' SHA-256, and writes the
package format (model.safetensors, config.json, model.sha256) with a summary of how the weights were
made in config.training, which `codec info` prints. Nothing in the run folder is written.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml

from ..checkpoint import WEIGHTS_FILE, describe, load, save_pretrained
from ..config import WEIGHTS_DTYPES
from ..errors import UsageError, WeightsError
from ..io.corpus import SUMMARY_FILE
from .recipe import recipe_name
from .state import EMA_FILE, RECIPE_FILE, TRAINER_FILE, read_metrics


def _read_json(path: Path) -> dict | None:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise WeightsError(f"{path}: not valid JSON ({err})") from None


def pick_source(run: Path, which: str | None) -> Path:
    """best/ if asked for or (by default) if present, else checkpoint/ ('last')."""
    best, last = run / "best", run / "checkpoint"
    if which == "best" or (which is None and (best / WEIGHTS_FILE).is_file()):
        if not (best / WEIGHTS_FILE).is_file():
            raise WeightsError(f"{best}: no best checkpoint in this run (no validation has finished yet); "
                               "use --which last")
        return best
    if not (last / WEIGHTS_FILE).is_file():
        raise WeightsError(f"{last}: no checkpoint in this run folder ({run})")
    return last


def training_summary(run: Path, source: Path, frame_seconds: float, recipe_name: str | None = None) -> dict:
    """How the weights in `source` were made: flat str/number values, one per `codec info` line. Names,
    never paths: the summary ships inside the package, where a machine's paths mean nothing."""
    ckpt = run / "checkpoint"
    recipe_file = ckpt / RECIPE_FILE
    recipe = yaml.safe_load(recipe_file.read_text()) if recipe_file.is_file() else None
    trainer = _read_json(ckpt / TRAINER_FILE) or {}
    metrics = read_metrics(run)
    summary: dict = {"run": run.resolve().name, "exported": "best (lowest valid mel, full depth)"
                     if source.name == "best" else "last checkpoint"}
    valid = _read_json(source / "valid.json") if source.name == "best" else None
    if valid is None:  # last checkpoint: the newest validation record at or before its step
        step = trainer.get("step")
        valid = next((m for m in reversed(metrics) if any(k.startswith("valid_") for k in m)
                      and (step is None or m.get("step", 0) <= step)), None)
    step = (valid or {}).get("step") if source.name == "best" else trainer.get("step")
    if recipe is not None:
        summary.update(_recipe_summary(recipe, recipe_name or _run_recipe_name(trainer), step, frame_seconds))
    elif step is not None:
        summary["steps"] = int(step)
    for k, v in (valid or {}).items():
        if k.startswith("valid_"):
            summary[k] = round(float(v), 4)
    if "wall_s" in trainer:
        summary["wall_hours"] = round(trainer["wall_s"] / 3600, 2)
    elif metrics and recipe is not None:
        summary["wall_hours_estimated"] = _estimated_wall_hours(recipe, metrics, frame_seconds)
    return summary


def _run_recipe_name(trainer: dict) -> str | None:
    """The recipe's `folder/file` name as the run recorded it (runs that kept a path: its last two parts)."""
    if trainer.get("recipe_path"):
        return recipe_name(trainer["recipe_path"])
    name = trainer.get("recipe_name")
    return name if name and "/" in name else None


def _recipe_summary(recipe: dict, name: str | None, step, frame_seconds: float) -> dict:
    t, d = recipe.get("train", {}), recipe.get("data", {})
    crop_s = d.get("crop_frames", 16) * frame_seconds
    summary: dict = {"recipe_name": name or "unknown (the run kept only its copy, recipe.yaml)"}
    if step is not None:
        summary["steps"] = int(step)
        summary["audio_hours_seen"] = round(int(step) * t.get("batch_size", 0) * crop_s / 3600, 2)
    summary["batch"] = f"{t.get('batch_size')} x {crop_s:.2f} s crops, lr {t.get('lr')}"
    corpus = d.get("corpus")
    info = _read_json(Path(corpus) / SUMMARY_FILE) if corpus else None
    if info:  # the corpus's description: its folder's name, sources, hours and held-out parts
        summary["corpus"] = Path(corpus).name
        summary["corpus_sources"] = ", ".join(info.get("sources", []))
        summary["corpus_hours"] = ", ".join(f"{k} {v}" for k, v in sorted(info.get("hours", {}).items()))
        summary["holdout_valid"] = ", ".join(info.get("valid", [])) or "none"
        summary["holdout_test"] = ", ".join(info.get("test", [])) or "none"
    return summary


def _estimated_wall_hours(recipe: dict, metrics: list[dict], frame_seconds: float) -> float:
    """For runs that record no wall time: each log line gives its interval's speed, so sum the intervals."""
    audio_per_step = recipe["train"]["batch_size"] * recipe["data"].get("crop_frames", 16) * frame_seconds
    wall, prev = 0.0, 0
    for m in metrics:
        if m.get("audio_s_per_s"):
            wall += (m["step"] - prev) * audio_per_step / m["audio_s_per_s"]
            prev = m["step"]
    return round(wall / 3600, 2)


def export(run_dir: str | Path, out_dir: str | Path, which: str | None = None, name: str | None = None,
           recipe_path: str | Path | None = None, notes: dict[str, str] | None = None,
           weights_dtype: str | None = None) -> Path:
    """Write the inference checkpoint of run `run_dir` into `out_dir`; returns `out_dir`.

    notes: extra training-summary entries (what the run's files cannot tell, such as a change of recipe
    part-way); they may not replace an entry the summary already has. weights_dtype: how to store the
    weights (float16 halves the file; the model still computes in float32); None keeps the run's."""
    run = Path(run_dir)
    if not run.is_dir():
        raise WeightsError(f"{run}: not a training run folder")
    if which not in (None, "best", "last"):
        raise ValueError(f"--which must be best or last, got {which!r}")
    source = pick_source(run, which)
    model = load(source)  # verifies the checksum and that the weights fit the config
    summary = training_summary(run, source, model.frame_size / model.sample_rate,
                               recipe_name(recipe_path) if recipe_path else None)
    ema = source / EMA_FILE  # best/ already holds the EMA weights when the run kept them
    if source.name != "best" and ema.is_file():
        from safetensors.torch import load_file

        try:
            model.load_state_dict(load_file(str(ema)))
        except RuntimeError as err:
            raise WeightsError(f"{ema}: does not fit the model ({err})") from None
        model._weights_changed()
        summary["exported"] += " (EMA weights)"
    clash = sorted(set(notes or {}) & set(summary))
    if clash:
        raise ValueError(f"--note {', '.join(clash)}: already in the training summary")
    model.config.training = {**summary, **(notes or {})}
    if weights_dtype is not None:
        model.config.weights_dtype = weights_dtype
        model._weights_changed()
    if name:
        model.config.name = name
    out = Path(out_dir)
    if out.resolve() == source.resolve():
        raise ValueError(f"{out}: export would overwrite its own source")
    return save_pretrained(model, out)


def add_arguments(p) -> None:
    p.add_argument("run", help="run folder written by codec train --out")
    p.add_argument("-o", "--out", "--output", dest="out", required=True,
                   help="folder to write the inference checkpoint into")
    p.add_argument("--which", choices=["best", "last"], default=None,
                   help="best: lowest valid mel; last: newest checkpoint (default: best if present)")
    p.add_argument("--name", default=None, help="model name to record in config.json (default: keep)")
    p.add_argument("--recipe", default=None,
                   help="the recipe file the run was started from, to record by name (default: as the run recorded it)")
    p.add_argument("--note", action="append", default=[], metavar="KEY=TEXT",
                   help="an extra line for the training summary (`codec info`); repeatable")
    p.add_argument("--weights-dtype", choices=list(WEIGHTS_DTYPES), default=None,
                   help="store the weights as float32 or float16 (half the file; computed in float32 all the same)")


def run(args) -> int:
    notes = {}
    for note in args.note:
        key, sep, text = note.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--note {note!r}: expected KEY=TEXT")
        notes[key.strip()] = text.strip()
    try:
        out = export(args.run, args.out, args.which, args.name, args.recipe, notes, args.weights_dtype)
    except ValueError as err:  # a bad --which or a --note that clashes: usage, not a damaged run
        raise UsageError(str(err)) from None
    print(describe(load(out)))
    print(f"wrote {out}", file=sys.stderr)
    return 0
