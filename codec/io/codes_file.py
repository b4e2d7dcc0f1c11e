"""The `.codes` file: a self-describing, checksummed container for codec indices.

Layout (all integers little-endian):

    magic      6 bytes   b"CODEC\\0"
    version    uint16    FORMAT_VERSION
    hlen       uint32    length of the header
    header     hlen      UTF-8 JSON (see `CodesHeader`)
    payload    ...       the indices, `bits` each, MSB first, in (channel, frame, codebook) order,
                         zero padded to a whole byte
    crc        uint32    CRC32 of everything before it

Packing and unpacking are vectorized numpy passes over blocks of values (no per-token Python loop), so their
scratch memory is bounded whatever the file's length. Codes are read into the smallest unsigned type that
holds the codebook size (uint16 for the shipped model's 1024 entries), and `read_header` checks a file and
returns its header without keeping the payload.
"""
from __future__ import annotations

import dataclasses
import json
import re
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np

from ..errors import CodesFileError
from .atomic import atomic_path

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
_BLOCK_VALUES = 1 << 16  # values per packing step: a multiple of 8, so every block starts on a byte
_READ_BLOCK = 1 << 20  # bytes per read when checking a file's CRC without holding it


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


def code_dtype(codebook_size: int) -> np.dtype:
    """The smallest unsigned integer type that holds every index of a codebook of this size (the schema
    allows at most 2**16 entries)."""
    return np.dtype(np.uint8 if codebook_size <= 2**8 else np.uint16)


def pack(values: np.ndarray, bits: int) -> bytes:
    """Non-negative integers < 2**bits (bits <= 16) -> bytes, `bits` per value, MSB first."""
    flat = np.ascontiguousarray(values, dtype=">u2").reshape(-1)
    parts = []
    for start in range(0, len(flat), _BLOCK_VALUES):
        block = flat[start: start + _BLOCK_VALUES]
        as_bits = np.unpackbits(block.view(np.uint8)).reshape(-1, 16)[:, 16 - bits:]
        parts.append(np.packbits(as_bits.reshape(-1)).tobytes())  # whole bytes: blocks hold 8k values
    return b"".join(parts)


