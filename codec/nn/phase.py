"""Phase from magnitudes: real-time phase-gradient heap integration (RTPGHI; Prusa and Holighaus, 2017),
then a few Griffin-Lim iterations on each block with the past held fixed.

The decoder predicts STFT magnitudes only; this module gives them a phase without learning one. The
phase's derivatives follow from the log magnitudes s (a the hop, M the FFT size, k the bin, n the hop
index; phases in the window-centred convention):
    per hop, along time:  2 pi a f / M, f the frequency (in bins) of the spectral peak bin k lies under
        (RTPGHI's 2 pi a k / M + (a M / lambda) ds/dk is the same for a Gaussian window; for a hann window
        the peak's exact interpolation keeps harmonics in tune, which the slope did not)
    per bin, along frequency:  -(lambda / (a M)) ds/dn, lambda = 0.25645 M^2 for a hann window
Each new hop is integrated from the previous one, loudest bins first (a heap), so phase flows from where
it is reliable. ds/dn is a centred difference where the next hop is in the same codec frame (the decoder
makes a frame's hops together) and a backward one at a frame's last hop, so a stream that receives one
frame at a time computes exactly what an offline call does.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numba
import numpy as np
import torch
import torch.nn.functional as F

HANN_LAMBDA = 0.25645  # lambda / L^2 for a hann window (Prusa et al., 2017)
FLOOR_LOG = -11.5  # log magnitude of silence (1e-5): the past a phase integration starts from
FLOOR_DB = 60.0  # bins this far below the loudest of their hop take the time-integrated phase: the heap walk
# is most of the phase work, and 100 dB scores no better (`codec diagnose phase`)
HARMONIC_LIMIT = 0.95  # harmonics above this share of Nyquist are left out, of the comb and of the locking
WALK_CHUNK = 4  # blocks per task of a walk run beside the refinement: few, so the first block waits little
LIFTER = 30  # quefrencies (samples) of the envelope: under the 60-sample period of a 400 Hz voice at 24 kHz


def numba_cache_dir() -> Path:
    """Where the compiled phase functions are cached: NUMBA_CACHE_DIR if set, else the user's cache folder."""
    if numba.config.CACHE_DIR:
        return Path(numba.config.CACHE_DIR)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "codec" / "numba"


def compiled(fn):
    """numba.njit, releasing the GIL (the walk runs beside the torch work of other blocks), cached in
    numba_cache_dir() rather than beside this file: a cache inside an installed
    package outlives `pip uninstall`, and the folder it leaves makes `codec` a namespace package that hides
    a later editable install. numba picks a function's cache folder when it is decorated, from
    numba.config.CACHE_DIR, so the setting is made for these functions only and then restored."""
    previous = numba.config.CACHE_DIR
    numba.config.CACHE_DIR = str(numba_cache_dir())
    try:
        return numba.njit(cache=True, nogil=True)(fn)
    finally:
        numba.config.CACHE_DIR = previous


@compiled
def _peak_frequencies(s: np.ndarray, out: np.ndarray) -> None:
    """out[k] = the frequency (in bins) of the spectral peak that bin k lies under: climb the log magnitude
    s to the local maximum p, then place the peak at p + 2 (c - a) / (a + 2 b + c) with a, b, c the
    magnitudes at p - 1, p, p + 1: exact for a sinusoid under a hann window (a parabola through the log
    magnitudes is off by up to 0.015 bins, which detunes harmonics against each other).

    A bin that climbs right (its right neighbour is higher) reaches the peak its right neighbour reaches,
    and one that climbs left the peak of its left neighbour; so one pass each way finds every bin's peak
    in O(bins), each peak placed once."""
    last = s.shape[0] - 1
    for k in range(last, -1, -1):  # peaks, and the bins that climb right
        if k < last and s[k + 1] > s[k]:
            out[k] = out[k + 1]
        elif k > 0 and s[k - 1] > s[k]:
            continue  # climbs left: the next pass
        elif 0 < k < last:
            a, b, c = np.exp(s[k - 1] - s[k]), 1.0, np.exp(s[k + 1] - s[k])
            out[k] = k + 2 * (c - a) / (a + 2 * b + c)
        else:
            out[k] = k
    for k in range(1, last + 1):  # the bins that climb left
        if not (k < last and s[k + 1] > s[k]) and s[k - 1] > s[k]:
            out[k] = out[k - 1]


