"""Metrics on signals whose answer is known (docs/metrics.md states each definition)."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import soxr
from scipy.signal import butter, sosfiltfilt

from codec.eval.align import align, find_delay
from codec.eval.bitrate import codebook_stats, entropy_bits, nominal_bitrate
from codec.eval.metrics import NotComputable, mel_distance, pesq, si_sdr, stft_distance, stoi

RATE = 24000


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    """The repository's real speech sample (3.7 s, voiced), at 24 kHz."""
    x, rate = sf.read("tests/data/speech.flac", dtype="float64")
    return soxr.resample(x, rate, RATE)


def test_identity_gives_the_maximum_scores(speech):
    assert pesq(speech, speech, RATE, "wb") == pytest.approx(4.644, abs=0.01)  # P.862.2 ceiling
    assert stoi(speech, speech, RATE) == pytest.approx(1.0, abs=1e-6)
    assert stoi(speech, speech, RATE, extended=True) == pytest.approx(1.0, abs=1e-6)
    assert mel_distance(speech, speech, RATE) == 0.0
    assert stft_distance(speech, speech, RATE) == 0.0


@pytest.mark.parametrize("snr_db", [0.0, 10.0, 25.0])
def test_si_sdr_of_white_noise_at_a_set_snr(snr_db):
    rng = np.random.default_rng(int(snr_db))
    ref = rng.standard_normal(48000)
    noise = rng.standard_normal(48000)
    # Make the noise orthogonal to the reference so the SNR is exactly what SI-SDR measures.
    noise -= noise.mean()
    noise -= np.dot(noise, ref - ref.mean()) / np.dot(ref - ref.mean(), ref - ref.mean()) * (ref - ref.mean())
    noise *= np.linalg.norm(ref - ref.mean()) / np.linalg.norm(noise) * 10 ** (-snr_db / 20)
    assert si_sdr(ref, 0.5 * (ref + noise)) == pytest.approx(snr_db, abs=0.1)  # scale-invariant: 0.5 changes nothing


def _delayed(x: np.ndarray, k: int) -> np.ndarray:
    """x delayed by k samples (k < 0: advanced), same length, zeros shifted in."""
    out = np.zeros_like(x)
    if k >= 0:
        out[k:] = x[: len(x) - k]
    else:
        out[:k] = x[-k:]
    return out


@pytest.mark.parametrize("k", [0, 1, 7, 113, 240, 1337, -45])
def test_delay_is_found_exactly_on_voiced_speech(speech, k):
    assert find_delay(speech, _delayed(speech, k), RATE) == k


def test_delay_is_found_through_band_limiting_and_noise(speech):
    # A zero-phase 4 kHz low-pass (what Opus does below 9 kbit/s) plus noise at 20 dB: the lag stays exact.
    lp = sosfiltfilt(butter(8, 4000, fs=RATE, output="sos"), speech)
    noisy = lp + np.random.default_rng(0).standard_normal(len(lp)) * np.std(lp) * 0.1
    deg = np.concatenate([np.zeros(321), noisy])
    aligned, k = align(speech, deg, RATE)
    assert k == 321
    assert np.allclose(aligned[: len(noisy)], noisy[: len(aligned)])


def test_a_waveform_without_the_reference_phase_keeps_the_envelope_lag(speech):
    # Random STFT phases keep the envelope and lose the waveform, as a decoder computing its own phase
    # does: the whitened correlation has only noise, and the coarse lag (2 hops) stands.
    from scipy.signal import istft, stft

    _, _, spec = stft(speech, nperseg=480, noverlap=360)
    phases = np.exp(2j * np.pi * np.random.default_rng(1).random(spec.shape))
    vocoded = istft(np.abs(spec) * phases, nperseg=480, noverlap=360)[1][: len(speech)]
    assert find_delay(speech, _delayed(vocoded, 480), RATE) == 480


def test_low_passing_raises_the_mel_distance(speech):
    dists = [mel_distance(speech, sosfiltfilt(butter(8, fc, fs=RATE, output="sos"), speech), RATE)
             for fc in (8000, 4000, 2000)]
    assert 0 < dists[0] < dists[1] < dists[2]


def test_short_and_silent_input_is_not_computable(speech):
    short = speech[: int(0.2 * RATE)]
    with pytest.raises(NotComputable, match="0.25 s"):
        pesq(short, short, RATE)
    with pytest.raises(NotComputable, match="speech"):
        stoi(speech[: int(0.3 * RATE)], speech[: int(0.3 * RATE)], RATE)
    with pytest.raises(NotComputable, match="silent"):
        si_sdr(np.zeros(1000), np.ones(1000))


def test_entropy_of_known_distributions():
    assert entropy_bits(np.array([1, 1, 1, 1])) == pytest.approx(2.0)
    assert entropy_bits(np.array([2, 1, 1, 0])) == pytest.approx(1.5)  # p = 1/2, 1/4, 1/4
    # codebook 0 uniform over 4 of 16 entries, codebook 1 constant: 2 + 0 bits per frame
    tokens = np.stack([np.tile(np.arange(4), 25), np.zeros(100, int)])
    stats = codebook_stats([tokens[:, :40], tokens[:, 40:]], codebook_size=16, frame_rate=12.5)
    assert stats["entropy_bits"] == [2.0, 0.0]
    assert stats["perplexity"] == [4.0, 1.0]
    assert stats["used_share"] == [0.25, 0.0625]
    assert stats["entropy_bitrate"] == pytest.approx(25.0)
    assert stats["nominal_bitrate"] == nominal_bitrate(2, 16, 12.5) == 100.0


def test_nominal_bitrate_of_our_depths():
    assert nominal_bitrate(8, 1024, 12.5) == 1000.0
    assert nominal_bitrate(37, 1024, 12.5) == 4625.0
