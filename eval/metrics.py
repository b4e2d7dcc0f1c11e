"""Quality metrics between a reference and a decoded signal: 1-D float arrays at the same `rate`, the decoded
one already aligned (codec.eval.align). Every definition is in docs/metrics.md.

A metric that the standard implementation cannot give a meaningful value for (too short, no speech, silent
reference) raises NotComputable with the reason, so a report says so instead of averaging junk in.
"""
from __future__ import annotations

import warnings
from functools import lru_cache
from collections.abc import Callable

import librosa
import numpy as np

from codec.signal import resample_array


class NotComputable(ValueError):
    """The metric has no meaningful value for this pair; the message says why."""


# PESQ's C code refuses shorter input (BufferTooShortError); also below this it is not meaningful.
PESQ_MIN_SECONDS = 0.25
# Log-mel distance: (n_fft, hop, mel bands) at 24 kHz; fixed here, apart from the training loss
# (codec.train.losses), so the metric stays comparable when the training loss changes.
MEL_RATE = 24000
MEL_SCALES = ((256, 64, 32), (512, 128, 64), (1024, 256, 80), (2048, 512, 128))
MEL_FLOOR = 1e-5  # -100 dB: below anything audible in speech at normal level
# Multi-resolution STFT distance: (n_fft, hop, window) at 24 kHz, Parallel WaveGAN's resolutions.
STFT_RATE = 24000
STFT_SCALES = ((1024, 120, 600), (2048, 240, 1200), (512, 50, 240))
STFT_FLOOR = 1e-7 ** 0.5  # Parallel WaveGAN clamps power at 1e-7 before the square root


def to_rate(x: np.ndarray, rate: int, target: int) -> np.ndarray:
    """(T,) at `rate` -> float64 (T',) at `target` (soxr HQ); unchanged when the rates agree."""
    x = np.asarray(x, dtype=np.float64)
    return resample_array(x, rate, target)