@compiled
def _push(keys: np.ndarray, items: np.ndarray, size: int, key: float, item: int) -> int:
    """Max-heap on arrays (keys, items): insert, return the new size."""
    i = size
    keys[i], items[i] = key, item
    while i > 0:
        parent = (i - 1) // 2
        if keys[parent] >= keys[i]:
            break
        keys[parent], keys[i] = keys[i], keys[parent]
        items[parent], items[i] = items[i], items[parent]
        i = parent
    return size + 1


@compiled
def _pop(keys: np.ndarray, items: np.ndarray, size: int) -> int:
    """Remove the top of the max-heap (read it first from keys[0], items[0]); return the new size."""
    size -= 1
    keys[0], items[0] = keys[size], items[size]
    i = 0
    while True:
        left, best = 2 * i + 1, i
        if left < size and keys[left] > keys[best]:
            best = left
        if left + 1 < size and keys[left + 1] > keys[best]:
            best = left + 1
        if best == i:
            return size
        keys[best], keys[i] = keys[i], keys[best]
        items[best], items[i] = items[i], items[best]
        i = best


@compiled
def _integrate(log_mag: np.ndarray, prev_log: np.ndarray, block: int, hop: int, n_fft: int, lam: float,
               floor: float) -> tuple:
    """log_mag (H, K) for hops that start a block (H a multiple of `block`), prev_log (K,) the hop before ->
    (offset (H, K), origin (H, K)), window-centred convention: hop n's phase at bin k is offset[n, k] plus
    the phase, at bin origin[n, k], of the hop before n's block. The walk's order and steps depend on the
    magnitudes alone, so this runs ahead of the block-by-block refinement that sets those phases."""
    hops, bins = log_mag.shape
    offset = np.empty((hops, bins))
    origin = np.empty((hops, bins), dtype=np.int64)
    zero = np.zeros(bins)
    identity = np.arange(bins)
    f_coef = -lam / (hop * n_fft)
    omega_prev = np.empty(bins)
    peaks = np.empty(bins)
    _peak_frequencies(prev_log, peaks)
    for k in range(bins):
        omega_prev[k] = 2 * np.pi * hop * peaks[k] / n_fft
    done = np.zeros(bins, dtype=np.bool_)
    omega = np.empty(bins)
    dphi = np.empty(bins)
    keys = np.empty(bins)  # the heap of this hop's bins, by log magnitude
    items = np.empty(bins, dtype=np.int64)
    loud = np.empty(bins, dtype=np.int64)
    for n in range(hops):
        cur = log_mag[n]
        before = prev_log if n == 0 else log_mag[n - 1]
        last_of_block = (n + 1) % block == 0  # the next hop is not made yet: a backward difference
        first_of_block = n % block == 0  # integrates from the hop before the block: offset 0, each bin its own
        last_offset = zero if first_of_block else offset[n - 1]
        last_origin = identity if first_of_block else origin[n - 1]
        audible = cur.max() - floor
        # The previous hop's bins above this hop's floor, loudest first: sorting only these, not every bin,
        # was half the phase work.
        count = 0
        for k in range(bins):
            if before[k] > audible:
                loud[count] = k
                count += 1
        order = loud[:count][np.argsort(-before[loud[:count]])]
        _peak_frequencies(cur, peaks)
        for k in range(bins):
            omega[k] = 2 * np.pi * hop * peaks[k] / n_fft
            dphi[k] = f_coef * (cur[k] - before[k] if last_of_block else 0.5 * (log_mag[n + 1, k] - before[k]))
        _integrate_hop(cur, before, order, last_offset, last_origin, offset[n], origin[n], omega_prev, omega, dphi,
                       done, keys, items, audible)
        for k in range(bins):
            offset[n, k] = np.remainder(offset[n, k], 2 * np.pi)  # keeps the running sum's digits over a block
            omega_prev[k] = omega[k]
    return offset, origin


