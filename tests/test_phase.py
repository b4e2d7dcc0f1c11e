"""Phases computed from magnitudes (codec.nn.phase): known signals come back, and a stream computes what an
offline call does."""
import numpy as np
import pytest
import torch

from codec import kernels
from codec.nn.phase import PhaseState, lock_harmonics, rtpghi

N_FFT, HOP, BLOCK = 480, 120, 16
WINDOW = torch.hann_window(N_FFT, periodic=True)


def analysis(x: torch.Tensor) -> torch.Tensor:
    """(T,) -> complex STFT (H, 241) in the decoder's framing: each window ends with its hop."""
    frames = torch.nn.functional.pad(x, (N_FFT - HOP, 0)).unfold(-1, N_FFT, HOP) * WINDOW
    return torch.fft.rfft(frames.double(), dim=-1)


def synthesize(mag: torch.Tensor, phase: torch.Tensor) -> torch.Tensor:
    frames = torch.fft.irfft(torch.polar(mag.float(), phase.float()), n=N_FFT)[None]
    return kernels.overlap_add(frames, HOP, WINDOW)[0, N_FFT - HOP: N_FFT - HOP + mag.shape[0] * HOP]


def rebuilt(x: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """x -> (x, x rebuilt from its STFT magnitudes and computed phases), past the first window."""
    x = torch.from_numpy(x)
    mag = analysis(x).abs()
    phase = torch.from_numpy(rtpghi(torch.log(mag + 1e-5).numpy()[None], HOP, N_FFT, BLOCK)[0])
    return x, synthesize(mag, phase)


def consistency(x: torch.Tensor, y: torch.Tensor) -> float:
    """Spectral convergence of y's magnitudes against x's, past the first and before the last window."""
    a, b = analysis(x).abs()[4:-4], analysis(y).abs()[4:-4]
    return float((a - b).norm() / a.norm())


@pytest.mark.parametrize("freq", [220.0, 1037.0, 5100.0])
def test_a_steady_tone_comes_back_as_that_tone(freq):
    t = np.arange(48000) / 24000
    x, y = rebuilt((0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32))
    assert consistency(x, y) < 0.02
    basis = np.stack([np.sin(2 * np.pi * freq * t), np.cos(2 * np.pi * freq * t)], 1)[2400:-2400]
    fit, *_ = np.linalg.lstsq(basis, y[2400:-2400].numpy(), rcond=None)
    share = np.sum((basis @ fit) ** 2) / np.sum(y[2400:-2400].numpy() ** 2)
    assert share > 0.999 and abs(np.hypot(*fit) - 0.3) < 0.01


def test_a_harmonic_signal_keeps_its_magnitudes_where_a_random_phase_does_not():
    from conftest import speech_like

    x, y = rebuilt(speech_like(2.0, f0=130.0))
    mag = analysis(x).abs()
    g = torch.Generator().manual_seed(0)
    noisy = synthesize(mag, torch.rand(mag.shape, generator=g, dtype=torch.float64) * 2 * np.pi)
    assert consistency(x, y) < 0.25 and consistency(x, noisy) > 2 * consistency(x, y)


def test_streamed_blocks_compute_the_offline_phases():
    g = np.random.default_rng(0)
    log_mag = np.cumsum(g.standard_normal((2, 5 * BLOCK, 241)), axis=-1) * 0.3
    offline = rtpghi(log_mag, HOP, N_FFT, BLOCK)
    state = PhaseState(2, 241, -11.5)
    parts = [rtpghi(log_mag[:, i: i + n], HOP, N_FFT, BLOCK, state)
             for i, n in ((0, BLOCK), (BLOCK, 3 * BLOCK), (4 * BLOCK, BLOCK))]
    assert np.array_equal(np.concatenate(parts, axis=1), offline)
    with pytest.raises(ValueError, match="multiple of the block"):
        rtpghi(log_mag[:, :5], HOP, N_FFT, BLOCK)


def test_the_walk_run_ahead_block_by_block_places_the_phases_of_the_whole():
    from codec.nn.phase import FLOOR_DB, place, walk, walk_ahead

    g = np.random.default_rng(1)
    log_mag = np.cumsum(g.standard_normal((2, 5 * BLOCK, 241)), axis=-1) * 0.3
    whole = rtpghi(log_mag, HOP, N_FFT, BLOCK)
    before = np.full((2, 241), -11.5)
    offset, origin = walk(log_mag, HOP, N_FFT, BLOCK, before)
    for beside in (False, True):  # in this thread, or in a worker two blocks at a time
        blocks = list(walk_ahead(log_mag, HOP, N_FFT, BLOCK, before, FLOOR_DB, 2, beside))
        assert len(blocks) == 5
        assert np.array_equal(np.concatenate([o for o, _ in blocks], 1), offset)
        assert np.array_equal(np.concatenate([k for _, k in blocks], 1), origin)
    # Each block starts from whatever phases the hop before it ends up with: here rtpghi's own.
    start, placed = np.zeros((2, 241)), []
    for o, k in blocks:
        placed.append(place(o, k, start))
        start = placed[-1][:, -1]
    centred = whole - np.pi * np.arange(241)
    assert np.abs(np.angle(np.exp(1j * (np.concatenate(placed, 1) - centred)))).max() < 1e-9
    # A different start moves each phase by the start's change at the bin its walk began from.
    shifted = place(blocks[0][0], blocks[0][1], np.full((2, 241), 0.5))
    assert np.abs(np.angle(np.exp(1j * (shifted - placed[0] - 0.5)))).max() < 1e-9


def test_refinement_brings_random_phases_towards_consistent_ones():
    from codec.nn.phase import refine
    from conftest import speech_like

    x = torch.from_numpy(speech_like(0.64, f0=150.0))
    mag = analysis(x).abs().float()
    g = torch.Generator().manual_seed(1)
    phase = torch.rand(mag.shape, generator=g) * 2 * np.pi
    tail, env = torch.zeros(1, N_FFT - HOP), torch.zeros(N_FFT - HOP)
    before = consistency(x, synthesize(mag, phase))
    after = consistency(x, synthesize(mag, refine(mag[None], phase[None], WINDOW, HOP, tail, env, 16)[0].angle()))
    assert after < 0.6 * before


def pulse_train(f0: float, seconds: float = 1.0, rate: int = 24000) -> np.ndarray:
    """Unit pulses every rate / f0 samples through a one-pole low-pass (a minimum-phase filter)."""
    x = np.zeros(int(seconds * rate))
    x[:: int(round(rate / f0))] = 1.0
    y = np.empty_like(x)
    acc = 0.0
    for i, v in enumerate(x):
        acc = 0.8 * acc + v
        y[i] = acc
    return y


def test_locked_harmonics_rebuild_a_filtered_pulse_train_up_to_a_delay():
    f0, rate = 150.0, 24000
    x = torch.from_numpy(pulse_train(f0, rate=rate))
    mag = analysis(x).abs()
    log_mag = torch.log(mag + 1e-5).numpy()[None]
    hops = log_mag.shape[1] // BLOCK * BLOCK
    log_mag, mag = log_mag[:, :hops], mag[:hops]
    noise = np.random.default_rng(0).uniform(0, 2 * np.pi, size=log_mag.shape)  # what locking must replace
    locked = lock_harmonics(noise, log_mag, np.full((1, hops), f0), np.ones_like(log_mag), HOP, N_FFT, rate,
                            PhaseState(1, N_FFT // 2 + 1, -11.5))
    y = synthesize(mag, torch.from_numpy(locked[0] + np.pi * np.arange(N_FFT // 2 + 1)))[N_FFT:-N_FFT].numpy()
    ref = x[N_FFT: N_FFT + len(y)].numpy()
    # The fundamental's phase starts anywhere: the pulses come back shifted by less than a period.
    best = max(float(np.dot(np.roll(y, lag), ref)) for lag in range(int(rate / f0)))
    assert best / np.linalg.norm(ref) / np.linalg.norm(y) > 0.95


def test_locked_harmonics_stream_as_offline():
    rng = np.random.default_rng(0)
    bins, hops = N_FFT // 2 + 1, 2 * BLOCK
    log_mag = rng.normal(size=(2, hops, bins))
    phase = rng.uniform(0, 2 * np.pi, size=(2, hops, bins))
    f0 = np.where(rng.uniform(size=(2, hops)) < 0.8, rng.uniform(80, 300, size=(2, hops)), 0.0)
    share = rng.uniform(size=(2, hops, bins))
    whole = lock_harmonics(phase, log_mag, f0, share, HOP, N_FFT, 24000, PhaseState(2, bins, -11.5))
    state = PhaseState(2, bins, -11.5)
    parts = [lock_harmonics(phase[:, s: s + BLOCK], log_mag[:, s: s + BLOCK], f0[:, s: s + BLOCK],
                            share[:, s: s + BLOCK], HOP, N_FFT, 24000, state) for s in (0, BLOCK)]
    streamed = np.concatenate(parts, axis=1)
    assert np.allclose(np.exp(1j * streamed), np.exp(1j * whole), atol=1e-9)
    unvoiced = (f0[..., None] == 0) | (share <= 0.5)
    assert np.array_equal(whole[np.broadcast_to(unvoiced, whole.shape)], phase[np.broadcast_to(unvoiced, phase.shape)])


def test_synthesis_locks_voiced_bins_only_when_asked():
    from codec.nn.networks import PhaseSynthesis
    rng = torch.Generator().manual_seed(0)
    bins, hops = N_FFT // 2 + 1, 2 * BLOCK
    log_mag = torch.randn(1, hops, bins, generator=rng)
    voicing = (torch.full((1, hops), 150.0), torch.ones(1, hops, bins))
    made = {locking: PhaseSynthesis(N_FFT, HOP, BLOCK, 24000, iterations=1, locking=locking).eval()
            for locking in (False, True)}
    plain = made[False](log_mag)
    assert torch.equal(made[False](log_mag, voicing=voicing), plain)  # voicing is ignored
    assert torch.equal(made[True](log_mag), plain)  # nothing to lock to
    assert (made[True](log_mag, voicing=voicing) - plain).abs().max() > 0.1 * plain.abs().max()


@pytest.mark.parametrize("locking", [False, True])
def test_the_synthesis_phasors_rebuild_the_synthesis_and_carry_a_gradient(locking):
    # The reference is the offline synthesis itself: its phasors times the magnitudes, overlap-added by
    # from_spectra, give the same audio; and the audio's gradient reaches the magnitudes.
    from codec.nn.networks import PhaseSynthesis
    rng = torch.Generator().manual_seed(1)
    bins, hops = N_FFT // 2 + 1, 3 * BLOCK
    log_mag = torch.randn(2, hops, bins, generator=rng) - 2.0
    voicing = (torch.full((2, hops), 130.0), torch.rand(2, hops, bins, generator=rng))
    synthesis = PhaseSynthesis(N_FFT, HOP, BLOCK, 24000, iterations=2, locking=locking).eval()
    offline = synthesis(log_mag, voicing=voicing)
    phasors = synthesis.phasors(log_mag, voicing=voicing)
    assert phasors.shape == log_mag.shape and torch.allclose(phasors.abs(), torch.ones(()), atol=1e-5)
    mag = torch.exp(log_mag).requires_grad_()
    rebuilt = synthesis.from_spectra(mag * phasors)
    assert rebuilt.shape == offline.shape
    assert (rebuilt - offline).abs().max() < 1e-5 * offline.abs().max()
    rebuilt.square().sum().backward()
    assert mag.grad.abs().max() > 0 and torch.isfinite(mag.grad).all()


def test_the_synthesis_walking_beside_its_loop_makes_the_audio_of_the_walk_in_line():
    # With two torch threads the walk runs in a worker, WALK_CHUNK frames at a time, and torch uses one
    # thread in the loop; with one, the walk runs in line. Both must make the same audio, and the caller's
    # thread setting must come back.
    from codec.nn.networks import PhaseSynthesis
    from codec.nn.phase import WALK_CHUNK
    from codec.threads import torch_threads

    rng = torch.Generator().manual_seed(5)
    hops = (2 * WALK_CHUNK + 1) * BLOCK  # three chunks, the last short
    log_mag = torch.randn(2, hops, N_FFT // 2 + 1, generator=rng).cumsum(-1) * 0.2 - 2.0
    synthesis = PhaseSynthesis(N_FFT, HOP, BLOCK, 24000, iterations=2).eval()
    with torch_threads(1):
        in_line = synthesis(log_mag)
    with torch_threads(2):
        beside = synthesis(log_mag)
        assert torch.get_num_threads() == 2
    assert torch.equal(beside, in_line)


def test_compiled_phase_code_is_cached_in_the_user_cache_not_the_package(tmp_path):
    """A cache beside the installed sources outlives `pip uninstall` and hides a later editable install."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    import codec.nn.phase as phase

    in_tree = Path(phase.__file__).parent / "__pycache__"
    def in_tree_index():
        return {p.name: p.stat().st_mtime_ns for p in in_tree.glob("phase.*.nbi")} if in_tree.is_dir() else {}

    before = in_tree_index()
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    env.update(XDG_CACHE_HOME=str(tmp_path), OMP_NUM_THREADS="1")
    script = ("import numpy as np; from codec.nn.phase import rtpghi; "
              "rtpghi(np.full((1, 16, 241), -3.0), 120, 480, 16)")
    subprocess.run([sys.executable, "-c", script], env=env, cwd=tmp_path, check=True)
    cached = {p.name for p in (tmp_path / "codec" / "numba").rglob("*.nbi")}
    assert any(name.startswith("phase._integrate") for name in cached), cached
    assert in_tree_index() == before


def climb_to_peak(s: np.ndarray, k: int) -> float:
    """The frequency of the peak bin k lies under, found the plain way: climb to it, then interpolate."""
    p = k
    while True:
        if p < len(s) - 1 and s[p + 1] > s[p]:
            p += 1
        elif p > 0 and s[p - 1] > s[p]:
            p -= 1
        else:
            break
    if 0 < p < len(s) - 1:
        a, c = np.exp(s[p - 1] - s[p]), np.exp(s[p + 1] - s[p])
        return p + 2 * (c - a) / (a + 2 + c)
    return float(p)


def test_peak_frequencies_match_a_climb_from_every_bin():
    from codec.nn.phase import _peak_frequencies

    rng = np.random.default_rng(0)
    for trial in range(200):
        s = rng.normal(size=rng.integers(1, 60))
        s = s.cumsum() if trial % 2 else np.round(s, 1)  # rounded: plateaus, where a climb stops
        out = np.empty(len(s))
        _peak_frequencies(s, out)
        np.testing.assert_allclose(out, [climb_to_peak(s, k) for k in range(len(s))], rtol=0, atol=1e-12)


def integrate_hop_with_one_heap(cur, before, last_phase, omega_prev, omega, dphi, audible) -> np.ndarray:
    """RTPGHI's hop as published: one max-heap (heapq) over the previous hop's loud bins and this hop's
    bins as they are reached."""
    import heapq

    bins = len(cur)
    out = np.empty(bins)
    done = cur <= audible
    out[done] = last_phase[done] + 0.5 * (omega_prev[done] + omega[done])
    heap = [(-before[k], k + bins) for k in range(bins) if before[k] > audible]
    heapq.heapify(heap)
    while not done.all():
        if not heap:
            k = int(np.argmax(np.where(done, -np.inf, cur)))
            out[k] = last_phase[k] + 0.5 * (omega_prev[k] + omega[k])
            done[k] = True
            heapq.heappush(heap, (-cur[k], k))
            continue
        _, item = heapq.heappop(heap)
        if item >= bins:
            k = item - bins
            if not done[k]:
                out[k] = last_phase[k] + 0.5 * (omega_prev[k] + omega[k])
                done[k] = True
                heapq.heappush(heap, (-cur[k], k))
        else:
            for j in (item - 1, item + 1):
                if 0 <= j < bins and not done[j]:
                    step = 0.5 * (dphi[item] + dphi[j])
                    out[j] = out[item] + (step if j > item else -step)
                    done[j] = True
                    heapq.heappush(heap, (-cur[j], j))
    return out


def walk_hop(cur, before, order, last_phase, omega_prev, omega, dphi, audible) -> tuple:
    """_integrate_hop on fresh buffers, the previous hop's bins their own origins -> (phases, origins)."""
    from codec.nn.phase import _integrate_hop

    bins = cur.shape[0]
    out, origin = np.empty(bins), np.empty(bins, dtype=np.int64)
    _integrate_hop(cur, before, order, last_phase, np.arange(bins), out, origin, omega_prev, omega, dphi,
                   np.zeros(bins, dtype=np.bool_), np.empty(bins), np.empty(bins, dtype=np.int64), audible)
    return out, origin


def test_the_merged_queue_integrates_a_hop_as_one_heap_does():
    rng = np.random.default_rng(1)
    bins = 241
    for trial in range(50):
        cur, before = rng.normal(size=bins).cumsum(), rng.normal(size=bins).cumsum()  # distinct levels: no ties
        if trial % 5 == 0:
            before[:] = -50.0  # an onset: nothing loud before
        last_phase, omega_prev, omega, dphi = (rng.uniform(-3, 3, bins) for _ in range(4))
        audible = np.quantile(cur, rng.uniform(0, 0.8))
        order = np.argsort(-before)
        order = order[before[order] > audible]  # the previous hop's bins above the floor, loudest first
        out, origin = walk_hop(cur, before, order, last_phase, omega_prev, omega, dphi, audible)
        expected = integrate_hop_with_one_heap(cur, before, last_phase, omega_prev, omega, dphi, audible)
        np.testing.assert_allclose(out, expected, rtol=0, atol=1e-12)
        # Each phase is its origin's previous phase plus steps that do not depend on it.
        change = rng.uniform(-3, 3, bins)
        moved, _ = walk_hop(cur, before, order, last_phase + change, omega_prev, omega, dphi, audible)
        np.testing.assert_allclose(moved - out, change[origin], rtol=0, atol=1e-12)
