"""`codec train --config recipe.yaml`: train or fine-tune a codec; resumes from its own checkpoints.

Every hyper-parameter lives in the YAML recipe, which is copied beside each checkpoint. A step's batch and
its random draws (quantizer dropout, code re-seeding) are pure functions of (seed, step, rank), so a run
stopped and resumed follows the same trajectory as one that was not.

Distributed: `torchrun --nproc_per_node N -m codec.train --config R --out D` trains with DDP (gloo on the
CPU, nccl on CUDA); batch_size is the global batch, split evenly over the processes. See docs/training.md.
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from safetensors.torch import load_file, save_file

from .audio import atomic_path
from .config import CodecConfig
from .data import AUGMENT_DEFAULTS, StepBatches, valid_crops
from .losses import MagnitudeLoss, MultiScaleMelLoss
from .model import Codec
from .weights import save_pretrained

EMA_FILE = "ema.safetensors"

DEFAULTS = {
    "model": {},
    "data": {"corpus": None, "crop_frames": 16, "valid_clips": 32, "workers": 0, "loudness_db": -23.0,
             "augment": dict(AUGMENT_DEFAULTS)},
    "train": {
        "steps": 20000, "batch_size": 16, "lr": 1e-3, "betas": [0.8, 0.99], "weight_decay": 0.0,
        "warmup": 500, "min_lr_ratio": 0.1, "grad_clip": 1.0, "bf16": True, "seed": 0, "threads": 2,
        "device": "cpu",  # cpu, cuda or auto (cuda when available)
        # Losses on the decoded log magnitudes against the input's STFT in the same framing (codec.losses).
        "mel_weight": 15.0, "log_weight": 5.0, "convergence_weight": 5.0,
        "commitment_weight": 0.25, "codebook_weight": 1.0,
        "residual_weight": 1.0,  # each RVQ stage fits its residual (codec.quantizer)
        "quantize_from": 0,  # before this step the decoder gets the unquantized latent (the codebooks still learn)
        "ema_decay": None,  # e.g. 0.999: validate, keep best and export the EMA weights; null = off
        "quantizer_dropout": 0.5,  # share of each batch coded with a random prefix of the stages (DAC)
        "reseed_every": 100, "reseed_threshold": 0.05,  # dead-code re-seeding: period, usage threshold
        "codebook_rate": 0.1,  # picked entries move this far towards their batch centroid per step (k-means)
        "quantizer_decoder_grad": True,  # false: the decoder's gradient stops at the quantizer (codec.quantizer)
        "log_every": 25, "valid_every": 500, "save_every": 250,
        "valid_pesq_clips": 4,  # PESQ / STOI on this many valid clips per validation (0 = off)
        "tensorboard": True, "progress": True,
    },
}


def merge(base: dict, over: dict) -> dict:
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in base.items()}
    for k, v in (over or {}).items():
        if k not in out:
            raise ValueError(f"unknown recipe key {k!r}; known: {', '.join(out)}")
        out[k] = merge(out[k], v) if isinstance(out[k], dict) and out[k] and isinstance(v, dict) else v
    return out


def load_recipe(path: str | Path) -> dict:
    path = Path(path)
    try:
        return merge(DEFAULTS, yaml.safe_load(path.read_text()) or {})
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from None


def lr_at(step: int, t: dict, lr: float | None = None) -> float:
    """Linear warm-up, then cosine decay to min_lr_ratio * lr at the last step."""
    lr = t["lr"] if lr is None else lr
    if step < t["warmup"]:
        return lr * (step + 1) / t["warmup"]
    progress = min(1.0, (step - t["warmup"]) / max(1, t["steps"] - t["warmup"]))
    return lr * (t["min_lr_ratio"] + (1 - t["min_lr_ratio"]) * 0.5 * (1 + math.cos(math.pi * progress)))


def step_seed(seed: int, step: int, rank: int) -> int:
    """The torch seed of one step on one rank: dropout and re-seeding draws depend on nothing else."""
    return int(np.random.SeedSequence([seed, step, rank]).generate_state(1)[0])


# ------------------------------------------------------------------------------------------- state
def _opt_tensors(opt: torch.optim.Optimizer, prefix: str = "state") -> tuple[dict, list]:
    tensors = {}
    for idx, state in opt.state_dict()["state"].items():
        for k, v in state.items():
            tensors[f"{prefix}.{idx}.{k}"] = (v if torch.is_tensor(v) else torch.tensor(v)).detach().cpu().contiguous()
    return tensors, opt.state_dict()["param_groups"]


def _load_opt(opt: torch.optim.Optimizer, tensors: dict, groups: list, prefix: str = "state", **hyper) -> None:
    """Restore AdamW moments and groups; `hyper` (betas, weight decay) from the recipe wins over the saved
    values, so editing them in the recipe of a resumed run takes effect (lr is set at every step anyway)."""
    state: dict = {}
    for key, v in tensors.items():
        head, idx, k = key.split(".", 2)
        if head == prefix:
            state.setdefault(int(idx), {})[k] = v
    try:
        opt.load_state_dict({"state": state, "param_groups": groups})
    except (ValueError, KeyError) as err:
        raise ValueError(f"optimizer state does not fit the model: {err}") from None
    for group in opt.param_groups:
        group.update(hyper)


def _save_tensors(path: Path, tensors: dict) -> None:
    with atomic_path(path) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp))


class Trainer:
    """One training step of the codec: decoded log magnitudes against the input's, plus the VQ losses.

    `step(wav, step)` takes this process's batch wav (B, 1, T), T a multiple of the frame size, and returns
    float metrics. No waveform is made: the phase is computed at decoding time (codec.phase), so the
    magnitudes are the whole target. Under DDP the net is wrapped; `model` is always the bare module.
    """

    def __init__(self, recipe: dict, device: torch.device, ddp: bool = False):
        t = recipe["train"]
        self.t, self.device = t, device
        cfg = CodecConfig.from_dict({**CodecConfig().to_dict(), **recipe["model"]})
        self.model = Codec(cfg).to(device).train()
        vq = self.model.quantizer  # plain attributes, not weights: the state_dict keys stay as shipped
        vq.dropout_prob, vq.reseed_every, vq.reseed_threshold, vq.codebook_rate = \
            float(t["quantizer_dropout"]), int(t["reseed_every"]), float(t["reseed_threshold"]), float(t["codebook_rate"])
        vq.decoder_grad = bool(t["quantizer_decoder_grad"])
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=t["lr"], betas=tuple(t["betas"]),
                                     weight_decay=t["weight_decay"])
        self.mel = MultiScaleMelLoss(cfg.sample_rate).to(device)  # validation, on decoded audio
        self.magnitude = MagnitudeLoss(cfg.synthesis_fft, cfg.sample_rate).to(device)
        self.ema = copy.deepcopy(self.model).eval().requires_grad_(False) if t["ema_decay"] else None
        self.net = self.model
        if ddp:
            from torch.nn.parallel import DistributedDataParallel as DDP

            self.net = DDP(self.model, device_ids=[device.index] if device.type == "cuda" else None)

    def autocast(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=bool(self.t["bf16"]))

    def step(self, wav: torch.Tensor, step: int) -> dict:
        t = self.t
        for group in self.opt.param_groups:
            group["lr"] = lr_at(step, t)
        vq = self.model.quantizer
        reseed_due = (int(vq.calls) + 1) % vq.reseed_every == 0  # this forward re-seeds dead codes
        before = vq.codebooks.detach().clone() if reseed_due else None
        with self.autocast():
            log_mag, q = self.net(wav, quantize=step >= t["quantize_from"])
        # Only re-seeding changes codebooks in a forward pass: count the entries it replaced (on rank 0,
        # whose codebooks the other ranks adopt).
        reseeded = int((vq.codebooks.detach() != before).any(dim=-1).sum()) if reseed_due else None
        with torch.no_grad():
            target = self.model.target_magnitudes(wav)
        terms = self.magnitude(log_mag.float(), target)  # float32: log spectra of bf16 lose the quiet bins
        loss = t["mel_weight"] * terms["mel"] + t["log_weight"] * terms["log"] \
            + t["convergence_weight"] * terms["convergence"] + t["commitment_weight"] * q.commitment_loss \
            + t["codebook_weight"] * q.codebook_loss + t["residual_weight"] * q.residual_loss
        out = dict(terms)
        if reseeded is not None:
            out["reseeded"] = reseeded
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), t["grad_clip"])
        self.opt.step()
        self._sync_reseeded_codes()
        if self.ema is not None:
            self._update_ema()
        out.update(loss=loss, commit=q.commitment_loss, codebook=q.codebook_loss, residual=q.residual_loss, grad_norm=grad_norm,
                   perplexity_mean=q.perplexity.mean(), perplexity_min=q.perplexity.min())
        return {k: float(v.detach()) if torch.is_tensor(v) else float(v) for k, v in out.items()}

    def _sync_reseeded_codes(self) -> None:
        """Dead codes are re-seeded from each rank's own batch: take rank 0's so the replicas stay equal."""
        vq = self.model.quantizer
        if self.net is not self.model and int(vq.calls) % vq.reseed_every == 0:
            torch.distributed.broadcast(vq.codebooks.data, 0)
            torch.distributed.broadcast(vq.usage, 0)

    @torch.no_grad()
    def _update_ema(self) -> None:
        d = float(self.t["ema_decay"])
        for e, p in zip(self.ema.parameters(), self.model.parameters()):
            e.lerp_(p, 1 - d)
        for e, b in zip(self.ema.buffers(), self.model.buffers()):
            e.copy_(b)  # usage statistics and counters are not averaged
        self.ema._weights_changed()

    @property
    def eval_model(self) -> Codec:
        return self.ema if self.ema is not None else self.model

    # --------------------------------------------------------------------------------- checkpoints
    def save(self, ckpt: Path, step: int, recipe: dict, extra: dict) -> None:
        """checkpoint/: model (package format), optimizer tensors (safetensors), trainer.json, recipe.yaml;
        with EMA on, its weights beside them.

        Written whole into checkpoint.new/ and swapped in by renames: a run killed mid-save leaves the
        previous checkpoint (as checkpoint/ or checkpoint.old/), never new weights beside an old step.
        """
        new, old = ckpt.with_name(ckpt.name + ".new"), ckpt.with_name(ckpt.name + ".old")
        shutil.rmtree(new, ignore_errors=True)
        save_pretrained(self.model, new)
        tensors, groups = _opt_tensors(self.opt)
        tensors["torch_rng"] = torch.get_rng_state()  # unused here; format-1 readers expect it
        _save_tensors(new / "optimizer.safetensors", tensors)
        meta = {"step": step, "param_groups": groups, "format": 2, **extra}
        if self.ema is not None:
            _save_tensors(new / EMA_FILE, self.ema.state_dict())
        (new / "recipe.yaml").write_text(yaml.safe_dump(recipe))
        (new / "trainer.json").write_text(json.dumps(meta))
        shutil.rmtree(old, ignore_errors=True)
        if ckpt.exists():
            ckpt.rename(old)
        new.rename(ckpt)
        shutil.rmtree(old, ignore_errors=True)

    def load(self, ckpt: Path, log=print) -> dict:
        """Restore from checkpoint/ (or checkpoint.old/ if a save was cut between its renames); returns
        trainer.json ({} if there is no checkpoint). Reads format 1 (model + optimizer, written before
        the first trainer) too: what it lacks (EMA) starts fresh, and `log` says so."""
        old = ckpt.with_name(ckpt.name + ".old")
        if not (ckpt / "trainer.json").is_file():
            if not (old / "trainer.json").is_file():
                return {}
            ckpt = old
        from .weights import load

        meta = json.loads((ckpt / "trainer.json").read_text())
        saved = load(ckpt)  # checks the SHA-256
        mine, theirs = self.model.config.to_dict(), saved.config.to_dict()
        differ = [k for k in mine if k not in ("name", "training") and mine[k] != theirs[k]]
        if differ:
            raise ValueError(f"{ckpt / 'config.json'}: the checkpoint's model differs from the recipe's in "
                             + ", ".join(f"{k} ({theirs[k]} in the checkpoint, {mine[k]} in the recipe)" for k in differ))
        self.model.load_state_dict(saved.state_dict())
        t = self.t
        tensors = load_file(str(ckpt / "optimizer.safetensors"))
        tensors.pop("torch_rng", None)  # every step re-seeds from (seed, step, rank) instead
        _load_opt(self.opt, tensors, meta["param_groups"], betas=tuple(t["betas"]), weight_decay=t["weight_decay"])
        fresh = []
        if self.ema is not None:
            if (ckpt / EMA_FILE).is_file():
                self.ema.load_state_dict(load_file(str(ckpt / EMA_FILE)))
            else:  # EMA switched on for a run that had it off: the average starts at the current weights
                self.ema.load_state_dict(self.model.state_dict())
                fresh.append("EMA (from the current weights)")
        if fresh:
            log(f"resuming {ckpt} at step {meta['step']}; starting fresh: {'; '.join(fresh)}")
        return meta


def _split(outputs: list, n: int) -> tuple[list, list]:
    """Discriminator outputs on cat([real, fake]) -> (real outputs, fake outputs), each [(logits, feats)]."""
    real = [(lg[:n], [f[:n] for f in feats]) for lg, feats in outputs]
    fake = [(lg[n:], [f[n:] for f in feats]) for lg, feats in outputs]
    return real, fake


# ------------------------------------------------------------------------------------------ validation
def _best_valid(out: Path, key: str) -> float:
    record = out / "best" / "valid.json"
    if not record.is_file():
        return float("inf")
    data = json.loads(record.read_text())
    return data.get(key, data.get("valid_mel_37", float("inf")))


def evaluate(model: Codec, mel: MultiScaleMelLoss, wav: torch.Tensor, lengths: list[int] | None = None,
             depths=(8, 17, 37), pesq_clips: int = 0) -> tuple[dict, torch.Tensor]:
    """Mel distance at each depth on wav (N, 1, T); PESQ (wideband, 16 kHz) and STOI at full depth on the
    first `pesq_clips` clips, each cut to its true length. Returns (metrics, full-depth decode)."""
    was_training = model.training
    model.eval()
    out, full = {}, None
    with torch.no_grad():
        for n in [d for d in depths if d <= model.n_codebooks] or [model.n_codebooks]:
            recon = model.decode(model.encode_prepared(wav, n))[..., : wav.shape[-1]]
            out[f"valid_mel_{n}"] = float(mel(recon, wav))
            full = recon
    if pesq_clips and len(wav):
        out.update(_pesq_stoi(wav, full, lengths or [wav.shape[-1]] * len(wav), pesq_clips, model.sample_rate))
    model.train(was_training)
    return out, full


def _active_seconds(x: np.ndarray, rate: int, range_db: float = 40.0) -> float:
    """Seconds of 20 ms frames within `range_db` of the loudest: how much speech a clip holds."""
    hop = int(0.02 * rate)
    n = len(x) // hop
    if n == 0:
        return 0.0
    power = np.mean(x[: n * hop].reshape(n, hop) ** 2, axis=1)
    return float(np.sum(power > power.max() * 10 ** (-range_db / 10)) * hop / rate) if power.max() > 0 else 0.0


def _pesq_stoi(ref: torch.Tensor, deg: torch.Tensor, lengths: list[int], n: int, rate: int) -> dict:
    import soxr
    from pesq import pesq
    from pystoi import stoi

    p, s = [], []
    for i in range(min(n, len(ref))):
        r = ref[i, 0, : lengths[i]].cpu().numpy().astype(np.float64)
        d = deg[i, 0, : lengths[i]].cpu().numpy().astype(np.float64)
        if _active_seconds(r, rate) >= 0.5:  # pystoi returns ~1e-5, not an error, on too little speech
            s.append(stoi(r, d, rate, extended=False))
        try:  # PESQ refuses clips without detectable speech: skip them, never fail a run over it
            p.append(pesq(16000, soxr.resample(r, rate, 16000), soxr.resample(d, rate, 16000), "wb"))
        except Exception:  # noqa: BLE001
            continue
    out = {"valid_stoi": float(np.mean(s))} if s else {}
    if p:
        out["valid_pesq_wb"] = float(np.mean(p))
    return out


def _log_media(writer, model: Codec, mel: MultiScaleMelLoss, wav: torch.Tensor, recon: torch.Tensor, step: int) -> None:
    """Two validation clips to TensorBoard: reference and full-depth audio, and their log-mel images."""
    for i in range(min(2, len(wav))):
        for tag, x in (("reference", wav[i]), ("decoded", recon[i])):
            writer.add_audio(f"clip{i}/{tag}", x.float().cpu().clamp(-1, 1), step, sample_rate=model.sample_rate)
            spec = mel.log_mel(x[None].float(), 2)[0].flip(0)  # (mels, frames), low frequencies at the bottom
            image = ((spec - spec.min()) / (spec.max() - spec.min() + 1e-6)).cpu()
            writer.add_image(f"clip{i}/{tag}_mel", image, step, dataformats="HW")


# ------------------------------------------------------------------------------------------ the loop
def _setup_distributed(t: dict) -> tuple[int, int, torch.device]:
    """(rank, world, device) from torchrun's environment; a single process otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    want = t["device"]
    if want == "auto":
        want = "cuda" if torch.cuda.is_available() else "cpu"
    if want == "cuda" and not torch.cuda.is_available():
        raise ValueError("train.device is cuda but no CUDA device is available")
    if world == 1:
        return 0, 1, torch.device(want)
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if want == "cuda" else "gloo")
    device = torch.device(f"cuda:{local}") if want == "cuda" else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return torch.distributed.get_rank(), world, device


