"""Building blocks of the encoder and decoder: causal analysis front end, ConvNeXt blocks, ISTFT head."""
from __future__ import annotations

import torch
from torch import nn

from . import kernels
from .streaming import CausalConv1d, Streamable


def sqrt_hann(n: int) -> torch.Tensor:
    """Periodic sqrt-Hann: its square sums to exactly 1 at 50 % overlap, so synthesis needs no gain."""
    return torch.hann_window(n, periodic=True).sqrt()


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


class ISTFTHead(Streamable):
    """Vocos-style head: per hop, log magnitude and phase of an n_fft spectrum -> waveform by inverse FFT.

    x (B, C, H) -> wav (B, H * hop). Synthesis frame h covers samples [h * hop, h * hop + n_fft); overlap-add
    is normalized by the sqrt-Hann envelope, with a virtual zero frame before the start so the first hop
    has a full envelope. Streaming carries the overlap to the next call: no lookahead.

    phase="free": the phase of each hop is predicted outright (Vocos). phase="accumulate": the head predicts
    how far each bin's phase moves from one hop to the next beyond the advance of a sinusoid at the bin's
    centre (2 pi k hop / n_fft), and the phases are the running sum of those moves. A steady harmonic then
    needs a steady output, so trained on spectral losses alone the decoder makes voiced speech tonal; free
    phases have to flip odd bins every hop, which spectral losses never taught it (the output came out as
    shaped noise, without harmonics). Streaming also carries the last hop's phases.
    """

    def __init__(self, dim: int, n_fft: int, hop: int, phase: str = "free"):
        super().__init__()
        if phase not in ("free", "accumulate"):
            raise ValueError(f"phase must be 'free' or 'accumulate', got {phase!r}")
        self.n_fft, self.hop, self.accumulate = n_fft, hop, phase == "accumulate"
        bins = n_fft // 2 + 1
        self.proj = nn.Linear(dim, 2 * bins)
        self.register_buffer("window", sqrt_hann(n_fft), persistent=False)
        advance = 2 * torch.pi * torch.arange(bins, dtype=torch.float64) * hop / n_fft
        self.register_buffer("advance", torch.remainder(advance, 2 * torch.pi), persistent=False)

    def frames(self, x: torch.Tensor, phase0: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(B, C, H) -> (time-domain synthesis frames (B, H, n_fft) before windowing, last hop's phases
        (B, bins) or None). phase0: the phases of the hop before the first (zeros at the start)."""
        log_mag, phase = self.proj(x.transpose(1, 2)).float().chunk(2, dim=-1)
        mag = torch.exp(log_mag.clamp(max=6.0))  # exp(6) ~ 400: caps a runaway logit without a NaN
        last = None
        if self.accumulate:
            # float64 running sum, wrapped: hours of hops would otherwise lose the phase's fine digits.
            start = phase.new_zeros(phase.shape[0], phase.shape[-1], dtype=torch.float64) if phase0 is None else phase0
            total = start[:, None] + torch.cumsum(phase.double() + self.advance, dim=1)
            total = torch.remainder(total, 2 * torch.pi)
            last = total[:, -1].detach() if total.shape[1] else start
            phase = total.float()
        frames = torch.fft.irfft(torch.polar(mag, phase), n=self.n_fft, dim=-1)
        if self.accumulate:
            # The bins then stand for a steady signal seen through the analysis window: apply it, so that with
            # the synthesis window the overlap-add sums hann windows (flat), not sqrt-hann ones (a 100 Hz ripple).
            frames = frames * self.window
        return frames, last

    def initial_tail(self, batch: int, device) -> tuple[torch.Tensor, torch.Tensor]:
        """The overlap a virtual zero frame before the start leaves: no signal, its share of the envelope."""
        overlap = self.n_fft - self.hop
        return torch.zeros(batch, overlap, device=device), (self.window[self.hop:] ** 2).to(device)

    def forward(self, x: torch.Tensor, backend: str | None = None) -> torch.Tensor:
        if self.streaming:
            if self.stream_state is None:
                self.stream_state = (*self.initial_tail(x.shape[0], x.device), None)
            tail, env, phase0 = self.stream_state
            frames, last = self.frames(x, phase0)
            wav, tail, env = kernels.overlap_add_stream(frames, self.hop, self.window, tail, env, backend=backend)
            self.stream_state = (tail, env, last)
            return wav
        frames, _ = self.frames(x)
        zero = frames.new_zeros(frames.shape[0], 1, self.n_fft)
        wav = kernels.overlap_add(torch.cat([zero, frames], dim=1), self.hop, self.window, backend=backend)
        return wav[:, self.hop: self.hop + frames.shape[1] * self.hop]


class HarmonicHead(Streamable):
    """A bank of harmonic oscillators driven per hop: x (B, C, H) -> wav (B, H * hop).

    Per hop the head predicts f0 (50 to 800 Hz, log scale) and the log amplitude of each of n harmonics.
    Both glide linearly across the hop from the previous hop's values, and the phase is the running sum of
    f0 (float64, wrapped), so voiced speech comes out harmonic by construction: neither ISTFT head learned
    harmonics from spectral losses alone on a CPU's budget. Harmonics above 0.95 x Nyquist are silent. The
    phase follows f0 without a gradient (through sin it is a poor one): f0 learns from the input's pitch
    (`codec.pitch.yin_f0`, the trainer's `f0_weight`), read from `last_f0` after a forward pass. Streaming
    carries the phase and the last hop's f0 and amplitudes; the first hop glides from itself.
    """

    F0_RANGE = (50.0, 800.0)

    def __init__(self, dim: int, n_harmonics: int, hop: int, sample_rate: int):
        super().__init__()
        self.hop, self.sample_rate = hop, sample_rate
        self.proj = nn.Linear(dim, 1 + n_harmonics)
        with torch.no_grad():  # start quiet (exp(-7) ~ 1e-3 per harmonic): the ISTFT head keeps the output
            self.proj.weight.mul_(0.1)
            self.proj.bias.zero_()
            self.proj.bias[1:] = -7.0
        self.register_buffer("numbers", torch.arange(1, n_harmonics + 1, dtype=torch.float32), persistent=False)
        self.register_buffer("ramp", torch.arange(1, hop + 1, dtype=torch.float32) / hop, persistent=False)
        self.last_f0: torch.Tensor | None = None

    def controls(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, C, H) -> (f0 Hz (B, H), amplitudes (B, H, n))."""
        out = self.proj(x.transpose(1, 2)).float()
        low, high = self.F0_RANGE
        f0 = low * (high / low) ** torch.sigmoid(out[..., 0])
        return f0, torch.exp(out[..., 1:].clamp(max=2.0))  # exp(2) ~ 7.4: far above speech, never inf

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f0, amp = self.controls(x)
        self.last_f0 = f0
        batch, hops = f0.shape
        state = self.stream_state if self.streaming else None
        if state is None:
            state = (f0.new_zeros(batch, dtype=torch.float64), f0[:, 0].detach(), amp[:, 0])
        phase0, f0_before, amp_before = state
        f0_prev = torch.cat([f0_before[:, None], f0[:, :-1]], dim=1)
        amp_prev = torch.cat([amp_before[:, None], amp[:, :-1]], dim=1)
        # Harmonics that pass 0.95 x Nyquist anywhere in the hop are silent for the whole hop.
        audible = (self.numbers * torch.maximum(f0_prev, f0)[..., None] < 0.475 * self.sample_rate).float()
        f0_t = (f0_prev[..., None] + (f0 - f0_prev)[..., None] * self.ramp).detach()  # (B, H, hop)
        phase = phase0[:, None] + torch.cumsum(f0_t.reshape(batch, -1).double() * (2 * torch.pi / self.sample_rate), dim=1)
        phase = torch.remainder(phase, 2 * torch.pi)
        with torch.no_grad():  # the oscillators; gradients reach only the amplitudes
            waves = torch.sin(phase.float().reshape(batch, hops, self.hop, 1) * self.numbers)  # (B, H, hop, n)
        # Amplitudes glide linearly across the hop: (1 - r) (waves @ a_prev) + r (waves @ a), two matmuls
        # instead of a (B, T, n) tensor of gliding amplitudes.
        before = (waves @ (amp_prev * audible)[..., None])[..., 0]
        after = (waves @ (amp * audible)[..., None])[..., 0]
        wav = (before + (after - before) * self.ramp).reshape(batch, hops * self.hop)
        if self.streaming and hops:
            self.stream_state = (phase[:, -1].detach(), f0[:, -1].detach(), amp[:, -1].detach())
        return wav


class Decoder(nn.Module):
    """latent (B, latent_dim, F) -> wav (B, 1, F * frame_size)."""

    def __init__(self, cfg):
        super().__init__()
        frame_dim, hop_dim = cfg.decoder_dims
        self.inp = nn.Conv1d(cfg.latent_dim, frame_dim, 1)
        self.frame_blocks = convnext_stack(frame_dim, cfg.decoder_depths[0], cfg.kernel_size, cfg.mlp_ratio)
        self.norm1 = ChannelNorm(frame_dim)
        # kernel == stride: each frame expands into its own hops only, so upsampling is causal and stateless.
        self.up = nn.ConvTranspose1d(frame_dim, hop_dim, cfg.hops_per_frame, stride=cfg.hops_per_frame)
        self.hop_blocks = convnext_stack(hop_dim, cfg.decoder_depths[1], cfg.kernel_size, cfg.mlp_ratio)
        self.norm2 = ChannelNorm(hop_dim)
        self.head = ISTFTHead(hop_dim, cfg.n_fft, cfg.hop_length, cfg.head_phase)
        # Registered last, so a checkpoint without it keeps its parameter order (and its optimizer state).
        self.harmonic = HarmonicHead(hop_dim, cfg.harmonics, cfg.hop_length, cfg.sample_rate) if cfg.harmonics else None

    def forward(self, latent: torch.Tensor, backend: str | None = None) -> torch.Tensor:
        """backend: the overlap-add kernel's (see codec.kernels); None follows CODEC_KERNELS."""
        x = self.frame_blocks(self.inp(latent))
        x = self.norm2(self.hop_blocks(self.up(self.norm1(x))))
        wav = self.head(x, backend=backend)
        if self.harmonic is not None:
            wav = wav + self.harmonic(x)
        return wav.unsqueeze(1)