@compiled
def _integrate_hop(cur: np.ndarray, before: np.ndarray, order: np.ndarray, last_phase: np.ndarray,
                   last_origin: np.ndarray, out: np.ndarray, out_origin: np.ndarray, omega_prev: np.ndarray,
                   omega: np.ndarray, dphi: np.ndarray, done: np.ndarray, keys: np.ndarray, items: np.ndarray,
                   audible: float) -> None:
    """One hop's phases into `out` (K,): from the previous hop along time (omega_prev, omega: phase
    advance per hop) and along frequency (dphi: phase step per bin), loudest first; bins at or under
    `audible` follow their own frequency. The previous hop's bins above it come in `order` (loudest
    first), merged with a heap of this hop's bins as they are reached: one priority queue over both, as in
    RTPGHI. out_origin[k]: the bin of last_origin that out[k]'s walk started from."""
    bins = cur.shape[0]
    size, left = 0, 0
    for k in range(bins):
        if cur[k] > audible:
            done[k] = False
            left += 1
        else:  # too quiet to matter: follow the bin's own frequency
            out[k] = last_phase[k] + 0.5 * (omega_prev[k] + omega[k])
            out_origin[k] = last_origin[k]
            done[k] = True
    loud_before = order.shape[0]  # the previous hop's bins above `audible`, loudest first
    i = 0
    while left > 0:
        if size == 0 and i == loud_before:
            # Nothing loud before (an onset): start from the loudest bin still open.
            best, best_k = -np.inf, -1
            for k in range(bins):
                if not done[k] and cur[k] > best:
                    best, best_k = cur[k], k
            out[best_k] = last_phase[best_k] + 0.5 * (omega_prev[best_k] + omega[best_k])
            out_origin[best_k] = last_origin[best_k]
            done[best_k] = True
            left -= 1
            size = _push(keys, items, size, cur[best_k], best_k)
            continue
        if i < loud_before and (size == 0 or before[order[i]] >= keys[0]):  # from the previous hop: along time
            k = order[i]
            i += 1
            if not done[k]:
                out[k] = last_phase[k] + 0.5 * (omega_prev[k] + omega[k])
                out_origin[k] = last_origin[k]
                done[k] = True
                left -= 1
                size = _push(keys, items, size, cur[k], k)
        else:  # from this hop: integrate along frequency to both neighbours
            k = items[0]
            size = _pop(keys, items, size)
            for j in (k - 1, k + 1):
                if 0 <= j < bins and not done[j]:
                    step = 0.5 * (dphi[k] + dphi[j])
                    out[j] = out[k] + (step if j > k else -step)
                    out_origin[j] = out_origin[k]
                    done[j] = True
                    left -= 1
                    size = _push(keys, items, size, cur[j], j)


class PhaseState:
    """What the next call needs of the past, per item: the last hop's log magnitudes, phases and f0, and
    the fundamental's phase there."""

    def __init__(self, batch: int, bins: int, floor_log: float):
        self.log_mag = np.full((batch, bins), floor_log)
        self.phase = np.zeros((batch, bins))
        self.f0 = np.zeros(batch)
        self.fundamental = np.zeros(batch)


def rtpghi(log_mag: np.ndarray, hop: int, n_fft: int, block: int, state: PhaseState | None = None,
           floor_log: float = FLOOR_LOG, floor_db: float = FLOOR_DB) -> np.ndarray:
    """log_mag (B, H, n_fft // 2 + 1), natural log, H a multiple of `block` -> phases (B, H, bins), float64,
    in the convention of an FFT of the windowed frame (numpy / torch rfft). `state` carries the past of a
    stream and is updated; None starts from silence (floor_log everywhere). Bins more than floor_db under
    their hop's loudest follow their own frequency, outside the heap."""
    batch, hops, bins = log_mag.shape
    if state is None:
        state = PhaseState(batch, bins, floor_log)
    offset, origin = walk(log_mag, hop, n_fft, block, state.log_mag, floor_db)
    centred = np.empty((batch, hops, bins))
    for start in range(0, hops, block):  # each block from the last hop of the one before it
        blocks = slice(start, start + block)
        centred[:, blocks] = place(offset[:, blocks], origin[:, blocks], state.phase)
        state.phase[:] = centred[:, start + block - 1]
    if hops:
        state.log_mag[:] = log_mag[:, -1]
    return centred + np.pi * np.arange(bins)  # the window's centre is n_fft / 2 samples into the frame


