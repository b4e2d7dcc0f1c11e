"""The model's hyper-parameters, stored as JSON beside the weights."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path


WEIGHTS_DTYPES = ("float32", "float16")
PITCH_CODEBOOKS = 2  # code slots 0 and 1 carry the pitch (codec.nn.pitch.PitchCoder); the rest the latent


@dataclass
class CodecConfig:
    """Everything that fixes the shape of a `Codec`. Frame arithmetic: frame_size = hop_length * 8."""

    name: str = "codec-24khz"
    sample_rate: int = 24000
    frame_size: int = 1920  # samples per codec frame: 80 ms, 12.5 frames/s
    hop_length: int = 240  # the encoder's analysis hop (10 ms) and the pitch estimate's
    n_fft: int = 480  # the encoder's analysis window
    synthesis_hop: int = 120  # the decoder's STFT hop: 83 % overlap, enough redundancy for computed phases
    synthesis_fft: int = 720  # the decoder's STFT window (hann): 30 ms resolves the harmonics of low voices
    phase_iterations: int = 4  # Griffin-Lim passes per codec frame after RTPGHI (codec.nn.phase.refine)
    # Voiced bins take their harmonic's phase (codec.nn.phase.harmonic_phases) instead of RTPGHI's: it helps a
    # 480-sample window, whose harmonics merge in low voices, and costs a 720-sample one (docs/architecture.md).
    harmonic_locking: bool = False
    # Decoding only: voiced hops' log magnitudes spread about their mean over one harmonic spacing by this
    # factor (1: as decoded), deepening the valleys between harmonics that regression leaves shallow.
    harmonic_contrast: float = 1.0
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
    envelope_points: int = 64  # the spectral envelope's resolution (mel-spaced points; nn.networks.SourceFilterHead)
    voicing_bands: int = 16  # bands of the harmonic-to-noise share
    lookahead: int = 0  # samples of future input any output depends on, beyond the current frame
    # How floating-point weights are stored (float32 or float16); they are always computed with in float32.
    weights_dtype: str = "float32"
    training: dict = field(default_factory=dict)  # how the weights were made: shown by `codec info`

    def __post_init__(self):
        self.encoder_dims = tuple(self.encoder_dims)
        self.encoder_depths = tuple(self.encoder_depths)
        self.decoder_dims = tuple(self.decoder_dims)
        self.decoder_depths = tuple(self.decoder_depths)
        if self.frame_size % self.hop_length:
            raise ValueError(f"frame_size {self.frame_size} is not a multiple of hop_length {self.hop_length}")
        if self.frame_size % self.synthesis_hop or self.synthesis_fft % self.synthesis_hop:
            raise ValueError(f"synthesis_hop {self.synthesis_hop} must divide frame_size and synthesis_fft")
        if self.n_codebooks <= PITCH_CODEBOOKS:
            raise ValueError(f"n_codebooks must exceed the {PITCH_CODEBOOKS} pitch codebooks")
        if self.codebook_size > 2**16:
            raise ValueError("codebook_size above 65536 does not fit the codes file")
        if self.weights_dtype not in WEIGHTS_DTYPES:
            raise ValueError(f"weights_dtype must be one of {', '.join(WEIGHTS_DTYPES)}, got {self.weights_dtype!r}")

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
    def synthesis_delay(self) -> int:
        """Samples a decoded sample waits for the synthesis windows that overlap it (n_fft - hop)."""
        return self.synthesis_fft - self.synthesis_hop

    @property
    def latency_ms(self) -> float:
        """Algorithmic latency: a whole frame must arrive before it is coded, plus any lookahead, plus the
        synthesis delay."""
        return 1000.0 * (self.frame_size + self.lookahead + self.synthesis_delay) / self.sample_rate

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
