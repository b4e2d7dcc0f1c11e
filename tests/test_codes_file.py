"""The .codes format: exact round trips for random shapes, and each kind of damage gets its own error."""
import math
import struct
import zlib

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from codec import CodesFileError
from codec.codes_file import (FORMAT_VERSION, MAGIC, CodesHeader, decode_bytes, encode_bytes, pack, read_codes,
                              unpack, write_codes)


def header(channels=1, n=37, frames=5, size=1024, samples=None, checksum="ab" * 32):
    samples = frames * 1920 if samples is None else samples
    return CodesHeader(model="m", checksum=checksum, sample_rate=24000, frame_rate=12.5, n_codebooks=n,
                       codebook_size=size, frames=frames, samples=samples, channels=channels)


@settings(max_examples=60, deadline=None)
@given(channels=st.integers(1, 3), n=st.integers(1, 37), frames=st.integers(0, 40),
       size=st.sampled_from([2, 3, 255, 256, 1000, 1024, 4096, 65536]), seed=st.integers(0, 2**31))
def test_round_trip_random_shapes(channels, n, frames, size, seed):
    codes = np.random.default_rng(seed).integers(0, size, (channels, n, frames))
    h = header(channels, n, frames, size, samples=max(0, frames * 1920 - seed % 1920) if frames else 0)
    data = encode_bytes(codes, h)
    back, h2 = decode_bytes(data)
    assert np.array_equal(back, codes) and back.dtype == np.int64
    assert h2 == h
    # the payload really is bit-packed: ceil(values * bits / 8) bytes
    assert h2.payload_bytes == math.ceil(codes.size * max(1, (size - 1).bit_length()) / 8)


def test_pack_matches_a_plain_bit_string():
    values = np.array([1, 1023, 0, 512])
    bits = "".join(format(v, "010b") for v in values)
    bits += "0" * (-len(bits) % 8)
    expected = bytes(int(bits[i: i + 8], 2) for i in range(0, len(bits), 8))
    assert pack(values, 10) == expected
    assert np.array_equal(unpack(expected, 10, 4), values)


@pytest.fixture
def good(tmp_path):
    codes = np.random.default_rng(0).integers(0, 1024, (1, 37, 12))
    path = tmp_path / "x.codes"
    write_codes(path, codes, header(frames=12))
    return path, codes


def test_file_round_trip_and_size(good):
    path, codes = good
    back, h = read_codes(path)
    assert np.array_equal(back, codes)
    payload = math.ceil(37 * 12 * 10 / 8)
    assert path.stat().st_size < payload + 400  # a small header, no padding beyond one byte


@pytest.mark.parametrize("damage,message", [
    (lambda d: d[: len(d) - 7], "truncated"),
    (lambda d: d[:9], "truncated"),
    (lambda d: d[: len(d) // 2], "truncated"),
    (lambda d: b"RIFF" + d[4:], "wrong magic"),
    (lambda d: b"", "wrong magic"),
    (lambda d: d + b"\0\0", "unexpected bytes"),
])
def test_damage_is_named(good, damage, message):
    path, _ = good
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(CodesFileError, match=message) as err:
        read_codes(path)
    assert str(path) in str(err.value)


@pytest.mark.parametrize("where", ["header", "payload", "crc"])
def test_a_flipped_byte_is_caught(good, where):
    path, _ = good
    data = bytearray(path.read_bytes())
    head_len = struct.unpack_from("<I", data, 8)[0]
    pos = {"header": 12 + head_len // 2, "payload": 12 + head_len + 10, "crc": len(data) - 2}[where]
    data[pos] ^= 0x04
    path.write_bytes(bytes(data))
    with pytest.raises(CodesFileError, match="damaged|invalid header"):
        read_codes(path)


def test_unknown_version_is_named(good):
    path, _ = good
    data = bytearray(path.read_bytes())
    struct.pack_into("<H", data, len(MAGIC), FORMAT_VERSION + 1)
    data[-4:] = struct.pack("<I", zlib.crc32(bytes(data[:-4])))  # a well-formed file of a future version
    path.write_bytes(bytes(data))
    with pytest.raises(CodesFileError, match=f"unknown format version {FORMAT_VERSION + 1}"):
        read_codes(path)


def test_other_model_is_refused(good):
    path, _ = good
    with pytest.raises(CodesFileError, match="made by model m"):
        read_codes(path, expect_checksum="cd" * 32)
    read_codes(path, expect_checksum="ab" * 32)


def test_writer_refuses_inconsistent_input(tmp_path):
    with pytest.raises(ValueError, match="shape"):
        encode_bytes(np.zeros((1, 8, 3), int), header(n=8, frames=4))
    with pytest.raises(ValueError, match=r"\[0, 1024\)"):
        encode_bytes(np.full((1, 8, 4), 1024), header(n=8, frames=4))
    with pytest.raises(ValueError, match="frames"):
        encode_bytes(np.zeros((1, 8, 4), int), header(n=8, frames=4, samples=100))


def test_missing_and_folder(tmp_path):
    with pytest.raises(CodesFileError, match="no such file"):
        read_codes(tmp_path / "none.codes")
    with pytest.raises(CodesFileError, match="folder"):
        read_codes(tmp_path)
