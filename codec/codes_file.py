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
import re
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

# The header's schema beyond the field types. The bounds are far beyond any real recording; they exist so
# that a crafted file cannot push the arithmetic below into floats that overflow or divide by zero.
_INT_RANGES = {
    "sample_rate": (1, 2**31 - 1),
    "n_codebooks": (1, 2**16),
    "codebook_size": (2, 2**16),
    "frames": (0, 2**62),
    "samples": (0, 2**62),
    "channels": (1, 1024),  # libsndfile's limit: more could not be decoded to a file
}
_MAX_FRAME_SIZE = 2**31
_SHA256 = re.compile(r"[0-9a-f]{64}")


def _show(value) -> str:
    """A field's value for an error message: short, one line, and safe for any JSON value."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 64:
        return f"an integer of {value.bit_length()} bits"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


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
        return -(-self.n_values * self.bits // 8)  # integers throughout: exact for any count

    @property
    def frame_size(self) -> int:
        return round(self.sample_rate / self.frame_rate)

    def check(self) -> None:
        """Raise ValueError naming the first field of the wrong type, out of range, or contradicting the
        others. Types and ranges are checked before any arithmetic uses them."""
        if not isinstance(self.model, str) or not self.model.isprintable() or not 0 < len(self.model) <= 256:
            raise ValueError(f"model must be a name of 1 to 256 printable characters, got {_show(self.model)}")
        if not isinstance(self.checksum, str) or not _SHA256.fullmatch(self.checksum):
            raise ValueError(f"checksum must be 64 lowercase hex digits (SHA-256), got {_show(self.checksum)}")
        if not isinstance(self.meta, dict):
            raise ValueError(f"meta must be a JSON object, got {_show(self.meta)}")
        for name, (low, high) in _INT_RANGES.items():
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
                raise ValueError(f"{name} must be an integer in [{low}, {high}], got {_show(value)}")
        rate = self.frame_rate
        # the range test also refuses NaN and infinities, and compares integers of any size exactly
        if (not isinstance(rate, (int, float)) or isinstance(rate, bool)
                or not self.sample_rate / _MAX_FRAME_SIZE <= rate <= self.sample_rate):
            raise ValueError(f"frame_rate must be a number in [sample_rate / {_MAX_FRAME_SIZE}, sample_rate], "
                             f"got {_show(rate)}")
        if abs(self.frame_size * rate - self.sample_rate) > 1e-6 * self.sample_rate:
            raise ValueError(f"sample_rate / frame_rate must be a whole number of samples per frame, "
                             f"got {self.sample_rate} / {rate}")
        need = -(-self.samples // self.frame_size)
        if self.frames != need:
            raise ValueError(f"{self.samples} samples need {need} frames, header says {self.frames}")


_FIELDS = {f.name for f in dataclasses.fields(CodesHeader)}
_REQUIRED = {f.name for f in dataclasses.fields(CodesHeader)
             if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}


def _no_constant(name: str):
    raise ValueError(f"{name} is not a number a header may hold")


def parse_header(raw: bytes) -> CodesHeader:
    """The header's bytes -> CodesHeader, checked against the schema. Raises ValueError saying what is wrong,
    whatever the bytes are."""
    try:
        fields = json.loads(raw.decode("utf-8"), parse_constant=_no_constant)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None
    if not isinstance(fields, dict):
        raise ValueError(f"not a JSON object but {type(fields).__name__}")
    if fields.keys() - _FIELDS:
        raise ValueError(f"unknown field {_show(sorted(fields.keys() - _FIELDS)[0])}")
    if _REQUIRED - fields.keys():
        raise ValueError(f"missing field {sorted(_REQUIRED - fields.keys())[0]!r}")
    header = CodesHeader(**fields)
    header.check()
    return header


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
    """The file's bytes -> (codes (channels, n_codebooks, frames) int64, header). Every check names `name`;
    whatever the bytes, the only error raised is CodesFileError."""
    def fail(problem: str):
        raise CodesFileError(f"{name}: {problem}")

    if data[: len(MAGIC)] != MAGIC[: len(data)] or not data:
        fail("not a .codes file (wrong magic bytes)")
    if len(data) < _PREFIX.size + _CRC.size:
        fail(f"truncated: {len(data)} bytes, shorter than the fixed header")
    _, version, head_len = _PREFIX.unpack_from(data)
    if version != FORMAT_VERSION:  # first: another version may lay out the rest, the CRC included, differently
        fail(f"unknown format version {version} (this reader knows version {FORMAT_VERSION}); "
             "upgrade codec or re-encode")
    head_end = _PREFIX.size + head_len
    if head_end + _CRC.size > len(data):
        fail(f"truncated or damaged: the header claims {head_len} bytes, the file holds {len(data)} in all")
    if zlib.crc32(data[:-_CRC.size]) != _CRC.unpack_from(data, len(data) - _CRC.size)[0]:
        fail(_crc_failure(data, head_end))
    try:
        header = parse_header(data[_PREFIX.size: head_end])
    except (ValueError, TypeError) as err:
        fail(f"invalid header ({err})")
    expected = head_end + header.payload_bytes + _CRC.size
    if len(data) != expected:  # a consistent checksum over inconsistent lengths: written that way on purpose
        fail(f"invalid header: it promises {expected} bytes, the file holds {len(data)}")
    values = unpack(data[head_end: head_end + header.payload_bytes], header.bits, header.n_values)
    if values.size and values.max() >= header.codebook_size:
        fail(f"damaged: a code is >= codebook_size {header.codebook_size}")
    codes = values.reshape(header.channels, header.frames, header.n_codebooks).transpose(0, 2, 1)
    return np.ascontiguousarray(codes), header


def _crc_failure(data: bytes, head_end: int) -> str:
    """Why the CRC fails, as precisely as an untrusted header allows: a header that still passes the
    schema tells a cut or extended file from a changed byte; it is used for nothing else."""
    try:
        header = parse_header(data[_PREFIX.size: head_end])
    except (ValueError, TypeError):
        return "damaged: CRC32 mismatch (the header itself is damaged)"
    expected = head_end + header.payload_bytes + _CRC.size
    if len(data) < expected:
        return f"truncated: {len(data)} bytes, the header promises {expected}"
    if len(data) > expected:
        return f"damaged: {len(data) - expected} unexpected bytes after the payload"
    return "damaged: CRC32 mismatch (a byte changed since it was written)"


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
