"""Training batches from a prepared corpus: loudness normalization, augmentation, the batch of each step
(a pure function of seed, step and rank) and the fixed validation crops."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..errors import RecipeError
from ..io.corpus import MANIFEST_FILE, Corpus
from .recipe import Augment


def loudness_normalize(x: np.ndarray, target_dbfs: float) -> np.ndarray:
    """Scale so the mean power of the louder half of 20 ms frames sits at target_dbfs, never clipping."""
    hop = 480
    n = len(x) // hop
    if n == 0:
        return x
    power = np.sort(np.mean(x[: n * hop].reshape(n, hop) ** 2, axis=1))[n // 2:]
    gain = 10 ** (target_dbfs / 20) / np.sqrt(power.mean() + 1e-10)
    peak = np.abs(x).max() * gain
    return x * (gain / peak * 0.99 if peak > 0.99 else gain)


def augment_crop(x: np.ndarray, rng: np.random.Generator, loudness_db: float, aug: Augment, rate: int) -> np.ndarray:
    """Loudness-normalize one crop (T,) to a random level, then maybe low-pass it and add mild noise.

    The codec reproduces what it is given, so augmentation changes input and target alike: it widens the
    kinds of audio the model learns to code, it does not teach denoising.
    """
    from scipy.signal import butter, sosfilt

    # Every random draw is made whether or not it is used, so switching one augmentation on or off
    # leaves the crops and the other augmentations of every step unchanged.
    level = loudness_db + rng.uniform(-aug.gain_db, aug.gain_db)
    do_band, cutoff = rng.random() < aug.bandlimit_prob, rng.uniform(*aug.bandlimit_hz)
    do_noise, snr = rng.random() < aug.noise_prob, rng.uniform(*aug.noise_snr_db)
    noise_seed = int(rng.integers(2**31))
    if do_band and cutoff < rate / 2:
        x = sosfilt(butter(8, cutoff, fs=rate, output="sos"), x).astype(np.float32)
    x = loudness_normalize(x, level)
    if do_noise and len(x):
        speech_power = 10 ** (level / 10)  # loudness_normalize put the active frames at `level` dBFS
        noise = np.random.default_rng(noise_seed).standard_normal(len(x)).astype(np.float32)
        x = np.clip(x + noise * np.sqrt(speech_power / 10 ** (snr / 10)), -1, 1)
    return x.astype(np.float32)


def change_speed(x: np.ndarray, factor: float, rate: int) -> np.ndarray:
    """Play x `factor` times as fast (> 1: shorter, higher): every frequency times `factor`, as a resampling
    from rate * factor to rate."""
    import soxr

    return soxr.resample(x, rate * factor, rate, quality="HQ").astype(np.float32)


def speed_factor(seed: int, step: int, index: int, aug: Augment) -> float:
    """Crop `index` of step `step`'s speed factor (1.0: unchanged). Drawn from its own random stream, so the
    crops and augmentations of a recipe without it stay exactly what they were."""
    rng = np.random.default_rng([seed, step, index, 1])
    on, u = rng.random() < aug.speed_prob, rng.random()
    if not on:
        return 1.0
    low, high = np.log(aug.speed_range[0]), np.log(aug.speed_range[1])
    return float(np.exp(low + u * (high - low)))


def source_factors(sources: list[str], weights: dict[str, float], where: str) -> np.ndarray:
    """Each clip's sampling factor: its source's entry in `weights`, 1 for a source not named there. A name
    the clips do not have is an error (a typo would otherwise change nothing), as are a negative weight and
    weights that leave no clip."""
    known = set(sources)
    for name, value in weights.items():
        if name not in known:
            raise RecipeError(f"{where}: data.source_weights names {name!r}, which has no clip there; "
                             f"the sources are {', '.join(sorted(known))}")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
            raise RecipeError(f"{where}: data.source_weights[{name!r}] is {value!r}; it must be >= 0")
    factors = np.array([float(weights.get(s, 1.0)) for s in sources])
    if not factors.any():
        raise RecipeError(f"{where}: data.source_weights leave no clip to draw")
    return factors


class StepBatches(torch.utils.data.Dataset):
    """Map-style: item `step` is this rank's share of the global batch of training step `step`.

    The global batch is `batch_size` random crops; crop j of step s depends only on (seed, s, j), and rank r
    of `world` takes crops [r * B / world, (r + 1) * B / world). So a batch is a pure function of
    (seed, step, rank): resuming, worker processes and prefetching cannot change what a step sees, and N
    processes together see exactly the batch one process would (this is the distributed sampler).
    Returns wav (B / world, 1, crop) float32.
    """

    def __init__(self, root: str | Path, crop: int, batch_size: int, seed: int, rank: int = 0, world: int = 1,
                 loudness_db: float = -23.0, augment: Augment | None = None, split: str = "train",
                 source_weights: dict[str, float] | None = None):
        if batch_size % world:
            raise RecipeError(f"batch_size {batch_size} is not a multiple of the {world} processes")
        self.root, self.crop, self.batch_size, self.seed = str(root), crop, batch_size, seed
        self.rank, self.world, self.split = rank, world, split
        self.loudness_db, self.augment = loudness_db, augment or Augment()
        corpus = Corpus(root, split)
        if len(corpus) == 0:
            raise ValueError(f"{root}: no {split} clips in {MANIFEST_FILE}")
        lengths = np.array([min(c["length"], crop) for c in corpus.clips], dtype=np.float64)
        # Clips are picked in proportion to the audio they can give, times their source's weight.
        lengths *= source_factors([c["source"] for c in corpus.clips], source_weights or {}, f"{root} ({split})")
        self.weights = lengths / lengths.sum()
        self.sample_rate = corpus.sample_rate
        self._corpus: Corpus | None = None  # opened in each worker: a memory map does not pickle cheaply

    def __len__(self) -> int:
        return 2**62  # endless: any step is a valid index

    def __getitem__(self, step: int) -> torch.Tensor:
        if self._corpus is None:
            self._corpus = Corpus(self.root, self.split)
        local = self.batch_size // self.world
        out = np.zeros((local, 1, self.crop), dtype=np.float32)
        for b in range(local):
            index = self.rank * local + b
            rng = np.random.default_rng([self.seed, int(step), index])
            x = self._corpus.audio(int(rng.choice(len(self.weights), p=self.weights)))
            speed = speed_factor(self.seed, int(step), index, self.augment)
            need = self.crop if speed == 1.0 else int(np.ceil(self.crop * speed))  # the input a crop plays
            start = int(rng.integers(0, max(1, len(x) - need + 1)))
            x = x[start: start + need]
            if speed != 1.0:
                x = change_speed(x, speed, self.sample_rate)[: self.crop]
            x = augment_crop(x, rng, self.loudness_db, self.augment, self.sample_rate)
            out[b, 0, : len(x)] = x  # shorter clips are zero padded at the end
        return torch.from_numpy(out)


def valid_crops(root: str | Path, n_clips: int, samples: int, loudness_db: float = -23.0
                ) -> tuple[torch.Tensor, list[int]]:
    """A fixed validation set: `n_clips` valid clips evenly spaced through the split, each cut to `samples`
    and loudness-normalized -> (wav (N, 1, samples) zero padded, true lengths)."""
    corpus = Corpus(root, "valid")
    if len(corpus) == 0:
        return torch.zeros(0, 1, samples), []
    idx = np.linspace(0, len(corpus) - 1, min(n_clips, len(corpus))).astype(int)
    out, lengths = torch.zeros(len(idx), 1, samples), []
    for j, i in enumerate(idx):
        x = loudness_normalize(corpus.audio(int(i))[:samples], loudness_db)
        out[j, 0, : len(x)] = torch.from_numpy(x)
        lengths.append(len(x))
    return out, lengths
