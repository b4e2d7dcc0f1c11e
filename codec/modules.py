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
    """

    def __init__(self, dim: int, n_fft: int, hop: int):
        super().__init__()
        self.n_fft, self.hop = n_fft, hop
        self.proj = nn.Linear(dim, 2 * (n_fft // 2 + 1))
        self.register_buffer("window", sqrt_hann(n_fft), persistent=False)

    def frames(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H) -> time-domain synthesis frames (B, H, n_fft), before windowing."""
        log_mag, phase = self.proj(x.transpose(1, 2)).float().chunk(2, dim=-1)
        mag = torch.exp(log_mag.clamp(max=6.0))  # exp(6) ~ 400: caps a runaway logit without a NaN
        return torch.fft.irfft(torch.polar(mag, phase), n=self.n_fft, dim=-1)

    def initial_tail(self, batch: int, device) -> tuple[torch.Tensor, torch.Tensor]:
        """The overlap a virtual zero frame before the start leaves: no signal, its share of the envelope."""
        overlap = self.n_fft - self.hop
        return torch.zeros(batch, overlap, device=device), (self.window[self.hop:] ** 2).to(device)

    def forward(self, x: torch.Tensor, backend: str | None = None) -> torch.Tensor:
        frames = self.frames(x)
        if self.streaming:
            if self.stream_state is None:
                self.stream_state = self.initial_tail(frames.shape[0], frames.device)
            wav, tail, env = kernels.overlap_add_stream(frames, self.hop, self.window, *self.stream_state,
                                                        backend=backend)
            self.stream_state = (tail, env)
            return wav
        zero = frames.new_zeros(frames.shape[0], 1, self.n_fft)
        wav = kernels.overlap_add(torch.cat([zero, frames], dim=1), self.hop, self.window, backend=backend)
        return wav[:, self.hop: self.hop + frames.shape[1] * self.hop]


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
        self.head = ISTFTHead(hop_dim, cfg.n_fft, cfg.hop_length)

    def forward(self, latent: torch.Tensor, backend: str | None = None) -> torch.Tensor:
        """backend: the overlap-add kernel's (see codec.kernels); None follows CODEC_KERNELS."""
        x = self.frame_blocks(self.inp(latent))
        x = self.hop_blocks(self.up(self.norm1(x)))
        return self.head(self.norm2(x), backend=backend).unsqueeze(1)
