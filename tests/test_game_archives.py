"""The corpus recipe's game-archive readers (recipes/debian-speech): RNC ProPack method-1 unpacking, Beneath a
Steel Sky's sky.dnr/sky.dsk and Flight of the Amazon Queen's QTBL table, each on fixtures built here.

The RNC packer below is the format's other half, written for these tests: greedy LZ77 with Huffman tables
from the token counts, the bit stream and the literal bytes interleaved as the unpacker reads them.
"""
import heapq
import io
import shutil
import struct
import sys
import wave
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "recipes" / "debian-speech"))
import queen
import rnc
import sky


class BitWriter:
    """Bits go least significant first into little-endian 16-bit words; a word's place in the byte stream
    is taken when its first bit is written, literal bytes go to the end of the stream as they come."""

    def __init__(self):
        self.out, self.word, self.used = bytearray(), 0, 16

    def bits(self, value: int, n: int):
        for i in range(n):
            if self.used == 16:
                self.word, self.used = len(self.out), 0
                self.out += b"\0\0"
            if value >> i & 1:
                self.out[self.word + self.used // 8] |= 1 << (self.used % 8)
            self.used += 1

    def raw(self, data: bytes):
        self.out += data


def symbol(v: int) -> int:
    return v if v < 2 else v.bit_length()


def huffman_lengths(counts: dict[int, int]) -> list[int]:
    """Code lengths (at most 15 for 16 symbols) per symbol 0..max used; a lone symbol gets length 1."""
    if not counts:
        return []
    lengths = [0] * (max(counts) + 1)
    if len(counts) == 1:
        lengths[next(iter(counts))] = 1
        return lengths
    heap = [(n, i, [s]) for i, (s, n) in enumerate(sorted(counts.items()))]
    heapq.heapify(heap)
    tie = len(heap)
    while len(heap) > 1:
        n1, _, a = heapq.heappop(heap)
        n2, _, b = heapq.heappop(heap)
        for s in a + b:
            lengths[s] += 1
        heapq.heappush(heap, (n1 + n2, tie, a + b))
        tie += 1
    return lengths


def canonical_codes(lengths: list[int]) -> dict[int, tuple[int, int]]:
    """symbol -> (code with its bits reversed, length): the unpacker's canonical order."""
    codes, code = {}, 0
    for length in range(1, 17):
        for s, n in enumerate(lengths):
            if n == length:
                value = code >> (16 - length)
                codes[s] = (int(f"{value:0{length}b}"[::-1], 2), length)
                code += 1 << (16 - length)
    return codes


def tokens(data: bytes, start: int, end: int, max_len: int = 300) -> list[tuple[bytes, tuple | None]]:
    """Greedy LZ77 over data[start:end] (matches may reach back before start, to the last 8 places each
    2-byte prefix was seen): [(literals, (offset, length))], the last step without a match."""
    seen: dict[bytes, list[int]] = {}
    for j in range(max(0, start - 4096), start):
        seen.setdefault(data[j:j + 2], []).append(j)
    steps, lit, i = [], bytearray(), start
    while i < end:
        best = (0, 0)
        for j in reversed(seen.get(data[i:i + 2], [])[-8:]):
            n = 0
            while n < max_len and i + n < end and data[j + n] == data[i + n]:
                n += 1
            if n > best[1]:
                best = (i - j, n)
        take = best[1] if best[1] >= 2 else 1
        for j in range(i, i + take):
            seen.setdefault(data[j:j + 2], []).append(j)
        if take >= 2:
            steps.append((bytes(lit), best))
            lit = bytearray()
        else:
            lit.append(data[i])
        i += take
    steps.append((bytes(lit), None))
    return steps


def rnc_pack(data: bytes, block_size: int = 4096) -> bytes:
    w = BitWriter()
    w.bits(0, 2)
    blocks = [tokens(data, s, min(s + block_size, len(data))) for s in range(0, max(len(data), 1), block_size)]
    for steps in blocks:
        raw, offs, lens = {}, {}, {}
        for lit, match in steps:
            raw[symbol(len(lit))] = raw.get(symbol(len(lit)), 0) + 1
            if match:
                offs[symbol(match[0] - 1)] = offs.get(symbol(match[0] - 1), 0) + 1
                lens[symbol(match[1] - 2)] = lens.get(symbol(match[1] - 2), 0) + 1
        tables = []
        for counts in (raw, offs, lens):
            lengths = huffman_lengths(counts)
            w.bits(len(lengths), 5)
            for n in lengths:
                w.bits(n, 4)
            tables.append(canonical_codes(lengths))

        def put(table, v):
            s = symbol(v)
            w.bits(*table[s])
            if s >= 2:
                w.bits(v - (1 << (s - 1)), s - 1)

        w.bits(len(steps), 16)
        for lit, match in steps:
            put(tables[0], len(lit))
            w.raw(lit)
            if match:
                put(tables[1], match[0] - 1)
                put(tables[2], match[1] - 2)
    packed = bytes(w.out)
    return (rnc.SIGNATURE + struct.pack(">IIHH", len(data), len(packed), rnc.crc16(data), rnc.crc16(packed))
            + bytes([0, len(blocks)]) + packed)


# rnc_pack(FROZEN_PLAIN), frozen: literals "abc" and an overlapping match (offset 3, length 8), "x" and a
# match (offset 1, length 19), no literal and a match (offset 25, length 3), an empty last step. The unpacker
# reads the game's own packed files with these conventions: all 3,491 speech entries of sky.dsk, both CRCs
# matching.
FROZEN_PLAIN = b"abcabcabcab" + b"x" * 20 + b"abc"
FROZEN = bytes.fromhex("524e4301000000220000001447471e7300018c10310202100604048200e0616263db12786000")


def test_crc16_is_crc16_arc():
    assert rnc.crc16(b"123456789") == 0xBB3D  # the published check value of CRC-16/ARC
    assert rnc.crc16(b"") == 0


def test_frozen_stream_unpacks():
    assert rnc.unpack(FROZEN) == FROZEN_PLAIN
    assert rnc_pack(FROZEN_PLAIN) == FROZEN


@pytest.mark.parametrize("name", ["empty-ish", "text", "runs", "audio", "noise", "many-blocks"])
def test_pack_unpack_round_trip(name):
    rng = np.random.default_rng(7)
    t = np.arange(6000)
    data = {
        "empty-ish": b"z",
        "text": b"the quick brown fox jumps over the lazy dog; the lazy dog sleeps. " * 12,
        "runs": b"\x80" * 700 + b"\x81\x7f" * 300 + b"q",  # matches that overlap what they write
        "audio": (128 + 60 * np.sin(2 * np.pi * 200 * t / 11025)).astype(np.uint8).tobytes(),
        "noise": rng.integers(0, 256, 1500, dtype=np.uint8).tobytes(),  # literal runs, hardly a match
        "many-blocks": bytes(rng.integers(0, 4, 5000, dtype=np.uint8)),
    }[name]
    packed = rnc_pack(data, block_size=1000 if name == "many-blocks" else 4096)
    assert rnc.unpack(packed) == data


def test_unpack_refuses_damage():
    packed = bytearray(FROZEN)
    with pytest.raises(rnc.RncError, match="not RNC"):
        rnc.unpack(b"RNC\x02" + bytes(packed[4:]))
    with pytest.raises(rnc.RncError, match="truncated"):
        rnc.unpack(bytes(packed[:-1]))
    packed[-1] ^= 0xFF
    with pytest.raises(rnc.RncError, match="packed data CRC"):
        rnc.unpack(bytes(packed))
    packed[-1] ^= 0xFF
    packed[12] ^= 0xFF  # the unpacked data's CRC
    with pytest.raises(rnc.RncError, match="unpacked data CRC"):
        rnc.unpack(bytes(packed))


def sky_fixture(folder: Path, entries: dict[int, tuple[bytes, bool, bool]]):
    """Write sky.dnr / sky.dsk: {file number: (payload after the header, pack it, break its CRC)}."""
    dsk, index = bytearray(), []
    for number, (payload, pack, damage) in entries.items():
        dsk += b"\0" * (-len(dsk) % 16)  # the CD layout: offsets in 16-byte units
        total = 22 + len(payload)
        flag = (total >> 16) << 8 | (0x80 if pack else 0)
        header = struct.pack("<11H", flag, 0, 0, 0, 0, 0, total & 0xFFFF, 0, 0, 0, 0)
        body = bytearray(rnc_pack(payload)) if pack else bytearray(payload)
        if damage:
            body[-1] ^= 0xFF
        stored = header + body
        size_flags = len(stored) | (0 if pack else 1 << 23)
        index.append(struct.pack("<H", number) + ((len(dsk) >> 4) | 1 << 23).to_bytes(3, "little")
                     + size_flags.to_bytes(3, "little"))
        dsk += stored
    (folder / "sky.dsk").write_bytes(bytes(dsk))
    (folder / "sky.dnr").write_bytes(struct.pack("<I", len(index)) + b"".join(index))


def test_sky_extracts_speech_by_section(tmp_path):
    speech = (128 + 50 * np.sin(np.arange(3000) / 5)).astype(np.uint8).tobytes()
    sky_fixture(tmp_path, {
        12: (b"not speech" * 10, True, False),      # a sprite or script: below 50000, ignored
        50007: (speech, True, False),               # section 0, RNC packed
        51100: (speech[:1000], False, False),       # line 0 of section 2, stored as is
        52500: (speech[:2000], True, True),         # damaged: counted, not written
    })
    counts = sky.extract(tmp_path, tmp_path / "out")
    assert counts["written"] == 2 and sum(v for k, v in counts.items() if k.startswith("damaged")) == 1
    with wave.open(str(tmp_path / "out/section0/50007.wav")) as w:
        assert (w.getframerate(), w.getsampwidth(), w.getnchannels()) == (11025, 1, 1)
        assert w.readframes(10**6) == speech
    x, rate = sf.read(tmp_path / "out/section2/51100.wav")
    assert rate == 11025 and len(x) == 1000 and abs(x.mean()) < 0.05  # unsigned samples centred on 128
    assert not (tmp_path / "out/section3").exists()


def test_queen_speakers():
    assert queen.speaker("020006J1.SB") == "joe" and queen.speaker("JOE07621.SB") == "joe"
    assert queen.speaker("3300BAP2.SB") == "talk33" and queen.speaker(" 30006P1.SB") == "talk03"
    assert queen.speaker("03SSSSJ1.SB") == "joe" and queen.speaker("12XXXXP3.SB") == "talk12"
    assert queen.speaker("C41B_742.SB") == "cutaway-c41b" and queen.speaker("C100A011.SB") == "cutaway-c100a"
    assert queen.speaker("1000SSSS.SB") is None and queen.speaker("ROCKPAKS.SB") is None  # sound effects
    assert queen.speaker("COMIC011.SB") == "other"


def qtbl(entries: list[tuple[str, bytes]], compression: int) -> bytes:
    head = b"QTBL" + b"CEM10\0" + b"\0\0" + bytes([compression]) + struct.pack(">H", len(entries))
    offset, table, body = len(head) + queen.ENTRY_SIZE * len(entries), b"", b""
    for name, data in entries:
        table += name.encode().ljust(12, b"\0") + struct.pack(">BII", 1, offset + len(body), len(data))
        body += data
    return head + table + body


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not installed")
def test_queen_extracts_and_decodes_speech(tmp_path):
    clips = {}
    for i, name in enumerate(["020006J1.SB", "020006P2.SB", "1000SSSS.SB", "C41B_742.SB"]):
        x = (0.3 * np.sin(2 * np.pi * (150 + 50 * i) * np.arange(5512 + 1000 * i) / 11025)).astype(np.float32)
        buf = io.BytesIO()
        sf.write(buf, x, 11025, format="FLAC")  # compression 3: FLAC, lossless, so the samples can be compared
        clips[name] = (x, buf.getvalue())
    resource = tmp_path / "queen.1c"
    resource.write_bytes(qtbl([(n, b) for n, (_, b) in clips.items()] + [("QUEEN.JAS", b"jas")], compression=3))
    counts = queen.extract(resource, tmp_path / "out")
    assert counts == {"written": 3, "sound effects": 1}
    for name, folder in [("020006J1", "joe"), ("020006P2", "talk02"), ("C41B_742", "cutaway-c41b")]:
        y, rate = sf.read(tmp_path / "out" / folder / f"{name}.wav", dtype="float32")
        assert rate == 11025 and np.allclose(y, clips[name + ".SB"][0], atol=1e-4)


def test_queen_refuses_other_files(tmp_path):
    with pytest.raises(ValueError, match="QTBL"):
        queen.read_table(b"RIFF....")
    compression, entries = queen.read_table(qtbl([("A.SB", b"12345")], compression=1))
    assert compression == 1 and entries == [("A.SB", 1, 15 + 21, 5)]
