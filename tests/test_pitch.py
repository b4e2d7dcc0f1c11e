"""Pitch as coded: the causal estimator, the two code slots, the harmonic comb built from it."""
import math

import numpy as np
import pytest
import torch

from codec.nn.comb import comb, comb_reference
from codec.nn.networks import SourceFilterHead
from codec.nn.pitch import PitchCoder, analysis_centres, causal_yin, difference_function, fit_shapes

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


def test_difference_function_is_its_defining_sum():
    window, tau_max = 480, 241  # causal_yin's at 12 kHz: frames of 721 samples, an FFT of 729
    frames = torch.randn(3, window + tau_max, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    direct = torch.stack([(frames[:, :window] - frames[:, tau:tau + window]).square().sum(dim=-1)
                          for tau in range(tau_max)], dim=-1)
    torch.testing.assert_close(difference_function(frames, window, tau_max), direct, rtol=1e-9, atol=1e-9)


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


def fitted_coder(f0s=(90.0, 150.0, 200.0, 260.0)) -> PitchCoder:
    """A coder whose shapes are fitted on speech-like signals at other pitches than the ones it codes."""
    coder = PitchCoder()
    est = [causal_yin(frames_of(speech_like(3.0, f0=f, seed=i))) for i, f in enumerate(f0s)]
    coder.fit(torch.cat([e[0] for e in est], 1), torch.cat([e[1] for e in est], 1))
    return coder


def test_pitch_codes_round_trip_within_cents():
    coder = fitted_coder()
    x = frames_of(speech_like(3.0, f0=120.0))
    f0, voiced = causal_yin(x)
    codes = coder.encode(f0, voiced)
    assert codes.shape == (1, 2, x.shape[-1] // 1920)
    assert int(codes.min()) >= 0 and int(codes.max()) < 1024
    decoded = coder.decode(codes, analysis_centres(240, 1920, 960))  # at the estimates' window centres
    cents = 1200 * np.abs(np.log2(decoded[0].numpy() / np.maximum(f0[0].numpy(), 1.0)))
    v = voiced[0].numpy()
    assert np.median(cents[v]) < 2 and np.percentile(cents[v], 95) < 5  # measured 1.0 and 1.9
    flat = coder.decode(codes[:, :1], torch.arange(8) * 240 + 120)  # slot 0 alone: the frame's level
    assert (flat.reshape(-1, 8).std(dim=1) == 0).all()


def test_shapes_follow_a_contour_no_quadratic_can():
    """A syllable ending at 220 Hz and the next starting at 150 Hz within one frame: the coded contour
    keeps the step (held flat between the window centres on either side of it)."""
    steps = []
    for k in range(200):  # the step falls after window 1 to 5, between 120 and 250 Hz before and after
        high, low = 120 * 2 ** (k % 11 / 10 + 0.05), 120 * 2 ** (k % 7 / 10)
        steps.append([high] * (1 + k % 5) + [low] * (7 - k % 5))
    coder = PitchCoder()
    f0 = torch.tensor(steps)
    f0 = torch.cat([f0, f0[:, -1:]], dim=1).reshape(1, -1)  # hops 6 and 7 share one window
    coder.fit(f0, f0 > 0)
    test = torch.tensor([[220.0] * 3 + [150.0] * 5])
    codes = coder.encode(test, test > 0)
    out = coder.decode(codes, analysis_centres(240, 1920, 960))
    assert (1200 * torch.log2(out / test)).abs().max() < 15


def test_fit_shapes_finds_planted_shapes_and_ignores_unvoiced_entries():
    gen = torch.Generator().manual_seed(0)
    planted = torch.tensor([[0.0, 0.1, 0.2, 0.3], [0.3, 0.1, -0.1, -0.3], [0.0, 0.5, 0.5, 0.0], [-0.2, 0.0, 0.2, 0.0]])
    rows = planted[torch.arange(400) % 4] + 0.005 * torch.randn(400, 4, generator=gen)
    voiced = torch.rand(400, 4, generator=gen) > 0.3
    rows = torch.where(voiced, rows, torch.full_like(rows, 9.0))  # garbage where unvoiced: must not matter
    found = fit_shapes(rows, voiced, size=4)
    distance = (found[:, None] - planted[None]).abs().amax(dim=-1)  # (found, planted)
    assert (distance.amin(dim=0) < 0.01).all()  # every planted shape was found


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


def test_the_compiled_comb_is_the_reference_comb():
    """The CPU loop rewrites the lobes' sines (one per harmonic, not per bin): it must give the defining
    formula's values, at the two synthesis windows, for voices from 50 to 600 Hz, pauses, and harmonics that
    fall exactly on a bin (where the formula is 0/0, at that bin and the next on either side)."""
    gen = torch.Generator().manual_seed(0)
    f0 = torch.exp(torch.empty(6, 200).uniform_(math.log(50.0), math.log(600.0), generator=gen))
    f0[torch.rand(6, 200, generator=gen) < 0.3] = 0.0
    f0[0, :6] = torch.tensor([100.0, 120.0, 200.0, 250.0, 75.0, 50.0])
    for n_fft in (480, 720):
        reference, fast = comb_reference(f0.double(), n_fft, 24000), comb(f0, n_fft, 24000)
        assert fast.dtype == torch.float32 and fast.shape == reference.shape == (6, 200, n_fft // 2 + 1)
        assert (fast[f0 == 0] == 0).all()
        torch.testing.assert_close(fast.double(), reference, atol=1e-6, rtol=0)
        # in float32 the reference's bin offsets round to 1e-5 bins, where a lobe is steep
        torch.testing.assert_close(fast, comb_reference(f0, n_fft, 24000), atol=3e-4, rtol=0)


def test_a_frame_decodes_to_the_same_bits_alone_as_among_many():
    """Streaming decodes a frame at a time, offline all at once: the phases integrate the f0, so it must not
    differ by even a rounding."""
    coder = fitted_coder()
    f0, voiced = causal_yin(frames_of(speech_like(3.0, f0=120.0)))
    codes = coder.encode(f0, voiced)
    offsets = torch.arange(16) * 120 - 120  # the synthesis windows' centres
    alone = torch.cat([coder.decode(codes[..., i: i + 1], offsets) for i in range(codes.shape[-1])], dim=1)
    assert torch.equal(alone, coder.decode(codes, offsets))


def test_uncoded_contour_passes_the_estimate_through_at_the_window_centres():
    f0 = torch.tensor([[0.0, 180.0, 200.0, 0.0, 150.0, 160.0, 170.0, 170.0] + [0.0] * 8])  # frame 2 unvoiced
    out = PitchCoder().uncoded(f0, f0 > 0, analysis_centres(240, 1920, 960))
    frame_mean = 2 ** np.log2([180.0, 200.0, 150.0, 160.0, 170.0]).mean()  # what the unvoiced windows take
    expected = torch.tensor([frame_mean, 180.0, 200.0, frame_mean, 150.0, 160.0, 170.0, 170.0] + [0.0] * 8,
                            dtype=torch.float32)
    assert torch.allclose(out[0], expected, rtol=1e-6)
