"""`codec train --config recipe.yaml --out RUN`: train or fine-tune a codec; resumes from its own checkpoints.

Every hyper-parameter lives in the YAML recipe (`codec.train.recipe`), which is copied beside each
checkpoint. A step's batch and its random draws (quantizer dropout, code re-seeding) are pure functions of
(seed, step, rank), so a run stopped and resumed follows the same trajectory as one that was not.

Distributed: `torchrun --nproc_per_node N -m codec.train --config R --out D` trains with DDP (gloo on the
CPU, nccl on CUDA); batch_size is the global batch, split evenly over the processes. See docs/training.md.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch

from .. import distributed
from ..checkpoint import save_pretrained
from ..errors import RecipeError
from ..io.atomic import atomic_path
from ..io.corpus import Corpus, is_corpus
from ..model import Codec
from ..progress import progress_bar
from .batches import StepBatches, source_factors, valid_crops
from .pitch_shapes import fit_pitch_shapes
from .recipe import Recipe, load_recipe, recipe_name
from .state import METRICS_FILE, load_state, read_metrics, save_state, start_from, write_recipe
from .trainer import MAGNITUDE_TERMS, Trainer, lr_at, step_seed
from .validation import BEST_RECORD, best_valid, evaluate, log_media

LOGGED = ("loss", *MAGNITUDE_TERMS, *(f"synthesis_{name}" for name in MAGNITUDE_TERMS), "adversarial",
          "features", "discriminator", "commit", "codebook", "residual", "grad_norm", "perplexity_mean",
          "perplexity_min")


def _trim_metrics(out: Path, step: int) -> None:
    """Drop records past the resumed step: logged after the last checkpoint by a run that was stopped, they
    would be logged again (a torn last line from a kill goes too)."""
    if not (out / METRICS_FILE).is_file():
        return
    keep = [json.dumps(record) + "\n" for record in read_metrics(out) if record.get("step", 0) <= step]
    with atomic_path(out / METRICS_FILE) as tmp:
        tmp.write_text("".join(keep))


def _check_replicas(model: Codec, world: int) -> None:
    """DDP keeps replicas equal only if nothing rank-local touches the weights: verify it at each save."""
    if world == 1:
        return
    total = torch.stack([p.detach().double().sum() for p in model.parameters()]).sum().reshape(1).to(model.device)
    gathered = [torch.zeros_like(total) for _ in range(world)]
    torch.distributed.all_gather(gathered, total)
    if any(float(g) != float(gathered[0]) for g in gathered):
        raise RuntimeError(f"DDP replicas diverged: parameter sums {[float(g) for g in gathered]}")


class _Records:
    """What rank 0 writes as it goes: metrics.jsonl, TensorBoard scalars and clips, the log line."""

    def __init__(self, out: Path, step: int, tensorboard: bool, log):
        self.log = log
        _trim_metrics(out, step)
        self.file = open(out / METRICS_FILE, "a")
        self.writer = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.writer = SummaryWriter(str(out / "tensorboard"))
            except ImportError:
                log("tensorboard is not installed: scalars go to metrics.jsonl only")

    def write(self, record: dict, step: int) -> None:
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()
        if self.writer is not None:
            for k, v in record.items():
                if k != "step":
                    self.writer.add_scalar(k, v, step)
        self.log(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in record.items()))

    def close(self) -> None:
        self.file.close()
        if self.writer is not None:
            self.writer.close()


class _Validation:
    """Rank 0's fixed validation crops; keeps best/ (lowest full-depth mel distance) up to date."""

    def __init__(self, recipe: Recipe, trainer: Trainer, out: Path, crop: int, device: torch.device):
        d = recipe.data
        wav, self.lengths = valid_crops(d.corpus, d.valid_clips, 2 * crop, d.loudness_db)
        self.wav, self.recipe, self.trainer, self.out = wav.to(device), recipe, trainer, out
        self.key = f"valid_mel_{trainer.model.config.n_codebooks}"

    def run(self, record: dict, step: int, writer) -> None:
        trainer = self.trainer
        scores, recon = evaluate(trainer.eval_model, trainer.mel, self.wav, self.lengths,
                                 pesq_clips=self.recipe.train.valid_pesq_clips)
        record.update(scores)
        if writer is not None and len(self.wav):
            log_media(writer, trainer.model, trainer.mel, self.wav, recon, step)
        if self.key in record and record[self.key] < best_valid(self.out, self.key):
            best = self.out / "best"
            save_pretrained(trainer.eval_model, best)  # the weights to export
            (best / BEST_RECORD).write_text(json.dumps(record) + "\n")
            write_recipe(best / "recipe.yaml", self.recipe)


def _record(values: dict, step: int, t, speed: float, model: Codec, reseeded: int) -> dict:
    return {"step": step, **{k: values[k] for k in LOGGED if k in values}, "lr": lr_at(step - 1, t),
            "audio_s_per_s": round(speed, 2), "dead_codes": int(model.quantizer.dead_codes().sum()),
            "reseeded": reseeded}