def _trim_metrics(path: Path, step: int) -> None:
    """Drop records past the resumed step: logged after the last checkpoint by a run that was stopped, they
    would be logged again (a torn last line from a kill goes too)."""
    if not path.is_file():
        return
    keep = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line).get("step", 0) <= step:
                keep.append(line + "\n")
        except json.JSONDecodeError:
            continue
    with atomic_path(path) as tmp:
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


def train(recipe: dict, out: str | Path, max_steps: int | None = None, log=print,
          recipe_path: str | Path | None = None) -> dict:
    """Run (or resume) the recipe into folder `out`; stops at train.steps or after max_steps more.

    Returns the last logged metrics. Only rank 0 writes to `out`.
    """
    out = Path(out)
    t, d = recipe["train"], recipe["data"]
    if d["corpus"] is None:
        raise ValueError("recipe data.corpus is not set: a folder written by `codec data prepare`")
    rank, world, device = _setup_distributed(t)
    main_rank = rank == 0
    if main_rank:
        out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(t["seed"])  # identical initial weights on every rank
    torch.set_num_threads(t["threads"])
    trainer = Trainer(recipe, device, ddp=world > 1)
    model, cfg = trainer.model, trainer.model.config
    meta = trainer.load(out / "checkpoint", log=log if main_rank else (lambda s: None))
    step, wall_before = int(meta.get("step", 0)), float(meta.get("wall_s", 0.0))
    crop = d["crop_frames"] * cfg.frame_size
    batches = StepBatches(d["corpus"], crop, t["batch_size"], t["seed"], rank, world, d["loudness_db"], d["augment"])
    end = t["steps"] if max_steps is None else min(t["steps"], step + max_steps)
    if step >= t["steps"] and main_rank:
        log(f"{out / 'checkpoint'} is at step {step}: train.steps = {t['steps']} is done (raise it to go on)")
    loader = torch.utils.data.DataLoader(batches, batch_size=None, sampler=range(step, end),
                                         num_workers=d["workers"], prefetch_factor=2 if d["workers"] else None)
    valid, valid_lengths = valid_crops(d["corpus"], d["valid_clips"], 2 * crop, d["loudness_db"]) if main_rank \
        else (None, None)
    valid = valid.to(device) if valid is not None else None
    full_key = f"valid_mel_{cfg.n_codebooks}"
    writer = None
    if main_rank and t["tensorboard"]:
        try:
            from torch.utils.tensorboard import SummaryWriter

            writer = SummaryWriter(str(out / "tensorboard"))
        except ImportError:
            log("tensorboard is not installed: scalars go to metrics.jsonl only")
    extra = {"recipe_path": str(Path(recipe_path).resolve()) if recipe_path else None,
             "recipe_name": Path(recipe_path).parent.name if recipe_path else None, "world_size": world}
    if main_rank:
        log(f"training {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M params from step {step} to {end} "
            f"on {world} x {device.type}")
    from tqdm import tqdm

    bar = tqdm(total=end, initial=step, disable=None if (t["progress"] and main_rank) else True,
               dynamic_ncols=True, desc="train", unit="step", file=sys.stderr)
    if main_rank:
        _trim_metrics(out / "metrics.jsonl", step)
    metrics_file = open(out / "metrics.jsonl", "a") if main_rank else None
    last, tic, start, audio_s, reseeded = {}, time.time(), time.time(), 0.0, 0
    for wav in loader:
        torch.manual_seed(step_seed(t["seed"], step, rank))
        values = trainer.step(wav.to(device, non_blocking=True), step)
        reseeded += int(values.get("reseeded", 0))  # codebook entries re-seeded since the last record
        step += 1
        audio_s += wav.shape[0] * world * wav.shape[-1] / cfg.sample_rate
        bar.update(1)
        if step % t["log_every"] == 0 or step == end:
            # Losses are those of the last step (exactly reproducible); nothing averages across ranks.
            speed = audio_s / (time.time() - tic)
            last = {"step": step, **{k: values[k] for k in ("loss", "mel", "log", "convergence")}, "commit": values["commit"],
                    **{k: values[k] for k in ("codebook", "residual") if k in values},
                    "grad_norm": values["grad_norm"], "lr": lr_at(step - 1, t), "audio_s_per_s": round(speed, 2),
                    "perplexity_mean": values["perplexity_mean"], "perplexity_min": values["perplexity_min"],
                    "dead_codes": int(model.quantizer.dead_codes().sum()), "reseeded": reseeded}
            tic, audio_s, reseeded = time.time(), 0.0, 0
            if main_rank and (step % t["valid_every"] == 0 or step == end):
                scores, recon = evaluate(trainer.eval_model, trainer.mel, valid, valid_lengths,
                                         pesq_clips=t["valid_pesq_clips"])
                last.update(scores)
                if writer is not None and len(valid):
                    _log_media(writer, model, trainer.mel, valid, recon, step)
                if full_key in last and last[full_key] < _best_valid(out, full_key):
                    save_pretrained(trainer.eval_model, out / "best")  # the weights to export
                    (out / "best" / "valid.json").write_text(json.dumps(last) + "\n")
                    (out / "best" / "recipe.yaml").write_text(yaml.safe_dump(recipe))
            if main_rank:
                metrics_file.write(json.dumps(last) + "\n")
                metrics_file.flush()
                if writer is not None:
                    for k, v in last.items():
                        if k != "step":
                            writer.add_scalar(k, v, step)
                bar.clear()
                log(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in last.items()))
        if step % t["save_every"] == 0 or step == end:
            _check_replicas(model, world)
            if main_rank:
                trainer.save(out / "checkpoint", step, recipe, {**extra, "wall_s": wall_before + time.time() - start})
        if world > 1 and (step % t["valid_every"] == 0 or step == end):
            torch.distributed.barrier()  # the others wait while rank 0 validates and saves
    bar.close()
    if metrics_file is not None:
        metrics_file.close()
    if writer is not None:
        writer.close()
    return last


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="codec train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="YAML recipe")
    p.add_argument("--out", required=True, help="run folder: checkpoints, metrics; resumed if present")
    p.add_argument("--max-steps", type=int, default=None, help="stop after this many more steps")
    args = p.parse_args(argv)
    try:
        train(load_recipe(args.config), args.out, args.max_steps, log=lambda s: print(s, flush=True),
              recipe_path=args.config)
    finally:
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