def walk(log_mag: np.ndarray, hop: int, n_fft: int, block: int, prev_log: np.ndarray,
         floor_db: float = FLOOR_DB) -> tuple:
    """RTPGHI's walk over log_mag (B, H, bins), H a multiple of `block`, after the hops prev_log (B, bins):
    (offset, origin) (B, H, bins), window-centred: hop n's phase at bin k is offset[n, k] plus the phase at
    bin origin[n, k] of the hop before n's block (`place`)."""
    batch, hops, bins = log_mag.shape
    if hops % block:
        raise ValueError(f"{hops} hops is not a multiple of the block of {block}")
    lam = HANN_LAMBDA * n_fft * n_fft
    floor = floor_db / 20 * np.log(10)
    offset, origin = np.empty((batch, hops, bins)), np.empty((batch, hops, bins), dtype=np.int64)
    for b in range(batch):
        if hops:
            offset[b], origin[b] = _integrate(np.ascontiguousarray(log_mag[b], dtype=np.float64),
                                              np.ascontiguousarray(prev_log[b], dtype=np.float64), block, hop,
                                              n_fft, lam, floor)
    return offset, origin


def walk_ahead(log_mag: np.ndarray, hop: int, n_fft: int, block: int, prev_log: np.ndarray, floor_db: float,
               chunk: int, beside: bool):
    """`walk` block by block: yields each block's (offset, origin) (B, block, bins). beside: walk in a
    worker thread, `chunk` blocks at a time, while the caller works on the blocks already yielded (the
    walk releases the GIL): a second core then hides it."""
    hops = log_mag.shape[1]
    if hops % block:
        raise ValueError(f"{hops} hops is not a multiple of the block of {block}")
    step = chunk * block

    def part(start: int) -> tuple:
        before = prev_log if start == 0 else log_mag[:, start - 1]
        return walk(log_mag[:, start: start + step], hop, n_fft, block, before, floor_db)

    pool = ThreadPoolExecutor(max_workers=1) if beside else None
    parts = ((f.result() for f in [pool.submit(part, start) for start in range(0, hops, step)]) if beside
             else [walk(log_mag, hop, n_fft, block, prev_log, floor_db)])
    try:
        for offset, origin in parts:
            for start in range(0, offset.shape[1], block):
                yield offset[:, start: start + block], origin[:, start: start + block]
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)


def place(offset: np.ndarray, origin: np.ndarray, start: np.ndarray) -> np.ndarray:
    """One block's (offset, origin) (B, block, bins) from `walk` and the phases (B, bins) of the hop before
    it -> its phases (B, block, bins), window-centred."""
    return np.remainder(np.take_along_axis(start[:, None, :], origin, axis=-1) + offset, 2 * np.pi)


def minimum_phase(log_mag: np.ndarray, n_fft: int, lifter: int = LIFTER) -> np.ndarray:
    """log_mag (..., n_fft // 2 + 1) -> the phase (same shape, unwrapped) of the minimum-phase filter whose
    log magnitude is the cepstrally smoothed log_mag: its first `lifter` quefrencies (below the shortest
    pitch period), so the harmonics' fine structure does not enter."""
    cepstrum = np.fft.irfft(log_mag, n=n_fft, axis=-1)
    fold = np.zeros(n_fft)
    fold[0], fold[1:lifter] = 1.0, 2.0
    return np.fft.rfft(cepstrum * fold, axis=-1).imag