def _same_length(ref: np.ndarray, deg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n = min(len(ref), len(deg))
    return np.asarray(ref[:n], np.float64), np.asarray(deg[:n], np.float64)


def pesq(ref: np.ndarray, deg: np.ndarray, rate: int, mode: str = "wb") -> float:
    """PESQ MOS-LQO via the `pesq` package (ITU-T reference C code): "wb" = P.862.2 at 16 kHz, "nb" = P.862 +
    P.862.1 mapping at 8 kHz. Both signals are resampled with soxr (HQ). Range about 1.0 to 4.64 (wb) / 4.55."""
    from pesq import PesqError
    from pesq import pesq as _pesq

    target = {"wb": 16000, "nb": 8000}[mode]
    ref, deg = _same_length(to_rate(ref, rate, target), to_rate(deg, rate, target))
    if len(ref) < PESQ_MIN_SECONDS * target:
        raise NotComputable(f"PESQ needs at least {PESQ_MIN_SECONDS} s, got {len(ref) / target:.2f} s")
    if not np.any(ref):
        raise NotComputable("PESQ: the reference is silent")
    try:
        return float(_pesq(target, ref, deg, mode))
    except PesqError as err:  # NoUtterancesError: its VAD found no speech
        raise NotComputable(f"PESQ: {type(err).__name__}") from None


def stoi(ref: np.ndarray, deg: np.ndarray, rate: int, extended: bool = False) -> float:
    """STOI (Taal et al. 2011) or extended STOI (Jensen & Taal 2016) via `pystoi`, which resamples to 10 kHz and
    drops frames more than 40 dB below the loudest. Range 0..1 (ESTOI can dip below 0)."""
    from pystoi import stoi as _stoi

    ref, deg = _same_length(ref, deg)
    if not np.any(ref):
        raise NotComputable("STOI: the reference is silent")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        value = float(_stoi(ref, deg, rate, extended=extended))
    # pystoi warns and returns 1e-5 when fewer than 30 speech frames (~0.4 s) survive its silence removal.
    if any("Not enough STFT frames" in str(w.message) for w in caught):
        raise NotComputable("STOI needs about 0.4 s of speech (30 frames of 12.8 ms after silence removal)")
    return value


def si_sdr(ref: np.ndarray, deg: np.ndarray) -> float:
    """Scale-invariant signal-to-distortion ratio in dB (Le Roux et al. 2019) on zero-mean signals."""
    ref, deg = _same_length(ref, deg)
    ref, deg = ref - ref.mean(), deg - deg.mean()
    energy = float(np.dot(ref, ref))
    if energy <= 0:
        raise NotComputable("SI-SDR is undefined for a silent reference")
    target = np.dot(deg, ref) / energy * ref
    noise = deg - target
    # 1e-20 floor: an exact copy gives a large finite number (about +200 dB) instead of a division by zero.
    return float(10 * np.log10(max(np.dot(target, target), 1e-20) / max(np.dot(noise, noise), 1e-20)))


@lru_cache(maxsize=None)
def _mel_basis(rate: int, n_fft: int, n_mels: int) -> np.ndarray:
    return librosa.filters.mel(sr=rate, n_fft=n_fft, n_mels=n_mels, fmin=0.0, fmax=rate / 2)  # Slaney


def _magnitude(x: np.ndarray, n_fft: int, hop: int, win: int | None = None) -> np.ndarray:
    """|STFT| [n_fft // 2 + 1, frames]: periodic Hann of `win` zero-padded to n_fft, centred, reflect padding
    (torch.stft's defaults, so values match training-time losses)."""
    return np.abs(librosa.stft(x, n_fft=n_fft, hop_length=hop, win_length=win or n_fft, window="hann",
                               center=True, pad_mode="reflect"))


def mel_distance(ref: np.ndarray, deg: np.ndarray, rate: int) -> float:
    """Mean over MEL_SCALES of the mean |log10 mel(deg) - log10 mel(ref)| at 24 kHz (magnitude mel, Slaney
    filters 0-12 kHz, floor 1e-5). 0 for identical signals; larger is worse."""
    ref, deg = _same_length(to_rate(ref, rate, MEL_RATE), to_rate(deg, rate, MEL_RATE))
    need = max(s[0] for s in MEL_SCALES) // 2 + 1  # reflect padding needs half a window
    if len(ref) < need:
        raise NotComputable(f"mel distance needs at least {need} samples at 24 kHz")
    total = 0.0
    for n_fft, hop, n_mels in MEL_SCALES:
        basis = _mel_basis(MEL_RATE, n_fft, n_mels)
        a = np.log10(np.maximum(basis @ _magnitude(ref, n_fft, hop), MEL_FLOOR))
        b = np.log10(np.maximum(basis @ _magnitude(deg, n_fft, hop), MEL_FLOOR))
        total += float(np.mean(np.abs(a - b)))
    return total / len(MEL_SCALES)


def stft_distance(ref: np.ndarray, deg: np.ndarray, rate: int) -> float:
    """Multi-resolution STFT distance (Yamamoto et al. 2020, Parallel WaveGAN): mean over STFT_SCALES of
    spectral convergence ||S_ref - S_deg||_F / ||S_ref||_F plus mean |ln S_ref - ln S_deg|, at 24 kHz."""
    ref, deg = _same_length(to_rate(ref, rate, STFT_RATE), to_rate(deg, rate, STFT_RATE))
    if not np.any(ref):
        raise NotComputable("STFT distance is undefined for a silent reference")
    need = max(s[0] for s in STFT_SCALES) // 2 + 1  # reflect padding needs half a window
    if len(ref) < need:
        raise NotComputable(f"STFT distance needs at least {need} samples at 24 kHz")
    total = 0.0
    for n_fft, hop, win in STFT_SCALES:
        a = np.maximum(_magnitude(ref, n_fft, hop, win), STFT_FLOOR)
        b = np.maximum(_magnitude(deg, n_fft, hop, win), STFT_FLOOR)
        convergence = np.linalg.norm(a - b) / np.linalg.norm(a)
        total += float(convergence + np.mean(np.abs(np.log(a) - np.log(b))))
    return total / len(STFT_SCALES)


# name -> (function(ref, deg, rate), higher is better)
METRICS: dict[str, tuple[Callable[[np.ndarray, np.ndarray, int], float], bool]] = {
    "pesq_wb": (lambda r, d, sr: pesq(r, d, sr, "wb"), True),
    "pesq_nb": (lambda r, d, sr: pesq(r, d, sr, "nb"), True),
    "stoi": (lambda r, d, sr: stoi(r, d, sr), True),
    "estoi": (lambda r, d, sr: stoi(r, d, sr, extended=True), True),
    "si_sdr": (lambda r, d, sr: si_sdr(r, d), True),
    "mel_distance": (mel_distance, False),
    "stft_distance": (stft_distance, False),
}


def all_metrics(ref: np.ndarray, deg: np.ndarray, rate: int, names: list[str] | None = None) -> dict[str, float | str]:
    """Each metric of `names` (default all): a float, or the string "n/a: reason" when not computable."""
    out: dict[str, float | str] = {}
    for name in names or list(METRICS):
        try:
            out[name] = METRICS[name][0](ref, deg, rate)
        except NotComputable as err:
            out[name] = f"n/a: {err}"
    return out
