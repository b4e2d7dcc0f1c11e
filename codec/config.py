"""The model's hyper-parameters, stored as JSON beside the weights."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class CodecConfig:
    """Everything that fixes the shape of a `Codec`. Frame arithmetic: frame_size = hop_length * 8."""

    name: str = "codec-24khz"
    sample_rate: int = 24000
    frame_size: int = 1920  # samples per codec frame: 80 ms, 12.5 frames/s
    hop_length: int = 240  # analysis and synthesis hop: 10 ms
    n_fft: int = 480  # analysis and synthesis window
    n_codebooks: int = 37
    codebook_size: int = 1024
    codebook_dim: int = 8  # factorized lookup space (DAC): keeps codebooks in use
    latent_dim: int = 256
    encoder_dims: tuple[int, int] = (192, 384)  # at the hop rate, at the frame rate
    encoder_depths: tuple[int, int] = (2, 3)
    decoder_dims: tuple[int, int] = (384, 256)  # at the frame rate, at the hop rate
    decoder_depths: tuple[int, int] = (3, 4)
    kernel_size: int = 7
    mlp_ratio: int = 3
    head_phase: str = "free"  # "accumulate": phases are a running sum of predicted moves (codec.modules.ISTFTHead)
    harmonics: int = 0  # > 0: a harmonic oscillator bank of that many harmonics beside the ISTFT head
    lookahead: int = 0  # samples of future input any output depends on, beyond the current frame
    training: dict = field(default_factory=dict)  # how the weights were made: shown by `codec info`

    def __post_init__(self):
        self.encoder_dims = tuple(self.encoder_dims)
        self.encoder_depths = tuple(self.encoder_depths)
        self.decoder_dims = tuple(self.decoder_dims)
        self.decoder_depths = tuple(self.decoder_depths)
        if self.frame_size % self.hop_length:
            raise ValueError(f"frame_size {self.frame_size} is not a multiple of hop_length {self.hop_length}")
        if not self.hop_length <= self.n_fft <= 2 * self.hop_length:
            raise ValueError("n_fft must lie in [hop_length, 2 * hop_length]: one frame of overlap is carried")
        if self.codebook_size > 2**16:
            raise ValueError("codebook_size above 65536 does not fit the codes file")

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.frame_size

    @property
    def hops_per_frame(self) -> int:
        return self.frame_size // self.hop_length

    @property
    def bits_per_code(self) -> int:
        return (self.codebook_size - 1).bit_length()

    def bitrate(self, n_codebooks: int | None = None) -> float:
        """Nominal bit/s at `n_codebooks` stages (all by default)."""
        return (n_codebooks or self.n_codebooks) * self.bits_per_code * self.frame_rate

    @property
    def latency_ms(self) -> float:
        """Algorithmic latency: a whole frame must arrive before it is coded, plus any lookahead."""
        return 1000.0 * (self.frame_size + self.lookahead) / self.sample_rate

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "CodecConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown config keys: {', '.join(unknown)}")
        return cls(**data)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> "CodecConfig":
        return cls.from_dict(json.loads(Path(path).read_text()))
