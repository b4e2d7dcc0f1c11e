"""Validation during training: mel distance at several depths, PESQ and STOI (`codec.eval.metrics`), the
best-so-far record, and validation clips for TensorBoard."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from ..eval.metrics import NotComputable, pesq, stoi
from ..model import Codec
from .losses import MultiScaleMelLoss

BEST_RECORD = "valid.json"


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


def _pesq_stoi(ref: torch.Tensor, deg: torch.Tensor, lengths: list[int], n: int, rate: int) -> dict:
    """Mean PESQ (wideband) and STOI over the first `n` clips; a clip a metric cannot score (too little
    speech) is left out of that metric, never failing a run."""
    scores: dict[str, list[float]] = {"valid_pesq_wb": [], "valid_stoi": []}
    for i in range(min(n, len(ref))):
        r = ref[i, 0, : lengths[i]].cpu().numpy().astype(np.float64)
        d = deg[i, 0, : lengths[i]].cpu().numpy().astype(np.float64)
        for key, metric in (("valid_stoi", stoi), ("valid_pesq_wb", pesq)):
            try:
                scores[key].append(metric(r, d, rate))
            except NotComputable:
                continue
    return {k: float(np.mean(v)) for k, v in scores.items() if v}


def best_valid(run: Path, key: str) -> float:
    """The validation score of best/ (inf before the first validation)."""
    record = run / "best" / BEST_RECORD
    if not record.is_file():
        return float("inf")
    return json.loads(record.read_text()).get(key, float("inf"))


def log_media(writer, model: Codec, mel: MultiScaleMelLoss, wav: torch.Tensor, recon: torch.Tensor, step: int) -> None:
    """Two validation clips to TensorBoard: reference and full-depth audio, and their log-mel images."""
    for i in range(min(2, len(wav))):
        for tag, x in (("reference", wav[i]), ("decoded", recon[i])):
            writer.add_audio(f"clip{i}/{tag}", x.float().cpu().clamp(-1, 1), step, sample_rate=model.sample_rate)
            spec = mel.log_mel(x[None].float(), 2)[0].flip(0)  # (mels, frames), low frequencies at the bottom
            image = ((spec - spec.min()) / (spec.max() - spec.min() + 1e-6)).cpu()
            writer.add_image(f"clip{i}/{tag}_mel", image, step, dataformats="HW")
