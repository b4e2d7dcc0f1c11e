"""Reconstruction losses on (B, 1, T) waveforms."""
from __future__ import annotations

import librosa
import torch
from torch import nn

# (n_fft, hop, mel bands): short windows catch onsets, long ones harmonics.
MEL_SCALES = ((256, 64, 32), (512, 128, 64), (1024, 256, 80), (2048, 512, 128))


class MultiScaleMelLoss(nn.Module):
    """Mean over scales of L1 between log10 mel magnitudes (DAC's formulation, fewer scales)."""

    def __init__(self, sample_rate: int = 24000, scales=MEL_SCALES):
        super().__init__()
        self.scales = tuple(scales)
        for i, (n_fft, _, n_mels) in enumerate(self.scales):
            fb = librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels, fmin=0.0, fmax=sample_rate / 2)
            self.register_buffer(f"fb{i}", torch.from_numpy(fb).float(), persistent=False)
            self.register_buffer(f"win{i}", torch.hann_window(n_fft), persistent=False)

    def log_mel(self, wav: torch.Tensor, i: int) -> torch.Tensor:
        n_fft, hop, _ = self.scales[i]
        spec = torch.stft(wav.reshape(-1, wav.shape[-1]).float(), n_fft, hop, window=getattr(self, f"win{i}"),
                          return_complex=True).abs()
        mel = getattr(self, f"fb{i}") @ spec
        return torch.log10(mel.clamp_min(1e-5))  # 1e-5 floor: -100 dB, below any speech we care about

    def forward(self, estimate: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        total = estimate.new_zeros((), dtype=torch.float32)
        for i in range(len(self.scales)):
            total = total + (self.log_mel(estimate, i) - self.log_mel(target, i)).abs().mean()
        return total / len(self.scales)


class MagnitudeLoss(nn.Module):
    """Decoded log magnitudes against a reference STFT in the same framing: (B, H, K) each -> three terms.

    - "log": L1 between natural-log magnitudes, every bin alike (also the quiet high band);
    - "convergence": spectral convergence ||S - S_hat||_F / ||S||_F per item, then averaged: the loud
      bins (formants, harmonics), and a silent item cannot dominate through a tiny norm;
    - "mel": L1 between log10 mel energies (80 bands), the perceptual weighting of the mel loss.
    """

    def __init__(self, n_fft: int, sample_rate: int, n_mels: int = 80, floor: float = 1e-4):
        super().__init__()
        fb = librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels, fmin=0.0, fmax=sample_rate / 2)
        self.register_buffer("fb", torch.from_numpy(fb).float().T.contiguous(), persistent=False)  # (K, mels)
        self.floor = floor  # -80 dB under a loud harmonic: below it, error is inaudible and log error explodes

    def forward(self, log_mag: torch.Tensor, target: torch.Tensor) -> dict:
        mag = torch.exp(log_mag.clamp(max=12.0))
        log_term = (torch.log(mag + self.floor) - torch.log(target + self.floor)).abs().mean()
        diff = torch.linalg.vector_norm(target - mag, dim=(1, 2))
        convergence = (diff / torch.linalg.vector_norm(target, dim=(1, 2)).clamp_min(1e-3)).mean()
        mel = (torch.log10(mag @ self.fb + 1e-5) - torch.log10(target @ self.fb + 1e-5)).abs().mean()
        return {"log": log_term, "convergence": convergence, "mel": mel}
