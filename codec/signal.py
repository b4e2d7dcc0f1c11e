"""Audio held in memory: the batch layout the model takes, and the one resampler (soxr, high quality)."""
from __future__ import annotations

import numpy as np
import soxr
import torch

QUALITY = "HQ"


def as_batch(wav) -> torch.Tensor:
    """[T], [C, T] or [B, C, T] (tensor or array) -> float32 tensor [B, C, T].

    A 2-D input longer in its first dimension is refused: that is soundfile's (samples, channels) layout,
    which read as [C, T] would turn every sample into a channel.
    """
    wav = torch.as_tensor(np.asarray(wav) if not isinstance(wav, torch.Tensor) else wav)
    if not wav.is_floating_point():
        raise TypeError(f"audio must be floating point in [-1, 1], got {wav.dtype}")
    if wav.dim() == 1:
        wav = wav[None, None]
    elif wav.dim() == 2:
        rows, cols = wav.shape
        if rows > cols > 0:  # [C, 0] is an empty chunk, not a layout question
            raise ValueError(f"audio of shape {tuple(wav.shape)} looks like (samples, channels), as soundfile reads "
                             f"it; pass its transpose (wav.T), shaped [channels, samples]")
        wav = wav[None]
    elif wav.dim() != 3:
        raise ValueError(f"audio must be [T], [C, T] or [B, C, T], got shape {tuple(wav.shape)}")
    return wav.float()


def resample_array(x: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """(T,) or (T, channels) -> the same at `to_rate`, exact length round(T * to / from); unchanged (not
    copied) when the rates agree."""
    if from_rate == to_rate:
        return x
    if from_rate <= 0:
        raise ValueError(f"sample rate must be positive, got {from_rate}")
    return soxr.resample(x, from_rate, to_rate, quality=QUALITY)


def resample(wav: torch.Tensor, from_rate: int, to_rate: int) -> torch.Tensor:
    """[B, C, T] -> [B, C, T'] (`resample_array` on every channel)."""
    if from_rate == to_rate:
        return wav
    b, c, t = wav.shape
    flat = wav.reshape(b * c, t).T.detach().cpu().double().numpy()  # soxr wants (T, channels)
    out = resample_array(flat, from_rate, to_rate)
    return torch.from_numpy(out.T.astype(np.float32)).reshape(b, c, -1).to(wav.device)


def resample_stream(from_rate: int, to_rate: int, channels: int) -> soxr.ResampleStream:
    """A chunk-by-chunk resampler of float32 (T, channels) blocks: `.resample_chunk(x, last=...)`. Its
    concatenated output equals `resample_array` on the whole signal."""
    return soxr.ResampleStream(from_rate, to_rate, channels, dtype="float32", quality=QUALITY)
