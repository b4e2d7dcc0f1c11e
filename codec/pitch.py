"""Pitch of the input, per synthesis hop: the training target of the decoder's harmonic head.

A YIN estimator (de Cheveigne and Kawahara, 2002), batched in torch: the cumulative mean normalized
difference function of each 40 ms window, its first dip below a threshold inside the search range, refined
by a parabola. Used only in training, on the clean input, so it may look half a window ahead.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def yin_f0(wav: torch.Tensor, hop: int = 240, sample_rate: int = 24000, fmin: float = 60.0, fmax: float = 500.0,
           window: int = 960, threshold: float = 0.15, voicing: float = 0.35,
           silence_db: float = -50.0, decimate: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """wav (B, 1, T), T a multiple of hop -> (f0 Hz (B, T // hop), voiced (B, T // hop) bool).

    The window of hop h is centred on the middle of hop h (samples [h * hop, (h + 1) * hop)). A hop is
    voiced when its best dip is below `voicing` and the window is within `silence_db` of the loudest one
    of its item; unvoiced hops get f0 0. The search runs at sample_rate / decimate (pairs averaged: pitch
    lives far below the new Nyquist), a quarter of the work.
    """
    x = wav[:, 0].float()
    if decimate > 1:
        if hop % decimate or window % decimate:
            raise ValueError(f"hop {hop} and window {window} must be multiples of decimate {decimate}")
        x = x[:, : x.shape[-1] // decimate * decimate].reshape(x.shape[0], -1, decimate).mean(dim=-1)
        hop, window, sample_rate = hop // decimate, window // decimate, sample_rate / decimate
    batch, n = x.shape
    hops = n // hop
    tau_max = int(sample_rate / fmin) + 1
    tau_min = max(2, int(sample_rate / fmax))
    half = window // 2
    padded = F.pad(x, (half - hop // 2, half - hop // 2 + tau_max + hop))
    span = window + tau_max
    frames = padded.unfold(-1, span, hop)[:, :hops]  # (B, H, window + tau_max)
    frames = frames - frames[..., :window].mean(dim=-1, keepdim=True)
    # d(tau) = sum_j (x_j - x_{j+tau})^2 over the window: energies by cumulative sums, the cross term by FFT.
    size = 1 << (span + window - 1).bit_length()
    spec_a = torch.fft.rfft(frames[..., :window], n=size)
    spec_b = torch.fft.rfft(frames, n=size)
    cross = torch.fft.irfft(spec_b * spec_a.conj(), n=size)[..., :tau_max]  # sum_j x_j x_{j+tau}
    sq = F.pad(frames.square().cumsum(dim=-1), (1, 0))
    energy0 = sq[..., window:window + 1]
    taus = torch.arange(tau_max, device=x.device)
    energy_tau = sq[..., taus + window] - sq[..., taus]
    diff = (energy0 + energy_tau - 2 * cross).clamp_min(0.0)
    # Cumulative mean normalization: d'(tau) = d(tau) tau / sum_{j<=tau} d(j), d'(0) = 1.
    cum = diff[..., 1:].cumsum(dim=-1)
    norm = torch.ones_like(diff)
    norm[..., 1:] = diff[..., 1:] * taus[1:] / cum.clamp_min(1e-9)
    search = norm[..., tau_min:tau_max - 1]
    below = search < threshold
    # First dip below the threshold, walked down to its local minimum; the global minimum where none is.
    first = torch.where(below.any(dim=-1), below.float().argmax(dim=-1), search.argmin(dim=-1))
    lags = torch.arange(search.shape[-1], device=x.device)
    local_min = F.pad(search[..., :-1] <= search[..., 1:], (0, 1), value=True)
    idx = (local_min & (lags >= first[..., None])).float().argmax(dim=-1)
    best = search.gather(-1, idx[..., None])[..., 0]
    # Parabolic refinement around the dip (in the normalized function), clamped to half a lag.
    left = search.gather(-1, (idx - 1).clamp_min(0)[..., None])[..., 0]
    right = search.gather(-1, (idx + 1).clamp_max(search.shape[-1] - 1)[..., None])[..., 0]
    curvature = left - 2 * best + right
    shift = torch.where(curvature > 1e-9, 0.5 * (left - right) / curvature.clamp_min(1e-9), torch.zeros_like(best))
    tau = (idx + tau_min).float() + shift.clamp(-0.5, 0.5)
    level = 10 * torch.log10(energy0[..., 0] / window + 1e-10)
    loud = level > level.max(dim=-1, keepdim=True).values + silence_db
    voiced = (best < voicing) & loud
    f0 = torch.where(voiced, sample_rate / tau, torch.zeros_like(tau))
    return f0, voiced
