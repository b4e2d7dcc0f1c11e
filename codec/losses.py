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


# (n_fft, hop): the Parallel WaveGAN resolutions, scaled to 24 kHz.
STFT_SCALES = ((512, 128), (1024, 256), (2048, 512))


class MultiResolutionSTFTLoss(nn.Module):
    """Spectral convergence plus log-magnitude L1, averaged over resolutions (Parallel WaveGAN).

    Spectral convergence ||S - S_hat||_F / ||S||_F weighs the loud bins (formants, harmonics); the log
    term weighs every bin alike, so it also sees the quiet high band that mel bands merge.
    estimate, target (B, 1, T) -> scalar.
    """

    def __init__(self, scales=STFT_SCALES):
        super().__init__()
        self.scales = tuple(scales)
        for i, (n_fft, _) in enumerate(self.scales):
            self.register_buffer(f"win{i}", torch.hann_window(n_fft), persistent=False)

    def magnitude(self, wav: torch.Tensor, i: int) -> torch.Tensor:
        n_fft, hop = self.scales[i]
        spec = torch.stft(wav.reshape(-1, wav.shape[-1]).float(), n_fft, hop, window=getattr(self, f"win{i}"),
                          return_complex=True)
        # 1e-7 inside the root: the gradient of |X| at X = 0 is NaN otherwise.
        return (spec.real.square() + spec.imag.square() + 1e-7).sqrt()

    def forward(self, estimate: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        total = estimate.new_zeros((), dtype=torch.float32)
        for i in range(len(self.scales)):
            est, ref = self.magnitude(estimate, i), self.magnitude(target, i)
            # Per item, then averaged: a silent crop in the batch cannot dominate through a tiny norm.
            sc = torch.linalg.vector_norm(ref - est, dim=(1, 2)) / torch.linalg.vector_norm(ref, dim=(1, 2)).clamp_min(1e-3)
            log_mag = (ref.log() - est.log()).abs().mean()
            total = total + sc.mean() + log_mag
        return total / len(self.scales)


# Adversarial terms (least-squares GAN, as HiFi-GAN and DAC): real -> 1, fake -> 0. Each takes the list
# of (logits, features) the discriminators return and averages over sub-discriminators, so the weights
# in the recipe do not depend on how many there are.

def discriminator_loss(real: list, fake: list) -> torch.Tensor:
    """mean over sub-discriminators of E[(1 - D(x))^2] + E[D(G(z))^2]."""
    terms = [(1 - r.float()).square().mean() + f.float().square().mean() for (r, _), (f, _) in zip(real, fake)]
    return torch.stack(terms).mean()


def generator_loss(fake: list) -> torch.Tensor:
    """mean over sub-discriminators of E[(1 - D(G(z)))^2]."""
    return torch.stack([(1 - f.float()).square().mean() for f, _ in fake]).mean()


def feature_matching_loss(real: list, fake: list) -> torch.Tensor:
    """mean over sub-discriminators and their layers of L1 between the hidden activations on the real
    and the decoded audio (real side detached: it is a target, the discriminator does not learn here)."""
    terms = [(fr.detach().float() - ff.float()).abs().mean()
             for (_, feats_r), (_, feats_f) in zip(real, fake) for fr, ff in zip(feats_r, feats_f)]
    return torch.stack(terms).mean()
