"""RNC ProPack method 1 (Rob Northen Computing's packer, as Beneath a Steel Sky stores its files): unpacking.

A packed file is an 18-byte header, then the packed data:

    0  b"RNC\\x01"           signature and method
    4  big-endian u32       unpacked length
    8  big-endian u32       packed length (the bytes after the header)
    12 big-endian u16       CRC of the unpacked data
    14 big-endian u16       CRC of the packed data
    16 u8                   leeway (how far in-place unpacking may overrun; not needed here)
    17 u8                   number of blocks

The packed data interleaves a bit stream with literal bytes. Bits are read least significant first from
little-endian 16-bit words; a word is taken from the byte stream only when a bit beyond those already taken
is needed, and a run of literal bytes is taken from the byte stream where it stands at that moment. The
stream opens with 2 flag bits. Each block then holds three Huffman tables (literal-run lengths, match
offsets, match lengths), each a 5-bit count n and n 4-bit code lengths (a count of 0 keeps the previous
block's table), then a 16-bit count of steps. A step is a literal run, and in all but the last step of a
block a match: offset = value + 1 back into the output, length = value + 2 bytes. A Huffman symbol s is a
value itself when s < 2, else the value is 2**(s-1) plus the s-1 bits that follow.
"""
from __future__ import annotations

import struct

SIGNATURE = b"RNC\x01"
HEADER_SIZE = 18


class RncError(ValueError):
    """Not RNC method-1 data, or damaged."""


def _crc_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_CRC_TABLE = _crc_table()


def crc16(data: bytes) -> int:
    """The packer's checksum: CRC-16/ARC (reflected polynomial 0xA001, initial value 0)."""
    crc = 0
    for byte in data:
        crc = (crc >> 8) ^ _CRC_TABLE[(crc ^ byte) & 0xFF]
    return crc


def code_table(lengths: list[int]) -> tuple[list, int]:
    """Code lengths per symbol -> (lookup list indexed by the next `width` stream bits, width).

    Codes are canonical: shorter codes first, equal lengths in symbol order. The stream sends each code's
    bits lowest first, so the lookup is keyed by the bit-reversed code.
    """
    width = max(lengths, default=0)
    lookup: list = [None] * (1 << width)
    code = 0  # the next code, left-aligned in 16 bits
    for length in range(1, 17):
        for symbol, n in enumerate(lengths):
            if n != length:
                continue
            value = code >> (16 - length)
            reversed_code = int(f"{value:0{length}b}"[::-1], 2)
            for high in range(1 << (width - length)):
                lookup[reversed_code | (high << length)] = (symbol, length)
            code += 1 << (16 - length)
    if code > 1 << 16:
        raise RncError("Huffman code lengths over-subscribed")
    return lookup, width


class _Stream:
    """RNC's bit stream: 16-bit little-endian words read low bit first, with literal bytes between them."""

    def __init__(self, packed: bytes):
        self.src = packed + b"\0\0\0\0"  # a peek may look one word past the last one read
        self.end = len(packed)
        self.pos, self.buf, self.nbits = 0, 0, 0  # nbits bits taken from the stream and not yet used, in buf

    def peek(self, n: int) -> int:
        if self.nbits >= n:
            return self.buf & ((1 << n) - 1)
        return (self.buf | (self.src[self.pos] | self.src[self.pos + 1] << 8) << self.nbits) & ((1 << n) - 1)

    def bits(self, n: int) -> int:  # n <= 16; nbits stays below 16 between calls
        if self.nbits < n:
            self.buf |= (self.src[self.pos] | self.src[self.pos + 1] << 8) << self.nbits
            self.pos += 2
            self.nbits += 16
        value = self.buf & ((1 << n) - 1)
        self.buf >>= n
        self.nbits -= n
        return value

    def literal(self, run: int) -> bytes:
        """`run` bytes from the stream; the bits taken so far stay in buf, the next word now lies after them."""
        if self.pos + run > self.end:
            raise RncError("a literal run past the end of the data")
        self.pos += run
        return self.src[self.pos - run:self.pos]

    def table(self, previous):
        count = self.bits(5)
        if count == 0:
            return previous
        if count > 16:
            raise RncError(f"a Huffman table of {count} codes")
        return code_table([self.bits(4) for _ in range(count)])

    def value(self, table) -> int:
        if table is None:
            raise RncError("an empty Huffman table is used")
        lookup, width = table
        entry = lookup[self.peek(width)] if width else None
        if entry is None:
            raise RncError("no Huffman code matches the stream")
        symbol, length = entry
        self.bits(length)
        return self.bits(symbol - 1) | (1 << (symbol - 1)) if symbol >= 2 else symbol


def _copy_match(out: bytearray, offset: int, length: int) -> None:
    if offset > len(out):
        raise RncError("a match before the start of the output")
    start = len(out) - offset
    if offset >= length:
        out += out[start:start + length]
    else:  # the match overlaps what it writes: repeat the period
        out += (out[start:] * (length // offset + 1))[:length]


def _blocks(stream: _Stream, blocks: int, unpacked_len: int) -> bytearray:
    out = bytearray()
    raw = offsets = lengths = None
    for _ in range(blocks):
        raw, offsets, lengths = stream.table(raw), stream.table(offsets), stream.table(lengths)
        steps = stream.bits(16)
        if steps == 0:
            raise RncError("a block of no steps")
        for step in range(steps):
            run = stream.value(raw)
            if run:
                out += stream.literal(run)
            if step < steps - 1:
                _copy_match(out, stream.value(offsets) + 1, stream.value(lengths) + 2)
            if len(out) > unpacked_len:
                raise RncError("more output than the header says")
    return out


def unpack(data: bytes) -> bytes:
    """Unpack one RNC method-1 file (header included); checks both CRCs and the length."""
    if len(data) < HEADER_SIZE or data[:4] != SIGNATURE:
        raise RncError("not RNC method-1 data")
    unpacked_len, packed_len, crc_unpacked, crc_packed = struct.unpack(">IIHH", data[4:16])
    blocks = data[17]
    packed = data[HEADER_SIZE:HEADER_SIZE + packed_len]
    if len(packed) != packed_len:
        raise RncError(f"truncated: {len(packed)} of {packed_len} packed bytes")
    if crc16(packed) != crc_packed:
        raise RncError("packed data CRC mismatch")
    if blocks == 0:
        raise RncError("no blocks")
    stream = _Stream(packed)
    stream.bits(2)  # the lock and key flags: ignored, as the game's own unpacker does
    out = _blocks(stream, blocks, unpacked_len)
    if len(out) != unpacked_len:
        raise RncError(f"unpacked {len(out)} bytes, the header says {unpacked_len}")
    if crc16(out) != crc_unpacked:
        raise RncError("unpacked data CRC mismatch")
    return bytes(out)
