"""`codec train --config recipe.yaml`: train or fine-tune a codec; resumes from its own checkpoints.

Every hyper-parameter lives in the YAML recipe, which is copied beside each checkpoint. A step's batch is
a pure function of (seed, step), so a run stopped and resumed sees the same data as one that was not.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from safetensors.torch import load_file, save_file

from .audio import atomic_path
from .config import CodecConfig
from .data import Corpus, loudness_normalize
from .losses import MultiScaleMelLoss
from .model import Codec
from .weights import save_pretrained

DEFAULTS = {
    "model": {},
    "data": {"corpus": None, "crop_frames": 16, "valid_clips": 32},
    "train": {
        "steps": 20000, "batch_size": 16, "lr": 1e-3, "betas": [0.8, 0.99], "weight_decay": 0.0,
        "warmup": 500, "min_lr_ratio": 0.1, "grad_clip": 1.0, "bf16": True, "seed": 0, "threads": 2,
        "mel_weight": 15.0, "commitment_weight": 0.25, "codebook_weight": 1.0,
        "log_every": 25, "valid_every": 500, "save_every": 250,
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
    return merge(DEFAULTS, yaml.safe_load(Path(path).read_text()) or {})


class Batches:
    """Deterministic random crops: batch(step) depends only on (seed, step)."""

    def __init__(self, corpus_dir: str, crop: int, batch_size: int, seed: int):
        self.corpus = Corpus(corpus_dir, "train")
        if len(self.corpus) == 0:
            raise ValueError(f"{corpus_dir}: no train clips")
        self.crop, self.batch_size, self.seed = crop, batch_size, seed
        lengths = np.array([min(c["length"], crop) for c in self.corpus.clips], dtype=np.float64)
        self.weights = lengths / lengths.sum()  # pick clips in proportion to the audio they can give

    def batch(self, step: int) -> torch.Tensor:
        rng = np.random.default_rng([self.seed, step])
        out = np.zeros((self.batch_size, 1, self.crop), dtype=np.float32)
        for b, i in enumerate(rng.choice(len(self.corpus), size=self.batch_size, p=self.weights)):
            x = self.corpus.audio(i)
            if len(x) > self.crop:
                start = rng.integers(0, len(x) - self.crop + 1)
                x = x[start: start + self.crop]
            out[b, 0, : len(x)] = loudness_normalize(x, rng.uniform(-30, -16))
        return torch.from_numpy(out)


def valid_set(corpus_dir: str, n_clips: int, frames: int, frame_size: int) -> torch.Tensor:
    """A fixed set of validation crops (the first `n_clips` valid clips, evenly spaced)."""
    corpus = Corpus(corpus_dir, "valid")
    if len(corpus) == 0:
        return torch.zeros(0, 1, frames * frame_size)
    idx = np.linspace(0, len(corpus) - 1, min(n_clips, len(corpus))).astype(int)
    out = torch.zeros(len(idx), 1, frames * frame_size)
    for j, i in enumerate(idx):
        x = loudness_normalize(corpus.audio(i)[: frames * frame_size], -23.0)
        out[j, 0, : len(x)] = torch.from_numpy(x)
    return out


def lr_at(step: int, t: dict) -> float:
    """Linear warm-up, then cosine decay to min_lr_ratio * lr at the last step."""
    if step < t["warmup"]:
        return t["lr"] * (step + 1) / t["warmup"]
    progress = min(1.0, (step - t["warmup"]) / max(1, t["steps"] - t["warmup"]))
    return t["lr"] * (t["min_lr_ratio"] + (1 - t["min_lr_ratio"]) * 0.5 * (1 + math.cos(math.pi * progress)))


def save_state(out: Path, model: Codec, opt: torch.optim.Optimizer, step: int, recipe: dict) -> None:
    """Checkpoint: model (package format), optimizer tensors (safetensors), step and RNG (JSON + tensor)."""
    ckpt = out / "checkpoint"
    save_pretrained(model, ckpt)
    tensors, meta = {}, {"step": step, "param_groups": opt.state_dict()["param_groups"]}
    for idx, state in opt.state_dict()["state"].items():
        for k, v in state.items():
            tensors[f"state.{idx}.{k}"] = v if torch.is_tensor(v) else torch.tensor(v)
    tensors["torch_rng"] = torch.get_rng_state()
    with atomic_path(ckpt / "optimizer.safetensors") as tmp:
        save_file(tensors, str(tmp))
    with atomic_path(ckpt / "trainer.json") as tmp:
        tmp.write_text(json.dumps(meta))
    with atomic_path(ckpt / "recipe.yaml") as tmp:
        tmp.write_text(yaml.safe_dump(recipe))


def load_state(out: Path, model: Codec, opt: torch.optim.Optimizer) -> int:
    ckpt = out / "checkpoint"
    if not (ckpt / "trainer.json").is_file():
        return 0
    from .weights import load

    model.load_state_dict(load(ckpt).state_dict())
    meta = json.loads((ckpt / "trainer.json").read_text())
    tensors = load_file(str(ckpt / "optimizer.safetensors"))
    torch.set_rng_state(tensors.pop("torch_rng"))
    state: dict = {}
    for key, v in tensors.items():
        _, idx, k = key.split(".", 2)
        state.setdefault(int(idx), {})[k] = v
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    return int(meta["step"])


def _best_valid(out: Path) -> float:
    record = out / "best" / "valid.json"
    return json.loads(record.read_text())["valid_mel_37"] if record.is_file() else float("inf")


def evaluate(model: Codec, mel: MultiScaleMelLoss, wav: torch.Tensor, depths=(8, 17, 37)) -> dict:
    model.eval()
    out = {}
    with torch.no_grad():
        for n in depths:
            codes = model.encode_prepared(wav, n)
            out[f"valid_mel_{n}"] = float(mel(model.decode(codes), wav))
    model.train()
    return out


def train(recipe: dict, out: str | Path, max_steps: int | None = None, log=print) -> dict:
    """Run (or resume) the recipe into folder `out`; stops at train.steps or after max_steps more."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t = recipe["train"]
    torch.manual_seed(t["seed"])
    torch.set_num_threads(t["threads"])
    cfg = CodecConfig.from_dict({**CodecConfig().to_dict(), **recipe["model"]})
    model = Codec(cfg).train()
    opt = torch.optim.AdamW(model.parameters(), lr=t["lr"], betas=tuple(t["betas"]), weight_decay=t["weight_decay"])
    step = load_state(out, model, opt)
    crop = recipe["data"]["crop_frames"] * cfg.frame_size
    batches = Batches(recipe["data"]["corpus"], crop, t["batch_size"], t["seed"])
    valid = valid_set(recipe["data"]["corpus"], recipe["data"]["valid_clips"], 2 * recipe["data"]["crop_frames"],
                      cfg.frame_size)
    mel = MultiScaleMelLoss(cfg.sample_rate)
    end = t["steps"] if max_steps is None else min(t["steps"], step + max_steps)
    log(f"training {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M params from step {step} to {end}")
    metrics_file = open(out / "metrics.jsonl", "a")
    last, tic, audio_s = {}, time.time(), 0.0
    while step < end:
        for group in opt.param_groups:
            group["lr"] = lr_at(step, t)
        wav = batches.batch(step)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=t["bf16"]):
            recon, q = model(wav)
        mel_loss = mel(recon.float(), wav)
        loss = t["mel_weight"] * mel_loss + t["commitment_weight"] * q.commitment_loss + t["codebook_weight"] * q.codebook_loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), t["grad_clip"])
        opt.step()
        step += 1
        audio_s += wav.shape[0] * wav.shape[-1] / cfg.sample_rate
        if step % t["log_every"] == 0 or step == end:
            speed = audio_s / (time.time() - tic)
            last = {"step": step, "loss": float(loss), "mel": float(mel_loss), "commit": float(q.commitment_loss.detach()),
                    "grad_norm": float(grad_norm), "lr": lr_at(step - 1, t), "audio_s_per_s": round(speed, 2),
                    "perplexity_mean": float(q.perplexity.mean()), "dead_codes": int(model.quantizer.dead_codes().sum())}
            tic, audio_s = time.time(), 0.0
            if step % t["valid_every"] == 0 or step == end:
                last.update(evaluate(model, mel, valid))
                if "valid_mel_37" in last and last["valid_mel_37"] < _best_valid(out):
                    save_pretrained(model, out / "best")  # the weights to export: lowest full-depth valid mel
                    (out / "best" / "valid.json").write_text(json.dumps(last) + "\n")
            metrics_file.write(json.dumps(last) + "\n")
            metrics_file.flush()
            log(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in last.items()))
        if step % t["save_every"] == 0 or step == end:
            save_state(out, model, opt, step, recipe)
    metrics_file.close()
    return last


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="codec train", description=__doc__)
    p.add_argument("--config", required=True, help="YAML recipe")
    p.add_argument("--out", required=True, help="run folder: checkpoints, metrics; resumed if present")
    p.add_argument("--max-steps", type=int, default=None, help="stop after this many more steps")
    args = p.parse_args(argv)
    train(load_recipe(args.config), args.out, args.max_steps, log=lambda s: print(s, flush=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
