"""The harmonic comb of the source-filter head: at each STFT bin, the hann window's spectrum at the
harmonics of f0 nearest to it, 1 at a harmonic's peak.

`comb_reference` is the definition, in torch, on any device. `comb` computes the same on the CPU with a
compiled loop: the reference makes some twenty passes over (hops, bins, 3 harmonics), which cost as much
as the encoder in a training step. The loop uses that at bin k, harmonic m (r = f0 in bins),
sin(pi (k - m r)) = +-sin(pi m r): one sine per harmonic of the hop, not one per bin and harmonic. It
computes in float64 and agrees with the reference in float64 to 1e-6, except that a harmonic exactly at
the comb's upper limit may fall either side of it.
"""
from __future__ import annotations

import numpy as np
import torch

from .phase import HARMONIC_LIMIT, compiled

LOBES = 1  # harmonics on each side of the nearest that reach a bin: past them only sidelobes (-31 dB)
NEAR_ONE = 1e-4  # |x| this close to 1 takes the lobe's limit there, 1/2 (0/0 in the formula)


def hann_lobe(x: torch.Tensor) -> torch.Tensor:
    """The hann window's spectrum at x bins from its centre, 1 at 0: sinc(x) / (1 - x^2)."""
    near_one = (x.abs() - 1.0).abs() < NEAR_ONE
    safe = torch.where(near_one, torch.full_like(x, 0.5), x)
    return torch.where(near_one, torch.full_like(x, 0.5), torch.sinc(safe) / (1.0 - safe.square()))


def comb_reference(f0: torch.Tensor, n_fft: int, sample_rate: int) -> torch.Tensor:
    """f0 (B, H) Hz, 0 = unvoiced -> (B, H, n_fft // 2 + 1): the power sum of the nearest harmonics' lobes,
    rooted; 0 in unvoiced hops (computed for the voiced hops only: pauses cost nothing). In f0's dtype."""
    freqs = torch.arange(n_fft // 2 + 1, device=f0.device, dtype=f0.dtype) * (sample_rate / n_fft)
    comb = f0.new_zeros(*f0.shape, len(freqs))
    voiced = f0 > 0
    if voiced.any():
        bin_hz = sample_rate / n_fft
        f = f0[voiced][:, None, None]  # (V, 1, 1)
        nearest = torch.round(freqs[:, None] / f)  # (V, K, 1)
        numbers = nearest + torch.arange(-LOBES, LOBES + 1, device=f0.device)  # (V, K, 2L + 1)
        audible = (numbers >= 1) & (numbers * f < HARMONIC_LIMIT * sample_rate / 2)
        lobe = hann_lobe((freqs[:, None] - numbers * f) / bin_hz) * audible
        comb[voiced] = lobe.square().sum(dim=-1).sqrt()
    return comb


@compiled
def _comb(f0: np.ndarray, bin_hz: float, limit_hz: float, out: np.ndarray) -> None:
    """out (N, K) = comb_reference of f0 (N,); rows of unvoiced hops are left as they are (zeros)."""
    n_bins = out.shape[1]
    for v in range(f0.shape[0]):
        f = np.float64(f0[v])
        if f <= 0.0:
            continue
        r = f / bin_hz  # the harmonic spacing in bins
        top = min(int(np.ceil(limit_hz / f)), int((n_bins - 1) / r + 0.5) + LOBES + 1)  # past the last audible
        sines = np.empty(top + 1)
        for m in range(top + 1):
            t = m * r  # reduced to (-1/2, 1/2]: a small x = k - t then keeps its relative precision
            sines[m] = np.sin(np.pi * (t - np.rint(t))) ** 2
        for k in range(n_bins):
            nearest = int(np.rint(k * bin_hz / f))
            total = 0.0
            for m in range(max(nearest - LOBES, 1), nearest + LOBES + 1):
                if m * f >= limit_hz:
                    break
                x = k - m * r
                if abs(abs(x) - 1.0) < NEAR_ONE:
                    total += 0.25
                elif x == 0.0:
                    total += 1.0
                else:
                    denominator = np.pi * x * (1.0 - x * x)
                    total += sines[m] / (denominator * denominator)
            out[v, k] = np.sqrt(total)


def comb(f0: torch.Tensor, n_fft: int, sample_rate: int) -> torch.Tensor:
    """comb_reference, compiled where f0 is on the CPU; float32."""
    if f0.device.type != "cpu":
        return comb_reference(f0.float(), n_fft, sample_rate)
    f0_np = np.ascontiguousarray(f0.detach().float().reshape(-1).numpy())
    out = np.zeros((f0_np.shape[0], n_fft // 2 + 1), dtype=np.float32)
    if f0_np.shape[0]:
        _comb(f0_np, sample_rate / n_fft, HARMONIC_LIMIT * sample_rate / 2, out)
    return torch.from_numpy(out).reshape(*f0.shape, n_fft // 2 + 1)
