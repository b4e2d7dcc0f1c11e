"""Delay of a decoded signal against its reference, and the shift that undoes it.

Two steps (docs/metrics.md, "Alignment"):
1. coarse: cross-correlation of log-mel envelopes (10 ms hops, 32 bands 50-3800 Hz, so band-limited and
   vocoded outputs still match); robust, but only to a hop;
2. fine: GCC-PHAT within +-1.5 hops of the coarse lag. Whitening the cross-spectrum gives one sharp peak at
   the true lag, where plain waveform cross-correlation of voiced speech has peaks one pitch period apart of
   nearly equal height and often picks a neighbour. A decoder that computes its own phase (ours) matches
   the envelope but not the waveform: its whitened correlation has no peak, only noise, and the coarse lag
   stands.
"""
from __future__ import annotations

import librosa
import numpy as np

HOP_S = 0.010  # envelope hop
N_FFT_S = 0.040  # envelope window
N_MELS, F_MIN, F_MAX = 32, 50.0, 3800.0  # inside every baseline's passband (Opus < 9 kbit/s: 4 kHz)
MAX_DELAY_S = 0.5  # codecs delay by tens of ms; 0.5 s leaves room and keeps the search cheap
FINE_HOPS = 1.5  # fine search half-width, in hops: the coarse lag is good to half a hop or so
# A true lag's whitened correlation stands out of the search window's RMS by ~sqrt(window) (27 here); the
# largest of ~700 noise values by ~3.
PEAK_OVER_RMS = 6.0


def _log_mel_envelope(x: np.ndarray, rate: int) -> np.ndarray:
    """x [T] -> standardized log-mel envelope [N_MELS, frames]; each band zero mean, unit variance."""
    hop = int(round(HOP_S * rate))
    n_fft = int(2 ** np.ceil(np.log2(N_FFT_S * rate)))
    mel = librosa.feature.melspectrogram(y=np.asarray(x, np.float32), sr=rate, n_fft=n_fft, hop_length=hop,
                                         n_mels=N_MELS, fmin=F_MIN, fmax=F_MAX, power=2.0, center=False)
    # Floor 60 dB below the loudest cell: silence and coding noise in it must not drive the correlation.
    env = np.log10(np.maximum(mel, mel.max() * 1e-6 + 1e-20))
    env -= env.mean(axis=1, keepdims=True)
    return env / (env.std(axis=1, keepdims=True) + 1e-8)


def coarse_delay(ref: np.ndarray, deg: np.ndarray, rate: int, max_delay_s: float = MAX_DELAY_S) -> int:
    """Lag in samples (a multiple of the 10 ms hop) at which deg's envelope best matches ref's.

    ref, deg: [T] at `rate`. Positive: deg lags ref (deg[n] ~ ref[n - lag]).
    """
    hop = int(round(HOP_S * rate))
    a, b = _log_mel_envelope(ref, rate), _log_mel_envelope(deg, rate)
    n = min(a.shape[1], b.shape[1])
    max_lag = min(int(max_delay_s / HOP_S), n // 2)
    best, best_score = 0, -np.inf
    for lag in range(-max_lag, max_lag + 1):
        x = a[:, max(0, -lag): a.shape[1] - max(0, lag)]
        y = b[:, max(0, lag): max(0, lag) + x.shape[1]]
        m = min(x.shape[1], y.shape[1])
        if m < 2:
            continue
        score = float(np.sum(x[:, :m] * y[:, :m])) / m  # mean over the overlap: lags are compared fairly
        if score > best_score:
            best, best_score = lag, score
    return best * hop


def gcc_phat(ref: np.ndarray, deg: np.ndarray, lo: int, hi: int) -> tuple[int, float]:
    """(integer lag in [lo, hi] maximizing the phase-transform-weighted cross-correlation, that maximum over
    the correlation's RMS in [lo, hi]).

    ref, deg: [T]. Positive: deg lags ref. The weight |G| / (|G| + eps) (eps = 1e-3 x the mean |G|) is PHAT
    on bins where both signals have energy and fades out bins one of them lacks (a codec's stop band),
    whose phase is noise.
    """
    n = int(2 ** np.ceil(np.log2(len(ref) + len(deg))))
    cross = np.fft.rfft(deg, n) * np.conj(np.fft.rfft(ref, n))
    mag = np.abs(cross)
    r = np.fft.irfft(cross / (mag + 1e-3 * mag.mean() + 1e-30), n)
    lags = np.arange(lo, hi + 1)
    window = r[lags % n]
    best = int(np.argmax(window))
    return int(lags[best]), float(window[best] / (np.sqrt(np.mean(window ** 2)) + 1e-30))


def find_delay(ref: np.ndarray, deg: np.ndarray, rate: int, max_delay_s: float = MAX_DELAY_S) -> int:
    """Delay of deg against ref in samples (positive: deg lags). ref, deg: [T] at `rate`."""
    ref, deg = np.asarray(ref, np.float64), np.asarray(deg, np.float64)
    if not np.any(ref) or not np.any(deg):
        return 0  # nothing to align: a silent side has no delay
    coarse = coarse_delay(ref, deg, rate, max_delay_s)
    width = int(round(FINE_HOPS * HOP_S * rate))
    fine, peak = gcc_phat(ref, deg, coarse - width, coarse + width)
    return fine if peak >= PEAK_OVER_RMS else coarse


def shift(deg: np.ndarray, delay: int, length: int) -> np.ndarray:
    """deg [T'] advanced by `delay` samples and cut or zero-padded to `length`: out[n] = deg[n + delay]."""
    out = np.zeros(length, dtype=np.float64)
    src_lo, dst_lo = max(0, delay), max(0, -delay)
    m = max(0, min(length - dst_lo, len(deg) - src_lo))
    out[dst_lo: dst_lo + m] = deg[src_lo: src_lo + m]
    return out


def align(ref: np.ndarray, deg: np.ndarray, rate: int, max_delay_s: float = MAX_DELAY_S) -> tuple[np.ndarray, int]:
    """(deg [len(ref)] aligned to ref, the delay in samples it had)."""
    delay = find_delay(ref, deg, rate, max_delay_s)
    return shift(np.asarray(deg, np.float64), delay, len(ref)), delay
