"""Beneath a Steel Sky's voice acting: the speech entries of sky.dnr / sky.dsk, written as WAV files.

    python recipes/debian-speech/sky.py GAME_DIR OUT     # GAME_DIR holds sky.dnr and sky.dsk

sky.dnr is the index of sky.dsk: a little-endian u32 count, then 8 bytes per entry:

    0  u16 file number            speech is 50000-55999
    2  u24 offset                 bit 23 set: the offset counts 16-byte units (the CD version's layout)
    5  u24 size and flags         bits 0-21 the stored size; bit 22: the game drops the 22-byte header
                                  after unpacking; bit 23: stored as is, never packed

An entry's data opens with a 22-byte header of little-endian u16 fields; field 0 is a flag word (bit 7: RNC
packed, bits 8-15: bits 16-23 of the unpacked size) and field 6 the low 16 bits of the unpacked size, header
included. The packed bytes after the header unpack (rnc.py) to the rest. A speech file is that header and
8-bit unsigned mono PCM at 11,025 Hz. The game numbers its lines by section (seven parts of the story,
starting at file offsets 0, 600, 1100, 2430, 3380, 4530, 5080, 5230); the archive does not name the
speaker, so the section stands in for one, as the level does for fillets.
"""
from __future__ import annotations

import argparse
import struct
import sys
import wave
from collections import Counter
from pathlib import Path

import rnc  # beside this file

HEADER_SIZE = 22
SPEECH_FIRST, SPEECH_END = 50000, 56000
SECTION_STARTS = (0, 600, 1100, 2430, 3380, 4530, 5080, 5230)
RATE = 11025


def read_index(dnr: bytes) -> dict[int, tuple[int, int, int]]:
    """sky.dnr -> {file number: (byte offset in sky.dsk, stored size, flags)}."""
    (count,) = struct.unpack_from("<I", dnr)
    if len(dnr) < 4 + 8 * count:
        raise ValueError(f"sky.dnr: {count} entries announced, {(len(dnr) - 4) // 8} present")
    index = {}
    for at in range(4, 4 + 8 * count, 8):
        (number,) = struct.unpack_from("<H", dnr, at)
        offset = int.from_bytes(dnr[at + 2:at + 5], "little")
        size = int.from_bytes(dnr[at + 5:at + 8], "little")
        if offset & 0x800000:
            offset = (offset & 0x7FFFFF) << 4
        index[number] = (offset, size & 0x3FFFFF, size >> 22)
    return index


def load(dsk, entry: tuple[int, int, int]) -> bytes:
    """One entry as the game holds it in memory: the 22-byte header, then the (unpacked) data."""
    offset, size, flags = entry
    dsk.seek(offset)
    data = dsk.read(size)
    if len(data) != size:
        raise ValueError(f"sky.dsk: {len(data)} of {size} bytes at {offset}")
    (flag,) = struct.unpack_from("<H", data)
    if flags & 2 or not flag & 0x80:  # stored as is
        return data
    unpacked = rnc.unpack(data[HEADER_SIZE:])
    expected = (flag & 0xFF00) << 8 | struct.unpack_from("<H", data, 12)[0]
    whole = unpacked if flags & 1 else data[:HEADER_SIZE] + unpacked
    if len(whole) != expected:
        raise ValueError(f"unpacked {len(whole)} bytes, the header says {expected}")
    return whole


def section(number: int) -> int:
    line = number - SPEECH_FIRST
    return max(i for i, start in enumerate(SECTION_STARTS) if start <= line)


def extract(game_dir: Path, out: Path) -> Counter:
    """Write OUT/section<k>/<file number>.wav for every speech entry; returns counts of what happened."""
    index = read_index((game_dir / "sky.dnr").read_bytes())
    counts = Counter()
    with open(game_dir / "sky.dsk", "rb") as dsk:
        for number in sorted(n for n in index if SPEECH_FIRST <= n < SPEECH_END):
            try:
                pcm = load(dsk, index[number])[HEADER_SIZE:]
            except (rnc.RncError, ValueError) as e:
                counts[f"damaged: {e}"] += 1
                continue
            if not pcm:
                counts["empty"] += 1
                continue
            folder = out / f"section{section(number)}"
            folder.mkdir(parents=True, exist_ok=True)
            with wave.open(str(folder / f"{number}.wav"), "wb") as w:  # 1-byte WAV samples are unsigned
                w.setnchannels(1)
                w.setsampwidth(1)
                w.setframerate(RATE)
                w.writeframes(pcm)
            counts["written"] += 1
            counts["samples"] += len(pcm)
    return counts


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("game_dir", type=Path, help="the folder with sky.dnr and sky.dsk")
    ap.add_argument("out", type=Path, help="folder to write, one subfolder per section")
    args = ap.parse_args(argv)
    counts = extract(args.game_dir, args.out)
    hours = counts.pop("samples", 0) / RATE / 3600
    print(f"steel-sky: {dict(counts)}, {hours:.2f} h")
    return 0


if __name__ == "__main__":
    sys.exit(main())