def harmonic_phases(log_mag: np.ndarray, f0: np.ndarray, share: np.ndarray, hop: int, n_fft: int,
                    sample_rate: int, state: PhaseState, block: int | None = None, threshold: float = 0.5
                    ) -> tuple[np.ndarray, np.ndarray]:
    """The phases voiced bins take from their harmonic: log_mag, share (B, H, bins), f0 (B, H) Hz at the hops'
    window centres (0 unvoiced) -> (phases (B, H, bins), window-centred convention, and the bins that take
    them: those whose harmonic share exceeds `threshold`). The phase of harmonic k is k times the
    fundamental's, integrated from f0 (trapezoids, carried in `state`), plus the minimum phase of the
    envelope at k f0: the harmonics stay locked to one another as in a glottal pulse train, which phases
    found bin by bin from magnitudes without the pulses' beating do not keep.

    None of it depends on the other bins' phases, so a decoder computes it for many blocks at once;
    `block` (hops) wraps the fundamental at the end of every block, as a stream that is given one block a
    call wraps it, so both compute the same phases (None: at the end of the call only)."""
    before = np.concatenate([state.f0[:, None], f0[:, :-1]], axis=1)
    increments = np.pi * hop * (before + f0) / sample_rate
    fundamental = np.empty_like(increments)
    start, step = state.fundamental, block or max(1, f0.shape[1])
    for s in range(0, f0.shape[1], step):
        fundamental[:, s: s + step] = start[:, None] + np.cumsum(increments[:, s: s + step], axis=1)
        start = np.remainder(fundamental[:, min(s + step, f0.shape[1]) - 1], 2 * np.pi)
    if f0.shape[1]:
        state.f0 = f0[:, -1].copy()
        state.fundamental = start
    bins = log_mag.shape[-1]
    bin_hz = sample_rate / n_fft
    f = np.where(f0 > 0, f0, 1.0)[..., None]
    number = np.maximum(1.0, np.round(np.arange(bins) * bin_hz / f))
    position = np.minimum(number * f / bin_hz, bins - 1.0)  # the harmonic, in bins
    low = np.floor(position).astype(np.int64)
    high = np.minimum(low + 1, bins - 1)
    envelope = minimum_phase(log_mag, n_fft)
    frac = position - low
    at_harmonic = (1 - frac) * np.take_along_axis(envelope, low, -1) + frac * np.take_along_axis(envelope, high, -1)
    locked = np.remainder(number * fundamental[..., None] + at_harmonic, 2 * np.pi)
    voiced = (f0[..., None] > 0) & (number * f < HARMONIC_LIMIT * sample_rate / 2) & (share > threshold)
    return locked, voiced


def lock_harmonics(phase: np.ndarray, log_mag: np.ndarray, f0: np.ndarray, share: np.ndarray, hop: int,
                   n_fft: int, sample_rate: int, state: PhaseState, threshold: float = 0.5) -> np.ndarray:
    """Voiced bins take the phase of their harmonic (harmonic_phases): phase, log_mag, share (B, H, bins),
    f0 (B, H) -> phase, window-centred convention, those bins replaced."""
    locked, voiced = harmonic_phases(log_mag, f0, share, hop, n_fft, sample_rate, state, threshold=threshold)
    return np.where(voiced, locked, phase)


def refine(mag: torch.Tensor, phase: torch.Tensor, window: torch.Tensor, hop: int, tail: torch.Tensor,
           tail_env: torch.Tensor, iterations: int) -> torch.Tensor:
    """Griffin-Lim on one block of hops, the output before it held fixed: mag, phase (B, n, bins) -> the
    refined complex spectra (B, n, bins), of magnitude `mag`.

    Each iteration overlap-adds the block's frames onto `tail` (B, n_fft - hop; the earlier frames'
    un-normalized overlap, as kernels.overlap_add_stream carries it; `tail_env` its window envelope),
    normalizes, and takes the phases of the re-analysed block: the frames then agree with their neighbours,
    which RTPGHI alone leaves approximate. Nothing after the block is assumed, so a stream refines exactly
    as an offline call does. The phases stay unit phasors (no angle, no polar): a third less work."""
    n_fft, n = window.shape[0], mag.shape[1]
    overlap, length = n_fft - hop, n * hop + n_fft - hop
    fold = lambda frames: F.fold(frames.transpose(1, 2), (1, length), (1, n_fft), stride=(1, hop))[:, 0, 0]
    env = fold(window.square().expand(1, n, n_fft))[0]
    env[:overlap] += tail_env
    env = env.clamp_min(1e-3)  # the block's last samples wait for later windows: keep them finite
    spectra = torch.polar(mag, phase)
    for _ in range(iterations):
        signal = fold(torch.fft.irfft(spectra, n=n_fft) * window)
        signal[:, :overlap] += tail
        analysed = torch.fft.rfft((signal / env).unfold(-1, n_fft, hop) * window, dim=-1)
        spectra = analysed.sgn() * mag  # the new phases (unit phasors; 0 where nothing came back)
    return spectra
