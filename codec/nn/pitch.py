"""Pitch as a coded signal: a causal YIN estimate per 10 ms, coded in two 10-bit slots per 80 ms frame.

`causal_yin` (de Cheveigne and Kawahara, 2002, batched in torch) estimates f0 per analysis hop from
windows that never reach past the end of their codec frame, so the encoder stays causal. `PitchCoder` fits
a quadratic in time to each frame's voiced log-f0 values and codes it: slot 0 the level (about 4 cents a
step; 0 = no voiced hop), slot 1 the slope and curvature on companded grids. Decoding evaluates the
quadratic at the centre of every synthesis window, so the decoder builds its harmonics from it.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

F0_MIN, F0_MAX = 50.0, 500.0  # Hz: the coded range, and YIN's search range


def _yin_core(frames: torch.Tensor, window: int, tau_min: int, tau_max: int, threshold: float
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """frames (..., window + tau_max), lags running forward from the window -> (lag in samples, dip depth)."""
    frames = frames - frames[..., :window].mean(dim=-1, keepdim=True)
    span = frames.shape[-1]
    # d(tau) = sum_j (x_j - x_{j+tau})^2 over the window: energies by cumulative sums, the cross term by FFT.
    size = 1 << (span + window - 1).bit_length()
    cross = torch.fft.irfft(torch.fft.rfft(frames, n=size) * torch.fft.rfft(frames[..., :window], n=size).conj(),
                            n=size)[..., :tau_max]
    sq = F.pad(frames.square().cumsum(dim=-1), (1, 0))
    taus = torch.arange(tau_max, device=frames.device)
    diff = (sq[..., window:window + 1] + sq[..., taus + window] - sq[..., taus] - 2 * cross).clamp_min(0.0)
    # Cumulative mean normalization: d'(tau) = d(tau) tau / sum_{j<=tau} d(j), d'(0) = 1.
    norm = torch.ones_like(diff)
    norm[..., 1:] = diff[..., 1:] * taus[1:] / diff[..., 1:].cumsum(dim=-1).clamp_min(1e-9)
    search = norm[..., tau_min:tau_max - 1]
    below = search < threshold
    # First dip below the threshold, walked down to its local minimum; the global minimum where none is.
    first = torch.where(below.any(dim=-1), below.float().argmax(dim=-1), search.argmin(dim=-1))
    lags = torch.arange(search.shape[-1], device=frames.device)
    local_min = F.pad(search[..., :-1] <= search[..., 1:], (0, 1), value=True)
    idx = (local_min & (lags >= first[..., None])).float().argmax(dim=-1)
    best = search.gather(-1, idx[..., None])[..., 0]
    # Parabolic refinement around the dip, clamped to half a lag.
    left = search.gather(-1, (idx - 1).clamp_min(0)[..., None])[..., 0]
    right = search.gather(-1, (idx + 1).clamp_max(search.shape[-1] - 1)[..., None])[..., 0]
    curvature = left - 2 * best + right
    shift = torch.where(curvature > 1e-9, 0.5 * (left - right) / curvature.clamp_min(1e-9), torch.zeros_like(best))
    return (idx + tau_min).float() + shift.clamp(-0.5, 0.5), best


def analysis_centres(hop: int, frame_size: int, window: int) -> torch.Tensor:
    """Sample offset, inside its codec frame, of the centre of each causal YIN window (hops_per_frame,).

    The window of hop i would be centred on the middle of the hop; where it would reach past the frame's
    end it is moved back to end there (the last hops of a frame are estimated a little early)."""
    centres = torch.arange(frame_size // hop) * hop + hop // 2
    return torch.minimum(centres + window // 2, torch.tensor(frame_size)) - window // 2


def causal_yin(wav: torch.Tensor, hop: int = 240, frame_size: int = 1920, sample_rate: int = 24000,
               window: int = 960, threshold: float = 0.15, voicing: float = 0.35, silence_db: float = -60.0,
               decimate: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """wav (B, 1, T), T a multiple of frame_size -> (f0 Hz (B, T // hop), voiced (B, T // hop) bool).

    Hop i's window ends at min(its centre + window / 2, the end of its codec frame) and its lags reach back
    into the past, so no estimate depends on a later frame. A hop is voiced when its best dip is below
    `voicing` and the window's level is above `silence_db` dBFS; unvoiced hops get f0 0. The search runs
    at sample_rate / decimate (pairs averaged: pitch lives far below the new Nyquist).
    """
    if wav.shape[-1] % frame_size:
        raise ValueError(f"{wav.shape[-1]} samples is not a multiple of the frame size {frame_size}")
    x = wav[:, 0].float()
    ends = analysis_centres(hop, frame_size, window) + window // 2  # (hops_per_frame,)
    frames_n = x.shape[-1] // frame_size
    ends = (torch.arange(frames_n)[:, None] * frame_size + ends).flatten()  # (H,) absolute
    if decimate > 1:
        x = x.reshape(x.shape[0], -1, decimate).mean(dim=-1)
        ends, window, sample_rate = ends // decimate, window // decimate, sample_rate / decimate
    tau_max = int(sample_rate / F0_MIN) + 1
    tau_min = max(2, int(sample_rate / F0_MAX))
    span = window + tau_max
    x = F.pad(x, (span, 0))  # zeros before the start: the same past a stream starts from
    idx = (ends + span)[:, None] - torch.arange(1, span + 1)  # each row runs backwards in time from its end
    frames = x[:, idx.to(x.device)]  # (B, H, span): window first, then the past it is compared with
    tau, best = _yin_core(frames, window, tau_min, tau_max, threshold)
    level = 10 * torch.log10(frames[..., :window].square().mean(dim=-1) + 1e-10)
    voiced = (best < voicing) & (level > silence_db)
    f0 = torch.where(voiced, sample_rate / tau, torch.zeros_like(tau))
    return f0, voiced


def _companded(levels: int, limit: float) -> torch.Tensor:
    """`levels` values in [-limit, limit], dense near 0 (a square law): small moves are the common ones."""
    u = torch.linspace(-1.0, 1.0, levels)
    return limit * u.sign() * u.square()


class PitchCoder:
    """Per-frame f0 contour <-> two codes in [0, 1024); stateless, so every frame codes and decodes alone.

    A frame's voiced log2-f0 values y_i at times t_i (frame-relative, -0.5 to 0.5) are fitted by
    a + b t + c (t^2 - 1/12) (least squares, a light ridge on b and c so one or two voiced hops give a
    flat contour). Slot 0: 1 + a on a uniform grid over [log2 F0_MIN, log2 F0_MAX] (1023 steps of 3.9
    cents), 0 when no hop is voiced. Slot 1: b on 64 and c on 16 companded levels, b * 16 + c.
    """

    SLOPE = _companded(64, 1.5)  # octaves per frame
    CURVE = _companded(16, 4.0)

    def __init__(self, hop: int = 240, frame_size: int = 1920, window: int = 960, sample_rate: int = 24000):
        self.hop, self.frame_size, self.window, self.sample_rate = hop, frame_size, window, sample_rate
        self.times = self._time(analysis_centres(hop, frame_size, window).float())
        self.low, self.high = math.log2(F0_MIN), math.log2(F0_MAX)

    def _time(self, offset: torch.Tensor) -> torch.Tensor:
        return offset / self.frame_size - 0.5

    def fit(self, f0: torch.Tensor, voiced: torch.Tensor) -> torch.Tensor:
        """f0, voiced (B, H), H = frames * hops_per_frame -> quadratic coefficients (B, F, 3); a = 0 unvoiced."""
        batch, hops = f0.shape
        per = self.frame_size // self.hop
        y = torch.log2(f0.clamp_min(1.0)).reshape(batch, -1, per).double()
        w = voiced.reshape(batch, -1, per).double()
        t = self.times.double().to(f0.device)
        basis = torch.stack([torch.ones_like(t), t, t.square() - 1 / 12], dim=-1)  # (per, 3)
        gram = torch.einsum("bfi,ij,ik->bfjk", w, basis, basis)
        gram = gram + torch.diag(torch.tensor([1e-6, 0.05, 0.05], dtype=torch.float64, device=f0.device))
        rhs = torch.einsum("bfi,ij,bfi->bfj", w, basis, y)
        coef = torch.linalg.solve(gram, rhs[..., None])[..., 0]
        return torch.where(w.sum(dim=-1, keepdim=True) > 0, coef, torch.zeros_like(coef)).float()

    def encode(self, f0: torch.Tensor, voiced: torch.Tensor) -> torch.Tensor:
        """f0, voiced (B, H) -> codes (B, 2, F), int64."""
        coef = self.fit(f0, voiced)
        a, b, c = coef.unbind(-1)
        has = voiced.reshape(*a.shape, -1).any(dim=-1)
        level = ((a - self.low) / (self.high - self.low) * 1022).round().clamp(0, 1022).long() + 1
        level = torch.where(has, level, torch.zeros_like(level))
        slope = (b[..., None] - self.SLOPE.to(b.device)).abs().argmin(dim=-1)
        curve = (c[..., None] - self.CURVE.to(c.device)).abs().argmin(dim=-1)
        shape = torch.where(has, slope * len(self.CURVE) + curve, torch.zeros_like(slope))
        return torch.stack([level, shape], dim=1)

    def decode(self, codes: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        """codes (B, 1 or 2, F) -> f0 Hz (B, F * len(offsets)) at the frame offsets given (samples); 0 where
        the frame had no voiced hop. With slot 0 alone the contour is flat."""
        level = codes[:, 0]
        a = self.low + (level.clamp_min(1) - 1).float() / 1022 * (self.high - self.low)
        t = self._time(offsets.float().to(codes.device))
        value = a[..., None].expand(*a.shape, len(t))
        if codes.shape[1] > 1:
            slope = self.SLOPE.to(codes.device)[codes[:, 1] // len(self.CURVE)]
            curve = self.CURVE.to(codes.device)[codes[:, 1] % len(self.CURVE)]
            value = value + slope[..., None] * t + curve[..., None] * (t.square() - 1 / 12)
        f0 = torch.exp2(value.clamp(self.low - 0.5, self.high + 0.5))
        return torch.where(level[..., None] > 0, f0, torch.zeros_like(f0)).flatten(1)

    def features(self, codebook_size: int, dim: int) -> torch.Tensor:
        """(2, codebook_size, dim): a sinusoidal feature of what each code says (slot 0: its log2 f0, code 0
        unvoiced; slot 1: its slope and curvature), for initializing a backbone's token embeddings."""
        half = dim // 2
        rates = torch.exp(torch.linspace(0.0, 6.0, half))  # periods from 2 pi down to ~1/60 of the range
        codes = torch.arange(codebook_size)
        level = (codes.clamp_min(1) - 1).float() / 1022 * (codes > 0)
        slope = self.SLOPE[(codes // len(self.CURVE)).clamp_max(len(self.SLOPE) - 1)] / self.SLOPE.max()
        curve = self.CURVE[codes % len(self.CURVE)] / self.CURVE.max()
        out = torch.zeros(2, codebook_size, dim)
        out[0, :, :half] = torch.sin(level[:, None] * rates)
        out[0, :, half: 2 * half] = torch.cos(level[:, None] * rates)
        out[0, 0] = 0.0  # unvoiced: no pitch
        quarter = half // 2
        out[1, :, :quarter] = torch.sin(slope[:, None] * rates[:quarter])
        out[1, :, quarter: half] = torch.cos(slope[:, None] * rates[:quarter])
        out[1, :, half: half + quarter] = torch.sin(curve[:, None] * rates[:quarter])
        out[1, :, half + quarter: 2 * half] = torch.cos(curve[:, None] * rates[:quarter])
        return out
