"""Quality metrics between a reference and a decoded signal, both 1-D float arrays at `rate`.

Each raises NotComputable with the reason when the standard implementation cannot give a meaningful value
(too short, no speech), so a report can say so instead of averaging a junk number in.
"""
from __future__ import annotations

import numpy as np
import soxr


class NotComputable(ValueError):
    """The metric has no meaningful value for this pair; the message says why."""


def _to(x: np.ndarray, rate: int, target: int) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x if rate == target else soxr.resample(x, rate, target, quality="HQ")


def _same_length(ref: np.ndarray, deg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n = min(len(ref), len(deg))
    return np.asarray(ref[:n], np.float64), np.asarray(deg[:n], np.float64)


def active_seconds(x: np.ndarray, rate: int, range_db: float = 40.0) -> float:
    """Seconds of 20 ms frames within `range_db` of the loudest frame: how much speech there is."""
    hop = max(1, int(0.02 * rate))
    n = len(x) // hop
    if n == 0:
        return 0.0
    power = np.mean(np.asarray(x[: n * hop], np.float64).reshape(n, hop) ** 2, axis=1)
    if power.max() <= 0:
        return 0.0
    return float(np.sum(10 * np.log10(power / power.max() + 1e-20) > -range_db) * hop / rate)


def pesq(ref: np.ndarray, deg: np.ndarray, rate: int, mode: str = "wb") -> float:
    """ITU-T P.862.2 wideband (at 16 kHz) or P.862 narrowband (at 8 kHz) MOS-LQO via the `pesq` package."""
    from pesq import pesq as _pesq
    from pesq.cypesq import PesqError

    target = 16000 if mode == "wb" else 8000
    ref, deg = _same_length(_to(ref, rate, target), _to(deg, rate, target))
    if len(ref) < 0.25 * target:  # the implementation refuses shorter input
        raise NotComputable(f"PESQ needs at least 0.25 s, got {len(ref) / target:.2f} s")
    try:
        return float(_pesq(target, ref, deg, mode))
    except PesqError as err:
        raise NotComputable(f"PESQ: {type(err).__name__}") from None


def stoi(ref: np.ndarray, deg: np.ndarray, rate: int, extended: bool = False) -> float:
    """STOI (Taal 2011) or extended STOI (Jensen 2016) via `pystoi` (which works at 10 kHz)."""
    from pystoi import stoi as _stoi

    ref, deg = _same_length(ref, deg)
    speech = active_seconds(ref, rate)
    if speech < 0.4:  # pystoi silently returns ~1e-5 when fewer than 30 frames of speech remain
        raise NotComputable(f"STOI needs about 0.4 s of speech, found {speech:.2f} s")
    return float(_stoi(ref, deg, rate, extended=extended))


def si_sdr(ref: np.ndarray, deg: np.ndarray) -> float:
    """Scale-invariant signal-to-distortion ratio in dB (Le Roux et al. 2019), zero-mean signals."""
    ref, deg = _same_length(ref, deg)
    ref, deg = ref - ref.mean(), deg - deg.mean()
    energy = np.dot(ref, ref)
    if energy <= 0:
        raise NotComputable("SI-SDR is undefined for a silent reference")
    target = np.dot(deg, ref) / energy * ref
    noise = deg - target
    return float(10 * np.log10(np.dot(target, target) / max(np.dot(noise, noise), 1e-20)))


def mel_distance(ref: np.ndarray, deg: np.ndarray, rate: int) -> float:
    """Mean L1 distance of log10 mel magnitudes over four resolutions (see codec.losses.MEL_SCALES), at
    24 kHz. 0 for identical signals; about 0.1-0.3 for good coding of speech, above 1 for unrelated audio."""
    import torch

    ref, deg = _same_length(_to(ref, rate, 24000), _to(deg, rate, 24000))
    loss = _mel_loss()
    with torch.no_grad():
        return float(loss(torch.from_numpy(deg).float()[None, None], torch.from_numpy(ref).float()[None, None]))


_MEL = None


def _mel_loss():
    global _MEL
    if _MEL is None:
        from codec.losses import MultiScaleMelLoss

        _MEL = MultiScaleMelLoss(24000)
    return _MEL


METRICS = {
    "pesq_wb": lambda r, d, sr: pesq(r, d, sr, "wb"),
    "pesq_nb": lambda r, d, sr: pesq(r, d, sr, "nb"),
    "stoi": lambda r, d, sr: stoi(r, d, sr),
    "estoi": lambda r, d, sr: stoi(r, d, sr, extended=True),
    "si_sdr": lambda r, d, sr: si_sdr(r, d),
    "mel_distance": mel_distance,
}


def all_metrics(ref: np.ndarray, deg: np.ndarray, rate: int) -> dict[str, float | str]:
    """Every metric; a NotComputable one appears as the string 'n/a: reason'."""
    out: dict[str, float | str] = {}
    for name, fn in METRICS.items():
        try:
            out[name] = fn(ref, deg, rate)
        except NotComputable as err:
            out[name] = f"n/a: {err}"
    return out