def unpack(data, bits: int, count: int, dtype=None) -> np.ndarray:
    """Inverse of `pack`: the first `count` values of `data` (bytes-like), as `dtype` (default: the smallest
    unsigned type that holds `bits` bits)."""
    dtype = np.dtype(dtype or (np.uint8 if bits <= 8 else np.uint16))
    raw = np.frombuffer(data, dtype=np.uint8)
    out = np.empty(count, dtype=dtype)
    mask = (1 << bits) - 1
    for start in range(0, count, _BLOCK_VALUES):
        n = min(_BLOCK_VALUES, count - start)
        first = start * bits // 8  # a whole byte: start is a multiple of 8
        # each value lies within the 3 bytes from its first one (bits <= 16, offset <= 7): read them as a
        # 24-bit big-endian word and shift the value out
        chunk = np.zeros(-(-n * bits // 8) + 2, dtype=np.uint32)
        got = raw[first: first + len(chunk)]
        chunk[: len(got)] = got
        offsets = np.arange(n, dtype=np.int64) * bits
        at = offsets >> 3
        word = (chunk[at] << 16) | (chunk[at + 1] << 8) | chunk[at + 2]
        out[start: start + n] = (word >> (24 - bits - (offsets & 7)).astype(np.uint32)) & mask
    return out


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


def _check(name: str, size: int, read_at, crc_matches) -> tuple[CodesHeader, int]:
    """Check a codes file's fixed prefix, CRC, header schema and length -> (header, payload offset).

    size: the file's length; read_at(offset, n): its bytes there; crc_matches(): whether the CRC32 stored
    at the end matches the bytes before it. Whatever the bytes, the only error raised is CodesFileError."""
    def fail(problem: str):
        raise CodesFileError(f"{name}: {problem}")

    start = bytes(read_at(0, _PREFIX.size))
    if start[: len(MAGIC)] != MAGIC[: len(start)] or not start:
        fail("not a .codes file (wrong magic bytes)")
    if size < _PREFIX.size + _CRC.size:
        fail(f"truncated: {size} bytes, shorter than the fixed header")
    _, version, head_len = _PREFIX.unpack(start)
    if version != FORMAT_VERSION:  # first: another version may lay out the rest, the CRC included, differently
        fail(f"unknown format version {version} (this reader knows version {FORMAT_VERSION}); "
             "upgrade codec or re-encode")
    head_end = _PREFIX.size + head_len
    if head_end + _CRC.size > size:
        fail(f"truncated or damaged: the header claims {head_len} bytes, the file holds {size} in all")
    head = bytes(read_at(_PREFIX.size, head_len))
    if not crc_matches():
        fail(_crc_failure(head, size, head_end))
    try:
        header = parse_header(head)
    except (ValueError, TypeError) as err:
        fail(f"invalid header ({err})")
    expected = head_end + header.payload_bytes + _CRC.size
    if size != expected:  # a consistent checksum over inconsistent lengths: written that way on purpose
        fail(f"invalid header: it promises {expected} bytes, the file holds {size}")
    return header, head_end


def _codes_from(payload, header: CodesHeader, name: str) -> np.ndarray:
    """The payload's bytes -> codes (channels, n_codebooks, frames) in the smallest type that holds them."""
    values = unpack(payload, header.bits, header.n_values, code_dtype(header.codebook_size))
    if values.size and values.max() >= header.codebook_size:
        raise CodesFileError(f"{name}: damaged: a code is >= codebook_size {header.codebook_size}")
    codes = values.reshape(header.channels, header.frames, header.n_codebooks).transpose(0, 2, 1)
    return np.ascontiguousarray(codes)


def decode_bytes(data: bytes, name: str = "<bytes>") -> tuple[np.ndarray, CodesHeader]:
    """The file's bytes -> (codes (channels, n_codebooks, frames), header). Codes are uint8 for codebooks of
    up to 256 entries, uint16 up to 65536 (`code_dtype`). Every check names `name`; whatever the bytes, the
    only error raised is CodesFileError."""
    view = memoryview(data)
    stored = lambda: _CRC.unpack_from(data, len(data) - _CRC.size)[0]
    header, head_end = _check(name, len(data), lambda at, n: view[at: at + n],
                              lambda: zlib.crc32(view[: len(data) - _CRC.size]) == stored())
    return _codes_from(view[head_end: head_end + header.payload_bytes], header, name), header


def _crc_failure(head: bytes, size: int, head_end: int) -> str:
    """Why the CRC fails, as precisely as an untrusted header allows: a header that still passes the
    schema tells a cut or extended file from a changed byte; it is used for nothing else."""
    try:
        header = parse_header(head)
    except (ValueError, TypeError):
        return "damaged: CRC32 mismatch (the header itself is damaged)"
    expected = head_end + header.payload_bytes + _CRC.size
    if size < expected:
        return f"truncated: {size} bytes, the header promises {expected}"
    if size > expected:
        return f"damaged: {size - expected} unexpected bytes after the payload"
    return "damaged: CRC32 mismatch (a byte changed since it was written)"


def write_codes(path: str | Path, codes: np.ndarray, header: CodesHeader) -> None:
    """Write a codes file atomically: a failure leaves any earlier file at `path` untouched."""
    data = encode_bytes(codes, header)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def _open(path: Path) -> BinaryIO:
    try:
        return path.open("rb")
    except FileNotFoundError:
        raise CodesFileError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise CodesFileError(f"{path}: is a folder, not a .codes file") from None
    except PermissionError:
        raise CodesFileError(f"{path}: permission denied") from None


def _check_file(handle: BinaryIO, name: str) -> tuple[CodesHeader, int]:
    """`_check` on an open file, reading it in blocks: memory stays that of one block and the header."""
    handle.seek(0, 2)
    size = handle.tell()

    def read_at(offset: int, n: int) -> bytes:
        handle.seek(offset)
        return handle.read(n)

    def crc_matches() -> bool:
        handle.seek(0)
        crc, left = 0, size - _CRC.size
        while left > 0:
            block = handle.read(min(_READ_BLOCK, left))
            crc, left = zlib.crc32(block, crc), left - len(block)
        return crc == _CRC.unpack(handle.read(_CRC.size))[0]

    return _check(name, size, read_at, crc_matches)


def _refuse_other_model(path: Path, header: CodesHeader, expect_checksum: str | None) -> None:
    if expect_checksum is not None and header.checksum != expect_checksum:
        raise CodesFileError(f"{path}: made by model {header.model} ({header.checksum[:12]}), not by the model "
                             f"decoding it ({expect_checksum[:12]}): pass --model with the weights that encoded it")


def read_header(path: str | Path, expect_checksum: str | None = None) -> CodesHeader:
    """Check a codes file (CRC, schema, length) and return its header; the payload is read through the CRC
    in blocks but never held or unpacked. `expect_checksum` as for `read_codes`."""
    path = Path(path)
    with _open(path) as handle:
        header, _ = _check_file(handle, str(path))
    _refuse_other_model(path, header, expect_checksum)
    return header


def read_codes(path: str | Path, expect_checksum: str | None = None) -> tuple[np.ndarray, CodesHeader]:
    """Read and validate a codes file -> (codes (channels, n, frames), header), codes as in `decode_bytes`.

    With `expect_checksum` (the decoding model's), a file made by other weights is refused.
    """
    path = Path(path)
    with _open(path) as handle:
        header, head_end = _check_file(handle, str(path))
        _refuse_other_model(path, header, expect_checksum)
        handle.seek(head_end)
        payload = handle.read(header.payload_bytes)
    return _codes_from(payload, header, str(path)), header
