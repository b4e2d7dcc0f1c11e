"""The .codes format: exact round trips for random shapes, and each kind of damage gets its own error."""
import json
import math
import random
import struct
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from codec import CodesFileError
from codec.io.codes_file import (FORMAT_VERSION, MAGIC, CodesHeader, code_dtype, decode_bytes, encode_bytes, pack,
                              read_codes, read_header, unpack, write_codes)

from codes_fuzz import good_file, mutate


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
    assert np.array_equal(back, codes) and back.dtype == (np.uint8 if size <= 256 else np.uint16)
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


@pytest.mark.parametrize("bits", [1, 3, 8, 10, 13, 16])
def test_pack_and_unpack_across_their_blocks(bits):
    # both work through blocks of 65536 values: a count that ends mid-block and mid-byte, against a plain
    # bit string built value by value
    values = np.random.default_rng(bits).integers(0, 2**bits, 2 * 65536 + 13)
    bits_text = "".join(format(v, f"0{bits}b") for v in values)
    bits_text += "0" * (-len(bits_text) % 8)
    expected = int(bits_text, 2).to_bytes(len(bits_text) // 8, "big")
    assert pack(values, bits) == expected
    back = unpack(expected, bits, len(values))
    assert np.array_equal(back, values) and back.dtype == (np.uint8 if bits <= 8 else np.uint16)


def test_codes_are_read_in_the_smallest_type_in_bounded_memory(tmp_path):
    # 60 minutes at 37 codebooks: a 2 MB file. Bit-unpacking through int64 once took 80x that (167 MB).
    import tracemalloc

    frames = 45_000
    codes = np.random.default_rng(1).integers(0, 1024, (1, 37, frames))
    write_codes(tmp_path / "hour.codes", codes, header(frames=frames))
    size = (tmp_path / "hour.codes").stat().st_size
    tracemalloc.start()
    try:
        back, h = read_codes(tmp_path / "hour.codes")
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        assert read_header(tmp_path / "hour.codes") == h
        header_peak = tracemalloc.get_traced_memory()[1] - back.nbytes
    finally:
        tracemalloc.stop()
    assert back.dtype == code_dtype(1024) == np.uint16 and np.array_equal(back, codes)
    assert peak < 6 * size, peak / size  # the file, the codes at 2 bytes each and their transposed copy
    assert header_peak < 3 * 2**20  # the file's CRC is checked a block at a time; the payload is never held


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


def test_read_header_checks_the_file_without_unpacking_it(good, monkeypatch):
    import codec.io.codes_file

    path, codes = good
    monkeypatch.setattr(codec.io.codes_file, "unpack", lambda *a, **k: pytest.fail("read_header unpacked the payload"))
    h = read_header(path)
    assert (h.channels, h.n_codebooks, h.frames) == codes.shape
    data = bytearray(path.read_bytes())
    data[-10] ^= 0x01  # a payload byte: only the CRC can tell
    path.write_bytes(bytes(data))
    with pytest.raises(CodesFileError, match="damaged: CRC32 mismatch"):
        read_header(path)
    with pytest.raises(CodesFileError, match="no such file"):
        read_header(path.with_name("none.codes"))


def test_missing_and_folder(tmp_path):
    with pytest.raises(CodesFileError, match="no such file"):
        read_codes(tmp_path / "none.codes")
    with pytest.raises(CodesFileError, match="folder"):
        read_codes(tmp_path)


def _with_header(data: bytes, head: bytes, fix_crc: bool = True) -> bytes:
    """`data` with its JSON header replaced by `head` (and, as a crafted file would have, a matching CRC)."""
    head_len = struct.unpack_from("<I", data, 8)[0]
    body = data[:8] + struct.pack("<I", len(head)) + head + data[12 + head_len: -4]
    return body + (struct.pack("<I", zlib.crc32(body)) if fix_crc else data[-4:])


def _edited(data: bytes, **changes) -> bytes:
    fields = json.loads(data[12: 12 + struct.unpack_from("<I", data, 8)[0]])
    fields.update(changes)
    return _with_header(data, json.dumps(fields).encode())


@pytest.mark.parametrize("craft,message", [
    (lambda d: _with_header(d, b"[" * 100_000 + b"]" * 100_000), "nested too deeply"),
    (lambda d: _edited(d, frame_rate=1e6, sample_rate=1), "frame_rate must be"),
    (lambda d: _edited(d, frame_rate=0), "frame_rate must be"),
    (lambda d: _with_header(d, _edited_text(d, "frames", "1" + "0" * 400)), "frames must be an integer"),
    (lambda d: _with_header(d, _edited_text(d, "frames", "1" + "0" * 5000)), "invalid header"),
    (lambda d: _with_header(d, _edited_text(d, "frame_rate", "NaN")), "NaN is not a number"),
    (lambda d: _with_header(d, _edited_text(d, "frame_rate", "1e400")), "frame_rate must be"),
    (lambda d: _edited(d, checksum=12), "checksum must be"),
    (lambda d: _edited(d, model="a\nb"), "model must be"),
    (lambda d: _edited(d, samples=0), "0 samples need 0 frames, header says 12"),
    (lambda d: _edited(d, samples=12 * 1920 + 1), "need 13 frames"),
    (lambda d: _edited(d, channels=True), "channels must be an integer"),
    (lambda d: _edited(d, meta=[1]), "meta must be"),
    (lambda d: _edited(d, extra=1), "unknown field 'extra'"),
    (lambda d: _with_header(d, b'{"model": "m"}'), "missing field"),
    (lambda d: _with_header(d, b"[1, 2]"), "not a JSON object"),
    (lambda d: _with_header(d, b"\xff\xfe"), "invalid header"),
    (lambda d: _edited(d, frames=13, samples=13 * 1920), "promises"),
])
def test_crafted_headers_are_refused_by_the_schema(good, craft, message):
    path, _ = good
    path.write_bytes(craft(path.read_bytes()))
    with pytest.raises(CodesFileError, match=message) as err:
        read_codes(path)
    assert str(err.value).startswith(f"{path}: invalid header")


def _edited_text(data: bytes, key: str, text: str) -> bytes:
    """The header's JSON with `key`'s value replaced by raw JSON text (what json.dumps cannot write)."""
    fields = json.loads(data[12: 12 + struct.unpack_from("<I", data, 8)[0]])
    fields[key] = "@@"
    return json.dumps(fields).replace('"@@"', text).encode()


def test_the_crc_is_checked_before_the_header_is_believed(good):
    path, _ = good
    data = path.read_bytes()
    crafted = _edited(data, samples=0)
    path.write_bytes(crafted[:-4] + data[-4:])  # the same crafted header, the CRC not fixed
    with pytest.raises(CodesFileError, match="damaged: CRC32 mismatch"):
        read_codes(path)


GOOD = good_file()


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rng=st.randoms(use_true_random=False))
def test_mutated_files_raise_only_codes_file_error(rng: random.Random):
    data = mutate(rng, GOOD)
    try:
        codes, h = decode_bytes(data, "fuzz.codes")
    except CodesFileError as err:
        assert str(err).startswith("fuzz.codes: ") and "\n" not in str(err)
        return
    assert codes.shape == (h.channels, h.n_codebooks, h.frames) and codes.max(initial=0) < h.codebook_size


def _outcome(read):
    try:
        codes, h = read()
    except CodesFileError as err:
        return "error", str(err)
    return "read", h, None if codes is None else codes.tolist()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rng=st.randoms(use_true_random=False))
def test_files_are_judged_as_their_bytes_are(rng: random.Random):
    # read_codes and read_header read the file in pieces; they must reach decode_bytes's verdict, except that
    # read_header never unpacks, so a code out of range is not its to find
    import tempfile
    from pathlib import Path

    data = mutate(rng, GOOD)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "fuzz.codes"
        path.write_bytes(data)
        from_bytes = _outcome(lambda: decode_bytes(data, str(path)))
        assert _outcome(lambda: read_codes(path)) == from_bytes
        header_only = _outcome(lambda: (None, read_header(path)))
    if from_bytes[0] == "read":
        assert header_only[:2] == from_bytes[:2]
    elif "a code is >= codebook_size" in from_bytes[1]:
        assert header_only[0] == "read"
    else:
        assert header_only == from_bytes
