"""The `.codes` file: a self-describing, checksummed container for codec indices.

Layout (all integers little-endian):

    magic      6 bytes   b"CODEC\\0"
    version    uint16    FORMAT_VERSION
    hlen       uint32    length of the header
    header     hlen      UTF-8 JSON (see `CodesHeader`)
    payload    ...       the indices, `bits` each, MSB first, in (channel, frame, codebook) order,
                         zero padded to a whole byte
    crc        uint32    CRC32 of everything before it

Packing and unpacking are one vectorized numpy pass each (no per-token Python loop).
"""
from __future__ import annotations

import dataclasses
import json
import math
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .audio import atomic_path
from .errors import CodesFileError

MAGIC = b"CODEC\0"
FORMAT_VERSION = 1
_PREFIX = struct.Struct("<6sHI")  # magic, version, header length
_CRC = struct.Struct("<I")


@dataclass
class CodesHeader:
    model: str  # the model's name
    checksum: str  # SHA-256 of the model's weights: decoding with other weights is refused
    sample_rate: int
    frame_rate: float
    n_codebooks: int
    codebook_size: int
    frames: int
    samples: int  # at sample_rate; decoding trims to exactly this many
    channels: int = 1
    meta: dict = field(default_factory=dict)  # free-form: source file name, ...

    @property
    def bits(self) -> int:
        return max(1, (self.codebook_size - 1).bit_length())

    @property
    def n_values(self) -> int:
        return self.channels * self.n_codebooks * self.frames

    @property
    def payload_bytes(self) -> int:
        return math.ceil(self.n_values * self.bits / 8)

    def check(self) -> None:
        """Raise ValueError if the fields contradict each other."""
        ints = ("sample_rate", "n_codebooks", "codebook_size", "frames", "samples", "channels")
        for name in ints:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
        if self.sample_rate == 0 or self.channels == 0 or self.n_codebooks == 0:
            raise ValueError("sample_rate, channels and n_codebooks must be positive")
        if not 2 <= self.codebook_size <= 2**16:
            raise ValueError(f"codebook_size must be in [2, 65536], got {self.codebook_size}")
        if self.samples > 0 and self.frame_rate > 0:
            frame_size = round(self.sample_rate / self.frame_rate)
            if self.frames != math.ceil(self.samples / frame_size):
                raise ValueError(f"{self.samples} samples need {math.ceil(self.samples / frame_size)} frames, "
                                 f"header says {self.frames}")


def header_for(model, codes, samples: int, meta: dict | None = None) -> CodesHeader:
    """The header for codes (B, n, F) that `model` made from `samples` samples per channel."""
    channels, n, frames = codes.shape
    cfg = model.config
    return CodesHeader(model=cfg.name, checksum=model.checksum, sample_rate=cfg.sample_rate,
                       frame_rate=cfg.frame_rate, n_codebooks=int(n), codebook_size=cfg.codebook_size,
                       frames=int(frames), samples=int(samples), channels=int(channels), meta=dict(meta or {}))


def pack(values: np.ndarray, bits: int) -> bytes:
    """Non-negative integers < 2**bits -> bytes, `bits` per value, MSB first."""
    flat = np.ascontiguousarray(values, dtype=">u2").reshape(-1)
    as_bits = np.unpackbits(flat.view(np.uint8)).reshape(-1, 16)[:, 16 - bits:]
    return np.packbits(as_bits.reshape(-1)).tobytes()


def unpack(data: bytes, bits: int, count: int) -> np.ndarray:
    """Inverse of `pack`: the first `count` values, as int64."""
    as_bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8))[: count * bits].reshape(count, bits)
    weights = (1 << np.arange(bits - 1, -1, -1)).astype(np.int64)
    return as_bits.astype(np.int64) @ weights


