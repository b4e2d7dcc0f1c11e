"""Crafted .codes files: mutations of a valid file, and a benchmark that reads many of them.

    python tests/codes_fuzz.py [-n 100000] [--seed 0]

prints how many mutated files made the reader raise anything but CodesFileError (it must be 0) and exits 1
if any did. `tests/test_codes_file.py` runs the same mutations under hypothesis.

Most mutations rewrite the JSON header and then fix the CRC, as a crafted file would: those reach the
schema, where truncations and flipped bits stop at the CRC.
"""
from __future__ import annotations

import argparse
import json
import random
import struct
import sys
import zlib

import numpy as np

from codec.io.codes_file import CodesHeader, encode_bytes

FIELDS = ["model", "checksum", "sample_rate", "frame_rate", "n_codebooks", "codebook_size", "frames",
          "samples", "channels", "meta"]
_PREFIX = struct.Struct("<6sHI")


def good_file(frames: int = 6, n: int = 8, channels: int = 1) -> bytes:
    codes = np.random.default_rng(0).integers(0, 1024, (channels, n, frames))
    header = CodesHeader(model="m", checksum="ab" * 32, sample_rate=24000, frame_rate=12.5, n_codebooks=n,
                         codebook_size=1024, frames=frames, samples=frames * 1920 - 7, channels=channels,
                         meta={"source": "x.wav"})
    return encode_bytes(codes, header)


def nasty_value(rng: random.Random):
    """A JSON value of the kind that breaks naive arithmetic: extremes, wrong types, deep nesting."""
    kind = rng.randrange(12)
    if kind == 0:
        return rng.choice([0, 1, -1, 2, 3, 1920, 2**31, 2**62, 2**63, 2**64, -2**63, 10**18, 10**400])
    if kind == 1:
        return rng.choice([0.0, -0.0, 0.5, 1e-320, 1e-6, 1e6, 1e308, 12.5, 24000.0, 1920.0, -12.5])
    if kind == 2:
        return rng.choice([True, False, None])
    if kind == 3:
        return rng.choice(["", "x", "12.5", "ab" * 32, "AB" * 32, "m\nm", "\x00", "é" * 300])
    if kind == 4:
        depth = rng.choice([1, 10, 900, 5000, 100000])
        return _Raw("[" * depth + "]" * depth)
    if kind == 5:
        depth = rng.choice([10, 5000, 100000])
        return _Raw('{"a":' * depth + "1" + "}" * depth)
    if kind == 6:
        return _Raw(rng.choice(["NaN", "Infinity", "-Infinity", "1e400", "-1e400", "1" + "0" * 5000, "0.1e-400"]))
    if kind == 7:
        return [rng.randrange(-5, 5) for _ in range(rng.randrange(4))]
    if kind == 8:
        return {"k": rng.randrange(10)}
    if kind == 9:
        return rng.randrange(-2**70, 2**70)
    if kind == 10:
        return rng.uniform(-1e9, 1e9)
    return rng.randrange(0, 100000)


class _Raw(str):
    """JSON text put into the header as is (what json.dumps cannot write: NaN, 10**400 digits, deep nesting)."""


def _dump(fields: dict) -> bytes:
    parts = []
    for key, value in fields.items():
        text = str(value) if isinstance(value, _Raw) else json.dumps(value)
        parts.append(f"{json.dumps(key)}: {text}")
    return ("{" + ", ".join(parts) + "}").encode()


def _assemble(head: bytes, payload: bytes, version: int = 1, head_len: int | None = None, crc: bool = True) -> bytes:
    body = _PREFIX.pack(b"CODEC\0", version, len(head) if head_len is None else head_len) + head + payload
    return body + struct.pack("<I", zlib.crc32(body) if crc else 0)


def mutate(rng: random.Random, good: bytes) -> bytes:
    """One crafted variant of `good`, chosen and built from `rng`."""
    _, _, head_len = _PREFIX.unpack_from(good)
    head_end = _PREFIX.size + head_len
    fields = json.loads(good[_PREFIX.size: head_end])
    payload = good[head_end: -4]
    kind = rng.randrange(10)
    if kind <= 3:  # one to three fields changed, the CRC fixed: the schema must catch them
        for _ in range(rng.randrange(1, 4)):
            fields[rng.choice(FIELDS)] = nasty_value(rng)
        return _assemble(_dump(fields), payload)
    if kind == 4:  # consistent-looking edits that contradict each other or the payload
        key = rng.choice(["frames", "samples", "frame_rate", "sample_rate", "channels", "n_codebooks"])
        fields[key] = rng.choice([0, 1, fields[key] + 1, fields[key] - 1, fields[key] * 2, 1e6])
        if rng.random() < 0.5:
            payload = payload[: rng.randrange(len(payload) + 1)] + bytes(rng.randrange(4))
        return _assemble(_dump(fields), payload)
    if kind == 5:  # a field removed or added
        if rng.random() < 0.5:
            fields.pop(rng.choice(FIELDS), None)
        else:
            fields[rng.choice(["extra", "Frames", ""])] = nasty_value(rng)
        return _assemble(_dump(fields), payload)
    if kind == 6:  # the whole header replaced
        value = nasty_value(rng)
        text = str(value) if isinstance(value, _Raw) else json.dumps(value)
        head = rng.choice([text.encode(), b"", b"{", b"\xff\xfe", bytes(rng.randrange(256) for _ in range(40))])
        return _assemble(head, payload)
    if kind == 7:  # the header length field lies
        return _assemble(good[_PREFIX.size: head_end], payload,
                         head_len=rng.choice([0, 1, head_len - 1, head_len + 1, 2**32 - 1, rng.randrange(2**32)]))
    data = bytearray(good)
    if kind == 8:  # random bytes flipped, the CRC left or fixed
        for _ in range(rng.randrange(1, 6)):
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        if rng.random() < 0.5:
            data[-4:] = struct.pack("<I", zlib.crc32(bytes(data[:-4])))
        return bytes(data)
    cut = rng.randrange(len(data) + 1)  # truncated, or extended with noise
    if rng.random() < 0.5:
        return bytes(data[:cut])
    return bytes(data) + bytes(rng.randrange(256) for _ in range(cut % 9 + 1))


def main(argv: list[str] | None = None) -> int:
    from codec import CodesFileError
    from codec.io.codes_file import decode_bytes

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("-n", type=int, default=100_000, help="mutated files to read")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    rng, good = random.Random(args.seed), good_file()
    unexpected, accepted, examples = 0, 0, []
    for _ in range(args.n):
        data = mutate(rng, good)
        try:
            decode_bytes(data)
            accepted += 1
        except CodesFileError:
            pass
        except Exception as err:  # what this benchmark counts: anything but the one documented error
            unexpected += 1
            if len(examples) < 5:
                examples.append(f"{type(err).__name__}: {str(err)[:100]}")
    print(f"{args.n} mutated files: {unexpected} unexpected exceptions, {accepted} read as valid, "
          f"{args.n - unexpected - accepted} refused with CodesFileError")
    for line in examples:
        print("  " + line)
    return 1 if unexpected else 0


if __name__ == "__main__":
    sys.exit(main())
