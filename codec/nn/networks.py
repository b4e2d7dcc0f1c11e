"""Building blocks of the encoder and decoder: causal analysis front end, ConvNeXt blocks, source-filter
magnitude head, and phase-reconstructing synthesis."""
from __future__ import annotations

import math
from contextlib import contextmanager

import numpy as np
import torch
from torch import nn

from .. import kernels
from ..threads import torch_threads
from .comb import comb as harmonic_comb
from .phase import FLOOR_DB, FLOOR_LOG, PhaseState, WALK_CHUNK, harmonic_phases, place, refine, walk_ahead
from .stream_state import CausalConv1d, Streamable


class CausalSTFT(Streamable):
    """Analysis front end: hop h sees the window ending at the end of hop h, never later samples.

    wav (B, 1, T), T a multiple of hop -> features (B, 3 * (n_fft // 2 + 1), T // hop): log magnitude,
    and real and imaginary parts compressed to magnitude^0.3 (keeps phase, tames the dynamic range).
    """

    def __init__(self, n_fft: int, hop: int):
        super().__init__()
        self.n_fft, self.hop = n_fft, hop
        self.register_buffer("window", torch.hann_window(n_fft, periodic=True), persistent=False)

    @property
    def channels(self) -> int:
        return 3 * (self.n_fft // 2 + 1)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        x = wav[:, 0].float()
        context = self.n_fft - self.hop
        if self.streaming:
            past = self.stream_state if self.stream_state is not None else x.new_zeros(x.shape[0], context)
            x = torch.cat([past, x], dim=-1)
            self.stream_state = x[:, x.shape[-1] - context:]
        else:
            x = nn.functional.pad(x, (context, 0))
        frames = x.unfold(-1, self.n_fft, self.hop) * self.window  # (B, H, n_fft)
        spec = torch.fft.rfft(frames, dim=-1)
        mag = spec.abs()
        # 1e-5 floor: silence gives log(1e-5) rather than -inf; 0.3 power compresses like loudness does.
        compressed = spec * (mag.clamp_min(1e-5) ** -0.7)
        feats = torch.cat([torch.log(mag + 1e-5), compressed.real, compressed.imag], dim=-1)
        return feats.transpose(1, 2)


class ChannelNorm(nn.Module):
    """LayerNorm over channels at each time step (B, C, T): per step, so it stays causal."""

    def __init__(self, dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim, eps=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x.transpose(1, 2)).transpose(1, 2)


class ConvNeXtBlock(nn.Module):
    """Causal ConvNeXt block (B, C, T) -> (B, C, T): depthwise causal conv, norm, pointwise MLP, residual."""

    def __init__(self, dim: int, kernel_size: int, mlp_ratio: int, dilation: int = 1):
        super().__init__()
        self.dwconv = CausalConv1d(dim, dim, kernel_size, dilation=dilation, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pw1 = nn.Linear(dim, mlp_ratio * dim)
        self.act = nn.GELU()
        self.pw2 = nn.Linear(mlp_ratio * dim, dim)
        # Small layer scale: each block starts near identity, which keeps deep stacks trainable.
        self.gamma = nn.Parameter(torch.full((dim,), 1e-2))

    @torch.no_grad()
    def start_as_identity(self, scale: float = 0.1) -> None:
        """Output = input, yet trainable: the branch's last layer is zeroed and its scale left large enough
        for that layer to learn. A random branch added to a trained network perturbs it, and training then
        shrinks the block's scale to nothing, where its gradients vanish too."""
        self.pw2.weight.zero_()
        self.pw2.bias.zero_()
        self.gamma.fill_(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.dwconv(x).transpose(1, 2)
        y = self.pw2(self.act(self.pw1(self.norm(y))))
        return x + (self.gamma * y).transpose(1, 2)


def convnext_stack(dim: int, depth: int, kernel_size: int, mlp_ratio: int) -> nn.Sequential:
    # Dilations 1, 2, 4, ... widen the causal context cheaply.
    return nn.Sequential(*[ConvNeXtBlock(dim, kernel_size, mlp_ratio, dilation=2 ** (i % 3)) for i in range(depth)])


class Encoder(nn.Module):
    """wav (B, 1, T), T a multiple of frame_size -> latent (B, latent_dim, T // frame_size)."""

    def __init__(self, cfg):
        super().__init__()
        hop_dim, frame_dim = cfg.encoder_dims
        self.stft = CausalSTFT(cfg.n_fft, cfg.hop_length)
        self.proj = nn.Conv1d(self.stft.channels, hop_dim, 1)
        self.hop_blocks = convnext_stack(hop_dim, cfg.encoder_depths[0], cfg.kernel_size, cfg.mlp_ratio)
        self.norm1 = ChannelNorm(hop_dim)
        self.down = CausalConv1d(hop_dim, frame_dim, cfg.hops_per_frame, stride=cfg.hops_per_frame)
        self.frame_blocks = convnext_stack(frame_dim, cfg.encoder_depths[1], cfg.kernel_size, cfg.mlp_ratio)
        self.norm2 = ChannelNorm(frame_dim)
        self.out = nn.Conv1d(frame_dim, cfg.latent_dim, 1)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        x = self.hop_blocks(self.proj(self.stft(wav)))
        x = self.frame_blocks(self.down(self.norm1(x)))
        return self.out(self.norm2(x))


LOG_MAG_CEILING = 12.0  # e^12: far above any real spectrum's magnitude, far below float overflow


def linear_magnitudes(log_mag: torch.Tensor) -> torch.Tensor:
    """Linear magnitudes of predicted natural-log magnitudes, capped so that an untrained network's outliers
    cannot overflow exp. The losses and the synthesis share this cap, so they score what is heard."""
    return torch.exp(log_mag.clamp(max=LOG_MAG_CEILING))


def mel_points(n: int, top_hz: float) -> torch.Tensor:
    """n frequencies (Hz) evenly spaced on the mel scale from 0 to top_hz."""
    top = 2595.0 * math.log10(1.0 + top_hz / 700.0)
    return 700.0 * (10.0 ** (torch.linspace(0.0, top, n) / 2595.0) - 1.0)


def interpolation_matrix(points: torch.Tensor, freqs: torch.Tensor) -> torch.Tensor:
    """(P, K): values at `points` (Hz, increasing) @ matrix = their linear interpolation at `freqs`."""
    right = torch.searchsorted(points, freqs).clamp(1, len(points) - 1)
    left = right - 1
    frac = ((freqs - points[left]) / (points[right] - points[left])).clamp(0.0, 1.0)
    matrix = torch.zeros(len(points), len(freqs))
    cols = torch.arange(len(freqs))
    matrix[left, cols] += 1.0 - frac
    matrix[right, cols] += frac
    return matrix


class SourceFilterHead(nn.Module):
    """Log STFT magnitudes as a source-filter product: x (B, C, H), f0 (B, H * sub) Hz -> (B, H * sub, bins),
    `sub` synthesis hops from each step of x.

    log|S| = envelope + log(share * comb(f0) + (1 - share)), per bin. The network gives a smooth envelope
    (`envelope_points` values on the mel scale, interpolated to the bins) and the harmonic share of
    `voicing_bands` bands; the comb is computed from the coded f0: the window's main lobe at every
    harmonic, 1 at a harmonic's peak. Harmonics are built, not learned: a regression over uncertain
    harmonic positions averages them into a smooth envelope, which no phase can make sound voiced.
    """

    def __init__(self, dim: int, sub: int, n_fft: int, sample_rate: int, envelope_points: int, voicing_bands: int):
        super().__init__()
        self.n_fft, self.sample_rate, self.sub = n_fft, sample_rate, sub
        self.envelope_points = envelope_points
        self.proj = nn.Linear(dim, sub * (envelope_points + voicing_bands))
        freqs = torch.arange(n_fft // 2 + 1) * sample_rate / n_fft
        nyquist = sample_rate / 2
        self.register_buffer("envelope_points_hz", mel_points(envelope_points, nyquist), persistent=False)
        self.register_buffer("envelope_basis", interpolation_matrix(self.envelope_points_hz, freqs), persistent=False)
        self.register_buffer("band_basis", interpolation_matrix(mel_points(voicing_bands, nyquist), freqs),
                             persistent=False)

    @torch.no_grad()
    def comb(self, f0: torch.Tensor) -> torch.Tensor:
        """f0 (B, H) Hz, 0 = unvoiced -> (B, H, bins): the window's main lobe at the nearest harmonics
        (codec.nn.comb)."""
        return harmonic_comb(f0, self.n_fft, self.sample_rate)

    def parameters_of(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, C, H) -> per synthesis hop, the envelope's log values at its mel points (B, H * sub, P) and
        the harmonic share's logits per band (B, H * sub, V)."""
        out = self.proj(x.transpose(1, 2)).float()
        out = out.reshape(out.shape[0], -1, out.shape[-1] // self.sub)  # (B, H * sub, P + V)
        return out[..., : self.envelope_points], out[..., self.envelope_points:]

    def render(self, envelope: torch.Tensor, share_logits: torch.Tensor, f0: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """The head's parameters (parameters_of) and f0 (B, H) -> (log magnitudes, harmonic share), each
        (B, H, bins)."""
        share = torch.sigmoid(share_logits @ self.band_basis)
        # 1e-3 keeps the noise floor at least -60 dB under the envelope: log(0) between harmonics has no gradient.
        mix = share * self.comb(f0) + (1.0 - share) * (1.0 - 1e-3) + 1e-3
        return envelope @ self.envelope_basis + torch.log(mix), share

    def forward(self, x: torch.Tensor, f0: torch.Tensor) -> torch.Tensor:
        """-> log magnitudes (B, H * sub, bins)."""
        return self.render(*self.parameters_of(x), f0)[0]


def harmonic_contrast(log_mag: torch.Tensor, f0: torch.Tensor, factor: float, bin_hz: float) -> torch.Tensor:
    """A postfilter: log_mag (B, H, bins), f0 (B, H) Hz (0 unvoiced) -> each voiced hop's log magnitudes
    spread `factor` times as far from their mean over one harmonic spacing (centred on the bin), so that
    the harmonics stand out of the valleys between them; unvoiced hops as they are. Per hop, so a stream
    filters as an offline call does."""
    if factor == 1.0:
        return log_mag
    bins = log_mag.shape[-1]
    sums = nn.functional.pad(log_mag.cumsum(-1), (1, 0))
    half = (f0 / bin_hz / 2).round().clamp(1, bins).long()[..., None]  # half a harmonic spacing, in bins
    k = torch.arange(bins, device=log_mag.device)
    low, high = (k - half).clamp(0, bins), (k + half + 1).clamp(0, bins)
    mean = (sums.gather(-1, high) - sums.gather(-1, low)) / (high - low)
    return torch.where((f0 > 0)[..., None], mean + factor * (log_mag - mean), log_mag)


class PhaseSynthesis(Streamable):
    """Log magnitudes (B, H, n_fft // 2 + 1) -> wav (B, H * hop): computed phases, inverse FFT, overlap-add.

    Block by block (a codec frame's hops): RTPGHI phases from the previous hop's, refined by `iterations`
    Griffin-Lim passes with the earlier output fixed (codec.nn.phase), then overlap-added. Synthesis frame h
    covers samples [(h + 1) hop - n_fft, (h + 1) hop), the window the encoder's causal analysis of hop h
    ends with; so a sample is final once the n_fft / hop - 1 hops after it are made: the output lags the
    frames by n_fft - hop samples (the synthesis delay). Offline, the result is realigned to the input and
    its last n_fft - hop samples are closed with silent frames (the full window envelope, no division by a
    vanishing one). Offline runs the same block loop a stream does, so the two agree exactly; streaming
    emits what is final, and `flush` closes it.
    """

    def __init__(self, n_fft: int, hop: int, block: int, sample_rate: int, iterations: int = 0,
                 locking: bool = False):
        super().__init__()
        self.n_fft, self.hop, self.block, self.iterations = n_fft, hop, block, iterations
        self.locking = locking  # whether `voicing`, when given, locks the voiced bins to their harmonics
        self.sample_rate = sample_rate
        self.floor_db = FLOOR_DB  # RTPGHI's heap takes the bins within this of their hop's loudest
        self.register_buffer("window", torch.hann_window(n_fft, periodic=True), persistent=False)
        # rtpghi's phases are window-centred; a frame's FFT sees the centre n_fft / 2 samples in: pi k apart.
        self.register_buffer("centre_shift", torch.pi * torch.arange(n_fft // 2 + 1), persistent=False)

    @property
    def delay(self) -> int:
        return self.n_fft - self.hop

    def analysis(self, wav: torch.Tensor) -> torch.Tensor:
        """wav (B, 1, T) -> complex STFT (B, T // hop, bins) in this synthesis's framing: hop h's window ends
        with it."""
        x = nn.functional.pad(wav[:, 0].float(), (self.delay, 0))
        return torch.fft.rfft(x.unfold(-1, self.n_fft, self.hop) * self.window, dim=-1)

    def start(self, batch: int, bins: int, device) -> list:
        """A fresh state: [phases of the hop before, overlap tail, its envelope, samples still to skip]."""
        return [PhaseState(batch, bins, FLOOR_LOG), torch.zeros(batch, self.delay, device=device),
                torch.zeros(self.delay, device=device), self.delay]

    def run(self, log_mag: torch.Tensor, state: list, backend: str | None = None, voicing: tuple | None = None
            ) -> torch.Tensor:
        """(B, H, bins), H a multiple of the block -> the H * hop samples made final; `state` is updated.
        voicing: (f0 (B, H) Hz, harmonic share (B, H, bins)) locks the voiced bins to their harmonics if
        `locking` is set, and is ignored if not."""
        with self._cores(log_mag.shape[1]) as beside:
            out = [wav for _, wav in self._blocks(log_mag, state, backend, voicing, beside)]
        return torch.cat(out, dim=-1) if out else log_mag.new_zeros(log_mag.shape[0], 0)

    @torch.no_grad()
    def phasors(self, log_mag: torch.Tensor, voicing: tuple | None = None) -> torch.Tensor:
        """(B, H, bins), H a multiple of the block -> the unit phasors (B, H, bins) an offline call synthesizes
        these magnitudes with (0 where a magnitude is 0): `from_spectra(exp(log_mag) * phasors)` is the
        offline synthesis, differentiable in the magnitudes."""
        state = self.start(log_mag.shape[0], log_mag.shape[-1], log_mag.device)
        with self._cores(log_mag.shape[1]) as beside:
            spectra = [spectra.sgn() for spectra, _ in self._blocks(log_mag, state, None, voicing, beside)]
        return torch.cat(spectra, dim=1) if spectra else torch.zeros_like(log_mag, dtype=torch.complex64)

    def from_spectra(self, spectra: torch.Tensor) -> torch.Tensor:
        """Complex spectra (B, H, bins) in this framing -> audio (B, H * hop), aligned as an offline call
        aligns it (the last `delay` samples closed with silent frames). Differentiable: plain torch."""
        frames = torch.fft.irfft(spectra, n=self.n_fft)
        silent = frames.new_zeros(frames.shape[0], self.delay // self.hop, self.n_fft)
        wav = kernels.overlap_add(torch.cat([frames, silent], 1), self.hop, self.window, backend="reference")
        return wav[:, self.delay: self.delay + spectra.shape[1] * self.hop]

    @contextmanager
    def _cores(self, hops: int):
        """Yields whether the phase walk of `hops` hops runs beside the block loop: where torch may use
        several threads and the walk has more than one chunk. The loop's torch operations are too small to
        gain from a second core, so then the walk takes the second and torch one: torch's idle threads
        would spin on the walk's core (docs/performance.md)."""
        beside = torch.get_num_threads() > 1 and hops > WALK_CHUNK * self.block
        with torch_threads(1 if beside else None):
            yield beside

    def _blocks(self, log_mag: torch.Tensor, state: list, backend: str | None, voicing: tuple | None,
                beside: bool):
        """Block by block: (the block's complex spectra (B, block, bins), the samples it made final). beside:
        the walk runs in a worker thread, ahead of the loop."""
        voicing = voicing if self.locking else None
        log_mag = log_mag.float()
        # What no block's phases depend on is computed for all blocks at once: the loop is the cost.
        log_np = log_mag.detach().cpu().double().numpy()
        mag = linear_magnitudes(log_mag)
        if voicing is not None:
            f0, share = (v.detach().cpu().double().numpy() for v in voicing)
            locked, voiced = harmonic_phases(log_np, f0, share, self.hop, self.n_fft, self.sample_rate, state[0],
                                             self.block)
        # The walk over the magnitudes needs nothing of the refined phases, so it can run ahead.
        steps = walk_ahead(log_np, self.hop, self.n_fft, self.block, state[0].log_mag.copy(), self.floor_db, WALK_CHUNK,
                           beside)
        if log_mag.shape[1]:
            state[0].log_mag[:] = log_np[:, -1]
        for start, (offset, origin) in zip(range(0, log_mag.shape[1], self.block), steps):
            hops = slice(start, start + self.block)
            phase = place(offset, origin, state[0].phase)
            state[0].phase[:] = phase[:, -1]
            if voicing is not None:
                phase = np.where(voiced[:, hops], locked[:, hops], phase)
                state[0].phase[:] = phase[:, -1]
            phase = torch.from_numpy(phase).to(log_mag.device, torch.float32) + self.centre_shift
            if self.iterations:
                spectra = refine(mag[:, hops], phase, self.window, self.hop, state[1], state[2], self.iterations)
                state[0].phase[:] = (spectra[:, -1].angle() - self.centre_shift).double().cpu().numpy()
            else:
                spectra = torch.polar(mag[:, hops], phase)
            frames = torch.fft.irfft(spectra, n=self.n_fft, dim=-1)
            wav, state[1], state[2] = kernels.overlap_add_stream(frames, self.hop, self.window, state[1], state[2],
                                                                 backend=backend)
            yield spectra, wav

    def close(self, state: list, backend: str | None = None) -> torch.Tensor:
        """The last `delay` samples, closed with silent frames."""
        silent = torch.zeros(state[1].shape[0], self.delay // self.hop, self.n_fft, device=state[1].device)
        wav, _, _ = kernels.overlap_add_stream(silent, self.hop, self.window, state[1], state[2], backend=backend)
        return wav

    def _emit(self, wav: torch.Tensor, state: list) -> torch.Tensor:
        skip = min(state[3], wav.shape[-1])  # the first delay samples come before the input's start
        state[3] -= skip
        return wav[:, skip:]

    def forward(self, log_mag: torch.Tensor, backend: str | None = None, voicing: tuple | None = None
                ) -> torch.Tensor:
        if self.streaming:
            if self.stream_state is None:
                self.stream_state = self.start(log_mag.shape[0], log_mag.shape[-1], log_mag.device)
            return self._emit(self.run(log_mag, self.stream_state, backend, voicing), self.stream_state)
        state = self.start(log_mag.shape[0], log_mag.shape[-1], log_mag.device)
        wav = self._emit(self.run(log_mag, state, backend, voicing), state)
        return torch.cat([wav, self._emit(self.close(state, backend), state)], dim=-1)

    def flush(self, batch: int, backend: str | None = None) -> torch.Tensor:
        """Streaming: the last `delay` samples (batch, delay); the stream's synthesis ends. (batch, 0) if
        nothing was synthesized."""
        state, self.stream_state = self.stream_state, None
        if state is None:
            return self.window.new_zeros(batch, 0)
        return self._emit(self.close(state, backend), state)


class Decoder(nn.Module):
    """latent (B, latent_dim, F), f0 (B, F * hops) Hz -> log STFT magnitudes (B, F * hops, synthesis_fft // 2 + 1),
    hops = frame_size // synthesis_hop.

    The network runs at the analysis hop (8 steps a frame) and each step makes `sub` = hop_length //
    synthesis_hop synthesis hops: half the cost of running at the synthesis hop. The pitch of those sub-hops
    enters beside the upsampled latent."""

    def __init__(self, cfg):
        super().__init__()
        frame_dim, hop_dim = cfg.decoder_dims
        self.sub = cfg.hop_length // cfg.synthesis_hop
        self.inp = nn.Conv1d(cfg.latent_dim, frame_dim, 1)
        self.frame_blocks = convnext_stack(frame_dim, cfg.decoder_depths[0], cfg.kernel_size, cfg.mlp_ratio)
        self.norm1 = ChannelNorm(frame_dim)
        # kernel == stride: each frame expands into its own hops only, so upsampling is causal and stateless.
        self.up = nn.ConvTranspose1d(frame_dim, hop_dim, cfg.hops_per_frame, stride=cfg.hops_per_frame)
        self.pitch = nn.Conv1d(2 * self.sub, hop_dim, 1)
        self.hop_blocks = convnext_stack(hop_dim, cfg.decoder_depths[1], cfg.kernel_size, cfg.mlp_ratio)
        self.norm2 = ChannelNorm(hop_dim)
        self.head = SourceFilterHead(hop_dim, self.sub, cfg.synthesis_fft, cfg.sample_rate, cfg.envelope_points,
                                     cfg.voicing_bands)

    def pitch_features(self, f0: torch.Tensor) -> torch.Tensor:
        """f0 (B, H * sub) Hz -> (B, 2 * sub, H): per sub-hop, a voiced flag and log2 f0 centred on ~180 Hz."""
        voiced = (f0 > 0).float()
        feats = torch.stack([voiced, (torch.log2(f0.clamp_min(1.0)) - 7.5) * voiced], dim=1)  # (B, 2, H * sub)
        batch, _, hops = feats.shape
        return feats.reshape(batch, 2, hops // self.sub, self.sub).transpose(2, 3).reshape(batch, 2 * self.sub, -1)

    def features(self, latent: torch.Tensor, f0: torch.Tensor) -> torch.Tensor:
        """latent (B, D, F), f0 (B, F * hops) -> the head's input (B, hop_dim, F * hops_per_frame)."""
        x = self.frame_blocks(self.inp(latent))
        x = self.up(self.norm1(x)) + self.pitch(self.pitch_features(f0).to(x.dtype))
        return self.norm2(self.hop_blocks(x))

    def parameters_of(self, latent: torch.Tensor, f0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """latent (B, D, F), f0 -> the head's parameters (SourceFilterHead.parameters_of), for render."""
        return self.head.parameters_of(self.features(latent, f0))

    def forward(self, latent: torch.Tensor, f0: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(latent, f0), f0)
