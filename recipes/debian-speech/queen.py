"""Flight of the Amazon Queen's voice acting: the .SB entries of queen.1c, decoded to WAV with ffmpeg.

    python recipes/debian-speech/queen.py GAME_DIR/queen.1c OUT

queen.1c (the compressed freeware release) opens with a "QTBL" table, all integers big-endian:

    0  b"QTBL"
    4  6-byte version string, 2 bytes unused
    12 u8 compression of the sound entries: 0 none, 1 MP3, 2 Ogg Vorbis, 3 FLAC
    13 u16 number of entries, then 21 bytes per entry:
       12-byte name (NUL padded), u8 bundle (data file number: 1 is queen.1c), u32 offset, u32 size

The .SB entries are speech, each a whole compressed stream. Their names say who speaks where the game's
dialogue code made them: a conversation line is two digits of conversation key, four of dialogue node,
then J (Joe, the hero) or P (the one person Joe talks to in that conversation) and a segment digit; the
JOE... files are Joe too. Cutaway scenes (C<scene>_...) mix speakers: the scene stands in for one.
Entries named ...SSSS without a speaker letter are the rooms' sound effects, and a few more were heard
to be effects or tones (NOT_SPEECH): those are skipped and counted.
"""
from __future__ import annotations

import argparse
import re
import struct
import subprocess
import sys
from collections import Counter
from pathlib import Path

ENTRY_SIZE, TABLE_START = 21, 15
CODECS = {1: "mp3", 2: "ogg", 3: "flac"}
NOT_SPEECH = {"ROCKPAKS", "GM011___", "GM___011", "BLANK000"}  # a rumble, two tones, a 0.2 s blip


def read_table(data: bytes) -> tuple[int, list[tuple[str, int, int, int]]]:
    """queen.1c's head -> (compression byte, [(name, bundle, offset, size)])."""
    if data[:4] != b"QTBL":
        raise ValueError("not a QTBL resource file (the rebuilt, compressed queen.1c)")
    compression, count = data[12], struct.unpack_from(">H", data, 13)[0]
    entries = []
    for at in range(TABLE_START, TABLE_START + ENTRY_SIZE * count, ENTRY_SIZE):
        name = data[at:at + 12].split(b"\0")[0].decode("ascii")
        bundle, offset, size = struct.unpack_from(">BII", data, at + 12)
        entries.append((name, bundle, offset, size))
    return compression, entries


def speaker(name: str) -> str | None:
    """The folder for one .SB entry: 'joe', 'talk<key>' (Joe's partner in that conversation),
    'cutaway-<scene>' or 'other'; None for a sound effect."""
    stem = name.rsplit(".", 1)[0]
    talk = re.fullmatch(r"([ \d]\d)[0-9A-FSX]{4}([JP])[0-9A-F]", stem)
    if talk:
        return "joe" if talk[2] == "J" else f"talk{int(talk[1]):02d}"
    if stem.endswith("SSSS") or stem in NOT_SPEECH:
        return None
    if stem.startswith("JOE"):
        return "joe"
    cutaway = re.fullmatch(r"(C\d+[A-Z]?)_*\d+", stem)
    return f"cutaway-{cutaway[1].lower()}" if cutaway else "other"


def decode(stream: bytes, fmt: str, path: Path) -> None:
    """One compressed stream -> a 16-bit WAV at its own rate (ffmpeg, one thread)."""
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-threads", "1", "-f", fmt, "-i", "pipe:0",
                    "-ac", "1", "-c:a", "pcm_s16le", "-y", str(path)], input=stream, check=True)


def extract(resource: Path, out: Path) -> Counter:
    """Write OUT/<speaker>/<name>.wav for every .SB entry of bundle 1; returns counts of what happened."""
    data = resource.read_bytes()
    compression, entries = read_table(data)
    if compression not in CODECS:
        raise ValueError(f"compression {compression}: only the compressed release (1-3) is read here")
    counts = Counter()
    for name, bundle, offset, size in entries:
        if not name.upper().endswith(".SB"):
            continue
        if bundle != 1 or offset + size > len(data):
            counts["outside queen.1c"] += 1
            continue
        who = speaker(name)
        if who is None:
            counts["sound effects"] += 1
            continue
        folder = out / who
        folder.mkdir(parents=True, exist_ok=True)
        try:
            decode(data[offset:offset + size], CODECS[compression], folder / f"{name.rsplit('.', 1)[0]}.wav")
        except subprocess.CalledProcessError:
            counts["undecodable"] += 1
            continue
        counts["written"] += 1
    return counts


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("resource", type=Path, help="queen.1c")
    ap.add_argument("out", type=Path, help="folder to write, one subfolder per speaker")
    args = ap.parse_args(argv)
    print(f"queen: {dict(extract(args.resource, args.out))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