def _loader(recipe: Recipe, crop: int, step: int, end: int, rank: int, world: int) -> torch.utils.data.DataLoader:
    """This rank's batches of steps [step, end)."""
    t, d = recipe.train, recipe.data
    batches = StepBatches(d.corpus, crop, t.batch_size, t.seed, rank, world, d.loudness_db, d.augment,
                          source_weights=d.source_weights)
    return torch.utils.data.DataLoader(batches, batch_size=None, sampler=range(step, end), num_workers=d.workers,
                                       prefetch_factor=2 if d.workers else None)


def _restore(trainer: Trainer, ckpt: Path, init: str | None, reinit: list[str], log) -> dict:
    """Resume from the run's checkpoint; a new run starts from `init` if the recipe names weights."""
    meta = load_state(trainer, ckpt, log=log)
    if not meta and init is not None:
        start_from(trainer, init, tuple(reinit), log=log)
    return meta


def train(recipe: Recipe, out: str | Path, max_steps: int | None = None, log=print,
          recipe_path: str | Path | None = None) -> dict:
    """Run (or resume) the recipe into folder `out`; stops at train.steps or after max_steps more.

    Returns the last logged metrics. Only rank 0 writes to `out`.
    """
    out, t, d = Path(out), recipe.train, recipe.data
    if d.corpus is None:
        raise RecipeError("recipe data.corpus is not set: a folder written by `codec data prepare`")
    if not is_corpus(d.corpus):
        raise RecipeError(f"recipe data.corpus {d.corpus}: not a folder written by `codec data prepare` (a relative "
                          "path is from the folder training runs in)")
    # Before anything is written: a misspelt source weight fails here, not after the model is built.
    source_factors([c["source"] for c in Corpus(d.corpus, "train").clips], d.source_weights, f"{d.corpus} (train)")
    rank, world, device = distributed.start(t.device)
    main_rank = rank == 0
    if main_rank:
        out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(t.seed)  # identical initial weights on every rank
    torch.set_num_threads(t.threads)
    trainer = Trainer(recipe, device, ddp=world > 1)
    model = trainer.model
    meta = _restore(trainer, out / "checkpoint", t.init, t.reinit, log=log if main_rank else (lambda s: None))
    if not model.pitch.fitted:  # every rank fits the same shapes: same clips, same seed
        frames, clips = fit_pitch_shapes(model, d.corpus, d.loudness_db, seed=t.seed)
        if trainer.ema is not None:
            trainer.ema.pitch.shapes.copy_(model.pitch.shapes)
        if main_rank:
            log(f"fitted the pitch coder's {len(model.pitch.shapes)} contour shapes on {frames} voiced frames "
                f"of {clips} training clips")
    step, wall_before = int(meta.get("step", 0)), float(meta.get("wall_s", 0.0))
    crop = d.crop_frames * model.frame_size
    end = t.steps if max_steps is None else min(t.steps, step + max_steps)
    loader = _loader(recipe, crop, step, end, rank, world)
    validation = _Validation(recipe, trainer, out, crop, device) if main_rank else None
    records = _Records(out, step, t.tensorboard, log) if main_rank else None
    extra = {"recipe_name": recipe_name(recipe_path) if recipe_path else None, "world_size": world}
    if main_rank:
        log(f"training {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M params from step {step} to {end} "
            f"on {world} x {device.type}")
        if step >= t.steps:
            log(f"{out / 'checkpoint'} is at step {step}: train.steps = {t.steps} is done (raise it to go on)")
    bar = progress_bar(t.progress and main_rank, total=end, initial=step, desc="train", unit="step", file=sys.stderr)
    last, tic, start, audio_s, reseeded = {}, time.time(), time.time(), 0.0, 0
    for wav in loader:
        torch.manual_seed(step_seed(t.seed, step, rank))
        values = trainer.step(wav.to(device, non_blocking=True), step)
        reseeded += int(values.get("reseeded", 0))  # codebook entries re-seeded since the last record
        step += 1
        audio_s += wav.shape[0] * world * wav.shape[-1] / model.sample_rate
        bar.update(1)
        if step % t.log_every == 0 or step == end:
            # Losses are those of the last step (exactly reproducible); nothing averages across ranks.
            last = _record(values, step, t, audio_s / (time.time() - tic), model, reseeded)
            tic, audio_s, reseeded = time.time(), 0.0, 0
            if main_rank:
                if step % t.valid_every == 0 or step == end:
                    validation.run(last, step, records.writer)
                bar.clear()
                records.write(last, step)
        if step % t.save_every == 0 or step == end:
            _check_replicas(model, world)
            if main_rank:
                wall = wall_before + time.time() - start
                save_state(trainer, out / "checkpoint", step, recipe, {**extra, "wall_s": wall})
        if world > 1 and (step % t.valid_every == 0 or step == end):
            distributed.barrier()  # the others wait while rank 0 validates and saves
    bar.close()
    if records is not None:
        records.close()
    return last


def add_arguments(p) -> None:
    p.add_argument("--config", required=True, help="YAML recipe")
    p.add_argument("-o", "--out", required=True, help="run folder: checkpoints, metrics; resumed if present")
    p.add_argument("--max-steps", type=int, default=None, help="stop after this many more steps")


def run(args) -> int:
    try:
        train(load_recipe(args.config), args.out, args.max_steps, log=lambda s: print(s, flush=True),
              recipe_path=args.config)
    finally:
        distributed.stop()
    return 0
