"""The pitch coder's contour shapes (`PitchCoder.shapes`), fitted on a corpus's training clips when a run
starts from weights that lack them."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..io.corpus import Corpus
from .batches import loudness_normalize

FIT_CLIPS = 2000  # about 40,000 voiced frames of read speech: every shape gets dozens


@torch.no_grad()
def fit_pitch_shapes(model, root: str | Path, loudness_db: float, clips: int = FIT_CLIPS, seed: int = 0
                     ) -> tuple[int, int]:
    """Estimate the pitch of `clips` random training clips (loudness-normalized as training crops are) and
    fit model.pitch.shapes to their contours -> (voiced frames, clips) fitted on."""
    cfg = model.config
    corpus = Corpus(root, "train")
    picked = np.random.default_rng(seed).choice(len(corpus), min(clips, len(corpus)), replace=False)
    f0s, voiced = [], []
    for i in sorted(int(i) for i in picked):
        x = corpus.audio(i)
        x = x[: len(x) // cfg.frame_size * cfg.frame_size]
        if len(x):
            f0, v = model.pitch_estimate(torch.from_numpy(loudness_normalize(x, loudness_db))[None, None])
            f0s.append(f0[0])
            voiced.append(v[0])
    if not f0s:
        raise ValueError(f"{root}: no training clip is a frame long, so no pitch contour to fit")
    frames = model.pitch.fit(torch.cat(f0s)[None], torch.cat(voiced)[None], seed=seed)
    return frames, len(f0s)
