"""What `codec eval` needs from a codec (`SpeechCodec`), and the error of a codec that cannot run here."""
from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np


class CodecUnavailable(RuntimeError):
    """A codec cannot run here (a missing tool or package); the message says what to install."""


@runtime_checkable
class SpeechCodec(Protocol):
    """What `codec eval` needs from a codec. Audio is mono float in [-1, 1] at `sample_rate`.

    Optional, for discrete-token codecs: `tokens(data) -> int array [K, F]`, `codebook_size: int` and
    `frame_rate: float`; with them the report adds per-codebook entropy and codebook use.
    """

    name: str  # the spec it was made from, e.g. "opus:6"
    sample_rate: int  # the rate encode takes and decode returns

    def encode(self, wav: np.ndarray) -> bytes:
        """wav [T] float -> the bytes the codec would store or send (their size is the measured bitrate)."""

    def decode(self, data: bytes, length: int) -> np.ndarray:
        """bytes -> wav [T'] float; `length` is the input's T, a hint (T' may differ; the report aligns)."""

    def bitrate(self) -> float:
        """Nominal bit/s: what the codec is configured for."""
