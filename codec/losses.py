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
