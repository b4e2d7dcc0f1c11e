"""Phase from magnitudes: real-time phase-gradient heap integration (RTPGHI; Prusa and Holighaus, 2017).

The decoder predicts STFT magnitudes only; this module gives them a phase without learning one. For a
Gaussian-like window of "time-frequency ratio" lambda (0.25645 L^2 for a hann window of L samples), the
phase's derivatives follow from the log-magnitude s's:
    per hop, along time:  2 pi a k / M + (a M / lambda) ds/dk
    per bin, along frequency:  -(lambda / (a M)) ds/dn
(a the hop, M the FFT size, k the bin, n the hop index; phases in the window-centred convention). Each
new hop is integrated from the previous one, loudest bins first (a heap), so phase flows from where it
is reliable. ds/dn is a centred difference where the next hop is in the same codec frame (the decoder
makes a frame's hops together) and a backward one at a frame's last hop, so a stream that receives one
frame at a time computes exactly what an offline call does.
"""
from __future__ import annotations

import heapq

import numba
import numpy as np

HANN_LAMBDA = 0.25645  # lambda / L^2 for a hann window (Prusa et al., 2017)
FLOOR_DB = 100.0  # bins this far below the loudest of their hop take the time-integrated phase, no heap


@numba.njit(cache=True)
def _bin_slope(s: np.ndarray, k: int) -> float:
    last = s.shape[0] - 1
    if k == 0:
        return s[1] - s[0]
    if k == last:
        return s[last] - s[last - 1]
    return 0.5 * (s[k + 1] - s[k - 1])


@numba.njit(cache=True)
def _integrate(log_mag: np.ndarray, prev_log: np.ndarray, prev_phase: np.ndarray, block: int, hop: int,
               n_fft: int, lam: float, floor: float, fsign: float = 1.0, tsign: float = 1.0) -> np.ndarray:
    """log_mag (H, K) for hops that start a block (H a multiple of `block`), prev_log / prev_phase (K,) the
    hop before -> phases (H, K), window-centred convention."""
    hops, bins = log_mag.shape
    phase = np.empty((hops, bins))
    t_coef = tsign * hop * n_fft / lam
    f_coef = -fsign * lam / (hop * n_fft)
    omega_prev = np.empty(bins)
    for k in range(bins):
        omega_prev[k] = 2 * np.pi * hop * k / n_fft + t_coef * _bin_slope(prev_log, k)
    done = np.zeros(bins, dtype=np.bool_)
    omega = np.empty(bins)
    dphi = np.empty(bins)
    for n in range(hops):
        cur = log_mag[n]
        before = prev_log if n == 0 else log_mag[n - 1]
        last_of_block = (n + 1) % block == 0
        top = cur.max()
        for k in range(bins):
            omega[k] = 2 * np.pi * hop * k / n_fft + t_coef * _bin_slope(cur, k)
            if last_of_block:
                dphi[k] = f_coef * (cur[k] - before[k])
            else:
                dphi[k] = f_coef * 0.5 * (log_mag[n + 1, k] - before[k])
            done[k] = False
        last_phase = prev_phase if n == 0 else phase[n - 1]
        # Heap of (-log magnitude, bin, from_previous_hop): loudest first.
        heap = [(-before[k], k, 1) for k in range(bins) if before[k] > top - floor]
        heapq.heapify(heap)
        left = 0
        for k in range(bins):
            if cur[k] > top - floor:
                left += 1
            else:  # too quiet to matter: follow the bin's own frequency
                phase[n, k] = last_phase[k] + 0.5 * (omega_prev[k] + omega[k])
                done[k] = True
        while left > 0:
            if len(heap) == 0:
                # Nothing loud before (an onset): start from the loudest bin still open.
                best, best_k = -np.inf, -1
                for k in range(bins):
                    if not done[k] and cur[k] > best:
                        best, best_k = cur[k], k
                phase[n, best_k] = last_phase[best_k] + 0.5 * (omega_prev[best_k] + omega[best_k])
                done[best_k] = True
                left -= 1
                heapq.heappush(heap, (-cur[best_k], best_k, 0))
                continue
            _, k, from_prev = heapq.heappop(heap)
            if from_prev == 1:
                if not done[k]:
                    phase[n, k] = last_phase[k] + 0.5 * (omega_prev[k] + omega[k])
                    done[k] = True
                    left -= 1
                    heapq.heappush(heap, (-cur[k], k, 0))
            else:
                for j in (k - 1, k + 1):
                    if 0 <= j < bins and not done[j]:
                        step = 0.5 * (dphi[k] + dphi[j])
                        phase[n, j] = phase[n, k] + (step if j > k else -step)
                        done[j] = True
                        left -= 1
                        heapq.heappush(heap, (-cur[j], j, 0))
        for k in range(bins):
            phase[n, k] = np.remainder(phase[n, k], 2 * np.pi)  # keeps the running sum's digits over hours
            omega_prev[k] = omega[k]
    return phase


class PhaseState:
    """What the next call needs of the past: the last hop's log magnitudes and phases, per item."""

    def __init__(self, batch: int, bins: int, floor_log: float):
        self.log_mag = np.full((batch, bins), floor_log)
        self.phase = np.zeros((batch, bins))


def rtpghi(log_mag: np.ndarray, hop: int, n_fft: int, block: int, state: PhaseState | None = None,
           floor_log: float = -11.5) -> np.ndarray:
    """log_mag (B, H, n_fft // 2 + 1), natural log, H a multiple of `block` -> phases (B, H, bins), float64,
    in the convention of an FFT of the windowed frame (numpy / torch rfft). `state` carries the past of a
    stream and is updated; None starts from silence (floor_log everywhere)."""
    batch, hops, bins = log_mag.shape
    if hops % block:
        raise ValueError(f"{hops} hops is not a multiple of the block of {block}")
    if state is None:
        state = PhaseState(batch, bins, floor_log)
    lam = HANN_LAMBDA * n_fft * n_fft
    floor = FLOOR_DB / 20 * np.log(10)
    out = np.empty((batch, hops, bins))
    shift = np.pi * np.arange(bins)  # the window's centre is n_fft / 2 samples into the frame
    for b in range(batch):
        s = np.ascontiguousarray(log_mag[b], dtype=np.float64)
        centred = _integrate(s, state.log_mag[b], state.phase[b], block, hop, n_fft, lam, floor) if hops else \
            np.empty((0, bins))
        if hops:
            state.log_mag[b] = s[-1]
            state.phase[b] = centred[-1]
        out[b] = centred + shift
    return out
