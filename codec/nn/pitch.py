"""Pitch as a coded signal: a causal YIN estimate per 10 ms, coded in two 10-bit slots per 80 ms frame.

`causal_yin` (de Cheveigne and Kawahara, 2002, batched in torch) estimates f0 per analysis hop from
windows that never reach past the end of their codec frame, so the encoder stays causal. `PitchCoder` codes
each frame's voiced log-f0 values: slot 0 their mean (about 4 cents a step; 0 = no voiced hop), slot 1
their shape, the nearest of 1024 contours fitted to training speech. Decoding interpolates the contour to
the centre of every synthesis window, so the decoder builds its harmonics from it.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from scipy.fft import next_fast_len
from torch import nn

F0_MIN, F0_MAX = 50.0, 500.0  # Hz: the coded range, and YIN's search range


def difference_function(frames: torch.Tensor, window: int, tau_max: int) -> torch.Tensor:
    """YIN's d(tau) = sum_{j < window} (x_j - x_{j+tau})^2 for tau < tau_max: frames (..., span), span >=
    window + tau_max - 1 -> (..., tau_max). Energies by cumulative sums, the cross term by FFT: the lags
    reach index window + tau_max - 2 < span at most, so a circular correlation of length `span` (rounded up
    to a fast FFT size) has no wrap-around in them."""
    size = next_fast_len(frames.shape[-1], real=True)
    cross = torch.fft.irfft(torch.fft.rfft(frames, n=size) * torch.fft.rfft(frames[..., :window], n=size).conj(),
                            n=size)[..., :tau_max]
    sq = F.pad(frames.square().cumsum(dim=-1), (1, 0))
    taus = torch.arange(tau_max, device=frames.device)
    return (sq[..., window:window + 1] + sq[..., taus + window] - sq[..., taus] - 2 * cross).clamp_min(0.0)


def _yin_core(frames: torch.Tensor, window: int, tau_min: int, tau_max: int, threshold: float
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """frames (..., window + tau_max), lags running forward from the window -> (lag in samples, dip depth)."""
    frames = frames - frames[..., :window].mean(dim=-1, keepdim=True)
    diff = difference_function(frames, window, tau_max)
    taus = torch.arange(tau_max, device=frames.device)
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


SHAPES = 1024  # slot 1: a codebook of contour shapes (10 bits)
SHAPE_SEARCH_FRAMES = 512  # frames searched at once: bounds the (frames x shapes) distances' memory


def fit_shapes(offsets: torch.Tensor, voiced: torch.Tensor, size: int = SHAPES, iterations: int = 20, seed: int = 0,
               chunk: int = 16384) -> torch.Tensor:
    """k-means under a mask: offsets, voiced (N, W) -> (size, W) centroids that minimize, over the N rows,
    sum_i voiced_i (offset_i - centroid_i)^2 to each row's nearest centroid. A row's unvoiced entries neither
    choose its centroid nor move it. Seeded by k-means++; empty clusters restart at the worst-fitted rows."""
    gen = torch.Generator().manual_seed(seed)
    voiced = voiced.bool()
    w = voiced.float()
    d = torch.where(voiced, offsets.float(), torch.zeros_like(w))

    def cost_to(c: torch.Tensor) -> torch.Tensor:  # each row's masked squared distance to one centroid
        return (w * (d - c).square()).sum(dim=-1)

    # k-means++: each next seed a row drawn in proportion to its distance to the nearest seed so far
    centroids = d[torch.randint(len(d), (size,), generator=gen)].clone()
    best = cost_to(centroids[0])
    for k in range(1, size):
        if float(best.sum()) <= 0:  # every row already has an exact seed: the rest stay random rows
            break
        centroids[k] = d[torch.multinomial(best / best.sum(), 1, generator=gen)[0]]
        best = torch.minimum(best, cost_to(centroids[k]))

    def nearest(c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        picks, costs = [], []
        for i in range(0, len(d), chunk):
            dist = w[i: i + chunk] @ c.square().T - 2 * d[i: i + chunk] @ c.T  # + sum w d^2, the same for all
            cost, pick = dist.min(dim=-1)
            picks.append(pick)
            costs.append(cost + (w[i: i + chunk] * d[i: i + chunk].square()).sum(dim=-1))
        return torch.cat(picks), torch.cat(costs)

    for _ in range(iterations):
        pick, cost = nearest(centroids)
        total = torch.zeros_like(centroids).index_add_(0, pick, d)
        weight = torch.zeros_like(centroids).index_add_(0, pick, w)
        centroids = torch.where(weight > 0, total / weight.clamp_min(1e-9), centroids)
        empty = torch.nonzero(weight.sum(dim=-1) == 0)[:, 0][: len(d)]
        if len(empty):
            centroids[empty] = d[cost.topk(len(empty)).indices]
    return centroids


class PitchCoder(nn.Module):
    """Per-frame f0 contour <-> two codes in [0, 1024); stateless, so every frame codes and decodes alone.

    A frame has W distinct estimation windows (`analysis_centres`: the last hops of a frame share one). Slot 0
    codes the mean a of the frame's voiced log2 f0 values on a uniform grid over [log2 F0_MIN, log2 F0_MAX]
    (1 + a's step: 1022 steps of 3.9 cents; 0 when no window is voiced). Slot 1 codes the contour's shape:
    the nearest, over the voiced windows, of `shapes` (1024 x W log2-f0 offsets from a, fitted to training
    speech by k-means: `fit`). Decoding gives a + shape at each window's centre, linear between centres and
    held before the first and after the last; with slot 0 alone the contour is flat. Per-window offsets
    follow what a low-order curve per frame cannot: a syllable that ends and another that starts in one
    frame, a fall steeper than a frame's quadratic.
    """

    def __init__(self, hop: int = 240, frame_size: int = 1920, window: int = 960, sample_rate: int = 24000,
                 shapes: int = SHAPES):
        super().__init__()
        self.hop, self.frame_size, self.window, self.sample_rate = hop, frame_size, window, sample_rate
        centres = analysis_centres(hop, frame_size, window)
        distinct = torch.unique(centres)
        # the first hop estimated from each distinct window: its estimate stands for the window
        self.register_buffer("first_hop", torch.searchsorted(centres, distinct), persistent=False)
        self.register_buffer("centres", distinct.float(), persistent=False)
        self.register_buffer("shapes", torch.zeros(shapes, len(distinct)))  # zeros until fitted: flat contours
        self.low, self.high = math.log2(F0_MIN), math.log2(F0_MAX)

    @property
    def fitted(self) -> bool:
        return bool(self.shapes.any())

    def windows(self, f0: torch.Tensor, voiced: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """f0, voiced (B, H), H = frames * hops_per_frame -> log2 f0 and voicing of each frame's distinct
        windows (B, F, W)."""
        per = self.frame_size // self.hop
        y = torch.log2(f0.clamp_min(1.0)).reshape(f0.shape[0], -1, per)[..., self.first_hop]
        return y, voiced.reshape(f0.shape[0], -1, per)[..., self.first_hop]

    @staticmethod
    def _voiced_mean(y: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """(..., W) log2 f0 and voicing -> (..., 1) float64: the mean over the voiced windows (0 if none)."""
        w = v.double()
        return (y.double() * w).sum(dim=-1, keepdim=True) / w.sum(dim=-1, keepdim=True).clamp_min(1.0)

    def _level(self, code: torch.Tensor) -> torch.Tensor:
        return self.low + (code.clamp_min(1) - 1).float() / 1022 * (self.high - self.low)

    def encode(self, f0: torch.Tensor, voiced: torch.Tensor) -> torch.Tensor:
        """f0, voiced (B, H) -> codes (B, 2, F), int64."""
        y, v = self.windows(f0, voiced)
        y, w = y.double(), v.double()
        has = v.any(dim=-1)
        mean = self._voiced_mean(y, v)[..., 0]
        level = ((mean - self.low) / (self.high - self.low) * 1022).round().clamp(0, 1022).long() + 1
        level = torch.where(has, level, torch.zeros_like(level))
        offsets = y - self._level(level).double()[..., None]  # from the level as decoded
        shape = torch.cat([self._nearest_shape(offsets[:, i: i + SHAPE_SEARCH_FRAMES], w[:, i: i + SHAPE_SEARCH_FRAMES])
                           for i in range(0, max(offsets.shape[1], 1), SHAPE_SEARCH_FRAMES)], dim=1)
        return torch.stack([level, torch.where(has, shape, torch.zeros_like(shape))], dim=1)

    def _nearest_shape(self, offsets: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """(B, F, W) float64 -> (B, F): the shape nearest over the voiced windows. Elementwise sums in
        float64, no matrix product: a frame gets the same code whether coded alone, in a chunk or in a whole
        file (a matrix product's rounding depends on its size and can flip a near tie)."""
        shapes = self.shapes.to(offsets.device).double()
        dist = offsets.new_zeros(*offsets.shape[:-1], len(shapes))
        for j in range(shapes.shape[-1]):
            dist += w[..., j, None] * (offsets[..., j, None] - shapes[:, j]).square()
        return dist.argmin(dim=-1)

    def decode(self, codes: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        """codes (B, 1 or 2, F) -> f0 Hz (B, F * len(offsets)) at the frame offsets given (samples); 0 where
        the frame had no voiced window."""
        level = codes[:, 0]
        # float64, rounded to float32 at the end: a frame then decodes to the same bits alone (streaming)
        # as among many (offline), whichever vectorized or scalar kernels its size meets.
        shape = self.shapes[codes[:, 1]].double() if codes.shape[1] > 1 else 0.0
        value = (self._level(level).double()[..., None] + shape).expand(*level.shape, len(self.centres))
        return self.contour(value, level > 0, offsets)

    def uncoded(self, f0: torch.Tensor, voiced: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        """The estimate itself as decode would give it, with no coding: f0, voiced (B, H) -> f0 Hz at the
        offsets (B, F * len(offsets)); a frame's unvoiced windows take its voiced windows' mean."""
        y, v = self.windows(f0, voiced)
        return self.contour(torch.where(v, y.double(), self._voiced_mean(y, v)), v.any(dim=-1), offsets)

    def contour(self, value: torch.Tensor, has: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        """log2 f0 at the window centres (B, F, W), float64, and frame voicing (B, F) -> f0 Hz at the offsets
        (B, F * len(offsets)): linear between the centres, held flat outside them, 0 in unvoiced frames."""
        centres, offsets = self.centres.double(), offsets.double().to(value.device)
        right = torch.searchsorted(centres, offsets).clamp(1, len(centres) - 1)
        left = right - 1
        frac = ((offsets - centres[left]) / (centres[right] - centres[left])).clamp(0.0, 1.0)
        value = value[..., left] * (1.0 - frac) + value[..., right] * frac
        f0 = torch.exp2(value.clamp(self.low - 0.5, self.high + 0.5)).float()
        return torch.where(has[..., None], f0, torch.zeros_like(f0)).flatten(1)

    @torch.no_grad()
    def fit(self, f0: torch.Tensor, voiced: torch.Tensor, iterations: int = 20, seed: int = 0) -> int:
        """Fit `shapes` to the contours of f0, voiced (B, H) (training speech): k-means over the voiced
        frames' offsets from their mean. Returns the number of voiced frames fitted on."""
        y, v = self.windows(f0, voiced)
        y, v = y.reshape(-1, y.shape[-1]), v.reshape(-1, v.shape[-1])
        keep = v.any(dim=-1)
        y, v = y[keep], v[keep]
        offsets = y - self._voiced_mean(y, v).float()
        self.shapes.copy_(fit_shapes(offsets, v, len(self.shapes), iterations, seed))
        return len(y)

    def features(self, codebook_size: int, dim: int) -> torch.Tensor:
        """(2, codebook_size, dim): a sinusoidal feature of what each code says (slot 0: its log2 f0, code 0
        unvoiced; slot 1: its shape's offsets), for initializing a backbone's token embeddings."""
        half = dim // 2
        rates = torch.exp(torch.linspace(0.0, 6.0, half))  # periods from 2 pi down to ~1/60 of the range
        codes = torch.arange(codebook_size)
        level = (codes.clamp_min(1) - 1).float() / 1022 * (codes > 0)
        out = torch.zeros(2, codebook_size, dim)
        out[0, :, :half] = torch.sin(level[:, None] * rates)
        out[0, :, half: 2 * half] = torch.cos(level[:, None] * rates)
        out[0, 0] = 0.0  # unvoiced: no pitch
        shapes = self.shapes.cpu()[codes.clamp_max(len(self.shapes) - 1)]  # (codebook_size, W), octaves
        per = half // shapes.shape[-1]  # rates per offset: from 1 to 55 radians an octave
        angles = (shapes[..., None] * torch.exp(torch.linspace(0.0, 4.0, per))).flatten(1)
        out[1, :, : angles.shape[-1]] = torch.sin(angles)
        out[1, :, half: half + angles.shape[-1]] = torch.cos(angles)
        return out
