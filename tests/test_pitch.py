"""Pitch as coded: the causal estimator, the two code slots, the harmonic comb built from it."""
import numpy as np
import pytest
import torch

from codec.nn.networks import SourceFilterHead
from codec.nn.pitch import PitchCoder, causal_yin

from conftest import speech_like


def frames_of(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(x[: len(x) // 1920 * 1920])[None, None]


def glide(f0: float, t: np.ndarray) -> np.ndarray:
    return f0 * (1 + 0.1 * np.sin(2 * np.pi * 0.7 * t))  # speech_like's pitch


@pytest.mark.parametrize("f0", [95.0, 140.0, 240.0])
def test_causal_yin_follows_a_gliding_pitch(f0):
    est, voiced = causal_yin(frames_of(speech_like(2.0, f0=f0)))
    # each window is centred on its hop's middle unless that would reach past the frame's end
    from codec.nn.pitch import analysis_centres

    offsets = analysis_centres(240, 1920, 960).numpy()
    t = ((np.arange(est.shape[1]) // 8) * 1920 + offsets[np.arange(est.shape[1]) % 8]) / 24000
    assert voiced[0, 4:].float().mean() > 0.95  # the first hops look back into the silence before the start
    err = np.abs(est[0].numpy() - glide(f0, t))[voiced[0].numpy()]
    assert np.median(err) < 0.005 * f0 and err.max() < 0.02 * f0


def test_causal_yin_never_looks_past_the_frame():
    x = frames_of(speech_like(1.0))
    later = x.clone()
    later[..., 5 * 1920:] = torch.randn_like(later[..., 5 * 1920:])
    a, _ = causal_yin(x)
    b, _ = causal_yin(later)
    assert torch.equal(a[:, : 5 * 8], b[:, : 5 * 8]) and not torch.equal(a, b)


def test_causal_yin_calls_noise_and_silence_unvoiced():
    noise = 0.1 * np.random.default_rng(0).standard_normal(24000).astype(np.float32)
    _, voiced = causal_yin(frames_of(noise))
    assert voiced.float().mean() < 0.05
    quiet = np.concatenate([speech_like(0.48), np.zeros(13440, np.float32)])
    f0, voiced = causal_yin(frames_of(quiet))
    assert not voiced[0, 56:].any() and (f0[0, 56:] == 0).all()  # frames 7 on hold only silence


def test_pitch_codes_round_trip_within_cents():
    coder = PitchCoder()
    x = frames_of(speech_like(3.0, f0=120.0))
    f0, voiced = causal_yin(x)
    codes = coder.encode(f0, voiced)
    assert codes.shape == (1, 2, x.shape[-1] // 1920)
    assert int(codes.min()) >= 0 and int(codes.max()) < 1024
    decoded = coder.decode(codes, torch.from_numpy(np.arange(8) * 240 + 120))  # the analysis hops' centres
    cents = 1200 * np.abs(np.log2(decoded[0].numpy() / np.maximum(f0[0].numpy(), 1.0)))
    v = voiced[0].numpy()
    assert np.median(cents[v]) < 10 and np.percentile(cents[v], 95) < 40
    flat = coder.decode(codes[:, :1], torch.arange(8) * 240 + 120)  # slot 0 alone: the frame's level
    assert (flat.reshape(-1, 8).std(dim=1) == 0).all()


def test_unvoiced_frames_code_zero_and_decode_unvoiced():
    coder = PitchCoder()
    f0 = torch.zeros(1, 16)
    f0[0, 8:] = 200.0
    codes = coder.encode(f0, f0 > 0)
    assert codes[0, :, 0].tolist() == [0, 0] and codes[0, 0, 1] > 0
    out = coder.decode(codes, torch.arange(8) * 240 + 120)
    assert (out[0, :8] == 0).all() and torch.allclose(out[0, 8:], torch.full((8,), 200.0), rtol=0.003)


def test_comb_peaks_at_the_harmonics_and_is_silent_when_unvoiced():
    head = SourceFilterHead(8, 1, 480, 24000, 16, 4)
    f0 = torch.tensor([[200.0, 0.0]])
    comb = head.comb(f0)[0]
    bins = np.arange(241) * 50.0
    peaks = [k for k in range(1, 240) if comb[0, k] > comb[0, k - 1] and comb[0, k] >= comb[0, k + 1]]
    assert [int(bins[k]) for k in peaks[:5]] == [200, 400, 600, 800, 1000]
    assert float(comb[0, 4]) == pytest.approx(1.0, abs=1e-5) and float(comb[0, 6]) < 0.1  # 200 Hz vs 300 Hz
    assert not (bins[peaks] > 0.95 * 12000).any()  # no harmonic above 0.95 x Nyquist
    assert (comb[1] == 0).all()
