"""The harmonic head and its training target, on signals whose answer is known."""
import numpy as np
import pytest
import torch

from codec.modules import HarmonicHead
from codec.pitch import yin_f0

from conftest import speech_like


def hops_of(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(x[: len(x) // 240 * 240])[None, None]


@pytest.mark.parametrize("f0", [95.0, 140.0, 240.0])
def test_yin_follows_a_gliding_pitch(f0):
    # speech_like glides as f0 (1 + 0.1 sin(2 pi 0.7 t)); each hop's window is centred on the hop's middle
    est, voiced = yin_f0(hops_of(speech_like(2.0, f0=f0)))
    t = (np.arange(est.shape[1]) * 240 + 120) / 24000
    truth = f0 * (1 + 0.1 * np.sin(2 * np.pi * 0.7 * t))
    assert voiced.float().mean() > 0.95
    assert np.abs(est[0].numpy() - truth)[voiced[0].numpy()].max() < 0.01 * f0


def test_yin_calls_noise_and_silence_unvoiced():
    noise = 0.1 * np.random.default_rng(0).standard_normal(24000).astype(np.float32)
    _, voiced = yin_f0(hops_of(noise))
    assert voiced.float().mean() < 0.05
    quiet = np.concatenate([speech_like(0.5), np.zeros(12000, np.float32)])
    f0, voiced = yin_f0(hops_of(quiet))
    assert not voiced[0, 55:].any() and (f0[0, 55:] == 0).all()  # the silent half (hops 50 on)


def _driven(head: HarmonicHead, f0: float, amps: dict, hops: int) -> np.ndarray:
    """Set the head's output layer so that every hop asks for `f0` and harmonic k at amplitude amps[k]."""
    low, high = head.F0_RANGE
    with torch.no_grad():
        head.proj.weight.zero_()
        head.proj.bias.fill_(-40.0)  # exp(-40): silent
        head.proj.bias[0] = float(np.log(np.log(f0 / low) / np.log(high / low) / (1 - np.log(f0 / low) / np.log(high / low))))
        for k, a in amps.items():
            head.proj.bias[k] = float(np.log(a))
        return head(torch.zeros(1, 4, hops))[0].double().numpy()


def test_harmonic_head_synthesizes_the_harmonics_it_is_asked_for():
    head = HarmonicHead(4, 8, 240, 24000)
    y = _driven(head, 180.0, {1: 0.3, 3: 0.1}, hops=50)
    phase = 2 * np.pi * 180.0 * np.arange(1, len(y) + 1) / 24000  # the running sum starts at the first sample
    expected = 0.3 * np.sin(phase) + 0.1 * np.sin(3 * phase)
    np.testing.assert_allclose(y, expected, atol=2e-4)


def test_harmonic_head_never_aliases():
    head = HarmonicHead(4, 40, 240, 24000)
    y = _driven(head, 700.0, {k: 0.05 for k in range(1, 41)}, hops=100)  # 40 x 700 Hz would reach 28 kHz
    spectrum = np.abs(np.fft.rfft(y)) ** 2
    freqs = np.fft.rfftfreq(len(y), 1 / 24000)
    assert spectrum[freqs > 11500].sum() < 1e-6 * spectrum.sum()
    assert spectrum[(freqs > 10400) & (freqs < 11000)].sum() > 0.01 * spectrum.sum()  # 15 x 700 Hz is kept