def encode_bytes(codes: np.ndarray, header: CodesHeader) -> bytes:
    """codes (channels, n_codebooks, frames) + header -> the file's bytes."""
    codes = np.asarray(codes)
    expected = (header.channels, header.n_codebooks, header.frames)
    if codes.shape != expected:
        raise ValueError(f"codes shape {codes.shape} does not match the header's {expected}")
    header.check()
    if codes.size and (codes.min() < 0 or codes.max() >= header.codebook_size):
        raise ValueError(f"codes must lie in [0, {header.codebook_size})")
    head = json.dumps(dataclasses.asdict(header), sort_keys=True).encode()
    body = _PREFIX.pack(MAGIC, FORMAT_VERSION, len(head)) + head
    body += pack(codes.transpose(0, 2, 1), header.bits)  # (channel, frame, codebook): frames stay whole
    return body + _CRC.pack(zlib.crc32(body))


def decode_bytes(data: bytes, name: str = "<bytes>") -> tuple[np.ndarray, CodesHeader]:
    """The file's bytes -> (codes (channels, n_codebooks, frames) int64, header). Every check names `name`."""
    def fail(problem: str):
        raise CodesFileError(f"{name}: {problem}")

    if data[: len(MAGIC)] != MAGIC[: len(data)] or not data:
        fail("not a .codes file (wrong magic bytes)")
    if len(data) < _PREFIX.size + _CRC.size:
        fail(f"truncated: {len(data)} bytes, shorter than the fixed header")
    _, version, head_len = _PREFIX.unpack_from(data)
    if version != FORMAT_VERSION:
        fail(f"unknown format version {version} (this reader knows version {FORMAT_VERSION}); "
             "upgrade codec or re-encode")
    crc_ok = zlib.crc32(data[:-_CRC.size]) == _CRC.unpack_from(data, len(data) - _CRC.size)[0]
    head_end = _PREFIX.size + head_len
    if head_end + _CRC.size > len(data):
        fail(f"truncated or damaged: the header claims {head_len} bytes, the file holds {len(data)} in all")
    try:
        fields = json.loads(data[_PREFIX.size: head_end].decode())
        header = CodesHeader(**fields)
        header.check()
    except (ValueError, TypeError, UnicodeDecodeError) as err:
        fail("damaged: CRC32 mismatch" if not crc_ok else f"invalid header ({err})")
    expected = head_end + header.payload_bytes + _CRC.size
    if len(data) < expected:
        fail(f"truncated: {len(data)} bytes, the header promises {expected}")
    if len(data) > expected:
        fail(f"damaged: {len(data) - expected} unexpected bytes after the payload")
    if not crc_ok:
        fail("damaged: CRC32 mismatch (a byte changed since it was written)")
    values = unpack(data[head_end: head_end + header.payload_bytes], header.bits, header.n_values)
    if values.size and values.max() >= header.codebook_size:
        fail(f"damaged: a code is >= codebook_size {header.codebook_size}")
    codes = values.reshape(header.channels, header.frames, header.n_codebooks).transpose(0, 2, 1)
    return np.ascontiguousarray(codes), header


def write_codes(path: str | Path, codes: np.ndarray, header: CodesHeader) -> None:
    """Write a codes file atomically: a failure leaves any earlier file at `path` untouched."""
    data = encode_bytes(codes, header)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def read_codes(path: str | Path, expect_checksum: str | None = None) -> tuple[np.ndarray, CodesHeader]:
    """Read and validate a codes file -> (codes (channels, n, frames) int64, header).

    With `expect_checksum` (the decoding model's), a file made by other weights is refused.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CodesFileError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise CodesFileError(f"{path}: is a folder, not a .codes file") from None
    except PermissionError:
        raise CodesFileError(f"{path}: permission denied") from None
    codes, header = decode_bytes(data, str(path))
    if expect_checksum is not None and header.checksum != expect_checksum:
        raise CodesFileError(f"{path}: made by model {header.model} ({header.checksum[:12]}), not by the model "
                             f"decoding it ({expect_checksum[:12]}): pass --model with the weights that encoded it")
    return codes, header
