"""Discriminators for adversarial training: multi-period (waveform) and multi-resolution STFT (spectrum).

Each sub-discriminator maps a waveform (B, 1, T) to (logits, features): logits (B, ...) of any shape, and
the list of its hidden activations for feature matching. `Discriminators` runs them all and returns one
list of (logits, features) per sub-discriminator. None of this is part of the exported codec.
"""
from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F
from torch.nn.utils.parametrizations import weight_norm

Output = tuple[torch.Tensor, list[torch.Tensor]]


def _widths(base: int, n: int, cap: int) -> list[int]:
    """Channel widths base, 2 base, 4 base, ... capped: the cost grows with depth only until the cap."""
    return [min(cap, base * 2 ** i) for i in range(n)]


class PeriodDiscriminator(nn.Module):
    """HiFi-GAN's period discriminator: the waveform folded to (T / p, p), 2-D convs along time only, so
    each of the p phases is judged on its own and periodic (pitch) structure stands out.

    wav (B, 1, T) -> logits (B, 1, T', p), features [(B, C, T_i, p)].
    """

    def __init__(self, period: int, channels: int = 16, max_channels: int = 256, layers: int = 4):
        super().__init__()
        self.period = period
        widths = _widths(channels, layers, max_channels)
        convs, c_in = [], 1
        for c in widths:
            convs.append(weight_norm(nn.Conv2d(c_in, c, (5, 1), stride=(3, 1), padding=(2, 0))))
            c_in = c
        convs.append(weight_norm(nn.Conv2d(c_in, c_in, (5, 1), padding=(2, 0))))
        self.convs = nn.ModuleList(convs)
        self.out = weight_norm(nn.Conv2d(c_in, 1, (3, 1), padding=(1, 0)))

    def forward(self, wav: torch.Tensor) -> Output:
        b, _, t = wav.shape
        x = F.pad(wav, (0, -t % self.period), mode="reflect" if t > self.period else "constant")
        x = x.reshape(b, 1, -1, self.period)
        features = []
        for conv in self.convs:
            x = F.leaky_relu(conv(x), 0.1)
            features.append(x)
        return self.out(x), features


class STFTDiscriminator(nn.Module):
    """A complex-spectrum discriminator at one resolution (as EnCodec's MS-STFT): real and imaginary parts
    as two channels, 2-D convs strided along frequency and dilated along time. Seeing phase, it penalizes
    the phase incoherence that magnitude losses let through.

    wav (B, 1, T) -> logits (B, 1, frames, bins'), features [(B, C, frames, bins_i)].
    """

    def __init__(self, n_fft: int, hop: int, channels: int = 16, layers: int = 3):
        super().__init__()
        self.n_fft, self.hop = n_fft, hop
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        # Constant width (as EnCodec's 32 filters): these convs run over every (frame, bin), so doubling the
        # width per layer, as the period discriminators do, made each resolution cost ~10x the codec's step.
        convs = [weight_norm(nn.Conv2d(2, channels, (3, 9), padding=(1, 4)))]
        for i in range(layers):
            d = 2 ** i  # time dilation 1, 2, 4: a wide temporal view at no extra cost
            convs.append(weight_norm(nn.Conv2d(channels, channels, (3, 9), stride=(1, 2), dilation=(d, 1),
                                               padding=(d, 4))))
        convs.append(weight_norm(nn.Conv2d(channels, channels, (3, 3), padding=(1, 1))))
        self.convs = nn.ModuleList(convs)
        self.out = weight_norm(nn.Conv2d(channels, 1, (3, 3), padding=(1, 1)))

    def forward(self, wav: torch.Tensor) -> Output:
        # The STFT in float32 even under autocast: bf16 spectra lose the quiet bins entirely.
        spec = torch.stft(wav[:, 0].float(), self.n_fft, self.hop, window=self.window, return_complex=True)
        x = torch.stack([spec.real, spec.imag], dim=1).transpose(2, 3)  # (B, 2, frames, bins)
        features = []
        for conv in self.convs:
            x = F.leaky_relu(conv(x), 0.1)
            features.append(x)
        return self.out(x), features


class Discriminators(nn.Module):
    """All sub-discriminators: periods (HiFi-GAN: primes, so no two share a fold) and STFT resolutions.

    wav (B, 1, T) -> [(logits, features)] in the order periods, then resolutions.
    """

    def __init__(self, periods=(2, 3, 5, 7, 11), resolutions=((2048, 512), (1024, 256), (512, 128)),
                 period_channels: int = 16, stft_channels: int = 16):
        super().__init__()
        self.periods = nn.ModuleList(PeriodDiscriminator(p, period_channels) for p in periods)
        self.resolutions = nn.ModuleList(STFTDiscriminator(n, h, stft_channels) for n, h in resolutions)

    @classmethod
    def from_recipe(cls, d: dict) -> "Discriminators":
        return cls(tuple(d["periods"]), tuple(tuple(r) for r in d["resolutions"]), d["period_channels"],
                   d["stft_channels"])

    def forward(self, wav: torch.Tensor) -> list[Output]:
        return [disc(wav) for disc in [*self.periods, *self.resolutions]]
