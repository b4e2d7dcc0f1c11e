"""An adversarial critic of log STFT magnitudes, for training only.

The regression terms (codec.train.losses) are minimized by the average of what a latent could mean: where
the decoder is unsure of a formant's height or an onset's place it smooths them. A discriminator that tells
real magnitudes from decoded ones penalizes that smoothness. It sees what the decoder makes (log magnitudes
in the synthesis framing), so no waveform is synthesized in a training step, and its 2-D convolutions over
(hop, bin) are far cheaper than the waveform discriminators of codecs that train on audio.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

LOG_FLOOR = -11.5  # log(1e-5): quieter bins are all alike to the critic, as to the regression terms
LOW_BAND_HZ = 2000.0  # the second stack sees only the bins below this, where the voice's harmonics are resolved


def _stack(channels: int) -> nn.ModuleList:
    """2-D convolutions over (hop, bin): bins subsampled by 2 in each of the first three layers, hops kept
    (onsets are short); 9 bins wide first (450 Hz: two harmonics of most voices), then 5 and 3."""
    def conv(cin: int, cout: int, kernel: tuple, stride: tuple = (1, 1)) -> nn.Module:
        return weight_norm(nn.Conv2d(cin, cout, kernel, stride, padding=(kernel[0] // 2, kernel[1] // 2)))

    return nn.ModuleList([conv(1, channels, (3, 9), (1, 2)), conv(channels, channels, (3, 5), (1, 2)),
                          conv(channels, channels, (3, 5), (1, 2)), conv(channels, channels, (3, 3)),
                          conv(channels, 1, (3, 3))])


class SpectrogramDiscriminator(nn.Module):
    """log magnitudes (B, H, bins) -> per stack, its feature maps with the logits (B, 1, H, bins') last.

    Two stacks: the whole band, and the bins below 2 kHz, where `codec diagnose head` finds the decoded
    envelope's error most heard."""

    def __init__(self, n_fft: int, sample_rate: int, channels: int = 16):
        super().__init__()
        self.low_bins = int(LOW_BAND_HZ * n_fft / sample_rate) + 1
        self.stacks = nn.ModuleList([_stack(channels), _stack(channels)])

    def forward(self, log_mag: torch.Tensor) -> list[list[torch.Tensor]]:
        x = (log_mag.float().clamp_min(LOG_FLOOR) - LOG_FLOOR)[:, None] / 5.0  # (B, 1, H, bins), about 0..3
        outs = []
        for stack, view in zip(self.stacks, (x, x[..., : self.low_bins])):
            features = []
            for i, layer in enumerate(stack):
                view = layer(view)
                if i < len(stack) - 1:
                    view = nn.functional.leaky_relu(view, 0.1)
                features.append(view)
            outs.append(features)
        return outs


def discriminator_loss(real: list[list[torch.Tensor]], fake: list[list[torch.Tensor]]) -> torch.Tensor:
    """Least squares (LSGAN): real logits towards 1, decoded ones towards 0, summed over the stacks."""
    return sum(((r[-1] - 1).square().mean() + f[-1].square().mean()) for r, f in zip(real, fake))


def generator_losses(real: list[list[torch.Tensor]], fake: list[list[torch.Tensor]]
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """(adversarial, feature matching): decoded logits towards 1, and L1 between the critic's feature maps
    of the decoded and the real magnitudes, each map's relative to the real one's mean size."""
    adversarial = sum((f[-1] - 1).square().mean() for f in fake)
    features = sum(((fm - rm.detach()).abs().mean() / rm.detach().abs().mean().clamp_min(1e-5))
                   for r, f in zip(real, fake) for rm, fm in zip(r[:-1], f[:-1]))
    count = sum(len(r) - 1 for r in real)
    return adversarial, features / count
