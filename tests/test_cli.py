"""The command line end to end with the shipped model: formats, rates, channels, chunking, bad input."""
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import codec
from codec.cli import main
from codec.codes_file import read_codes
from codec.streaming_io import encode_stream

from conftest import speech_like

SAMPLE = Path(__file__).parent / "data" / "speech.flac"


@pytest.fixture(scope="module")
def model():
    return codec.load()


def run(*args) -> int:
    return main([str(a) for a in args])


@pytest.mark.parametrize("suffix,rate,channels", [
    (".wav", 8000, 1), (".wav", 48000, 2), (".flac", 16000, 2), (".ogg", 44100, 1), (".flac", 22050, 1),
])
def test_encode_decode_round_trip_keeps_duration(tmp_path, suffix, rate, channels):
    x = speech_like(1.3, rate=rate)
    data = np.stack([x, 0.5 * x], axis=1)[:, :channels]
    src = tmp_path / f"in{suffix}"
    sf.write(src, data, rate)
    n_in = sf.info(src).frames  # ogg may round: judge against what the file really holds
    assert run("encode", src, "-o", tmp_path / "x.codes", "-q") == 0
    assert run("decode", tmp_path / "x.codes", "-o", tmp_path / "y.wav", "-q") == 0
    info = sf.info(tmp_path / "y.wav")
    assert info.samplerate == 24000 and info.channels == 1
    assert info.frames == round(n_in * 24000 / rate)  # same duration, to the resampled sample
    _, header = read_codes(tmp_path / "x.codes")
    assert header.frames == math.ceil(info.frames / 1920)


def test_channels_coded_one_by_one_on_request(tmp_path):
    x = speech_like(0.8, rate=24000)
    sf.write(tmp_path / "st.wav", np.stack([x, -x], axis=1), 24000)
    assert run("encode", tmp_path / "st.wav", "--keep-channels", "-n", "8", "-o", tmp_path / "st.codes", "-q") == 0
    codes, header = read_codes(tmp_path / "st.codes")
    assert header.channels == 2 and codes.shape[:2] == (2, 8)
    assert run("decode", tmp_path / "st.codes", "-o", tmp_path / "st_out.flac", "-q") == 0
    assert sf.info(tmp_path / "st_out.flac").channels == 2


def test_chunked_encoding_equals_one_pass(model, tmp_path):
    x = speech_like(7.0, rate=24000, seed=3)
    sf.write(tmp_path / "long.wav", x, 24000, subtype="FLOAT")
    one_pass = model.encode(torch.from_numpy(x), 24000)
    for seconds in (0.05, 0.5, 1.234, 100.0):
        chunked, samples = encode_stream(model, tmp_path / "long.wav", chunk_seconds=seconds)
        assert samples == len(x)
        assert torch.equal(chunked, one_pass), seconds


def test_chunked_resampling_does_not_depend_on_chunk_size(model, tmp_path):
    x = speech_like(4.0, rate=16000, seed=4)
    sf.write(tmp_path / "r.wav", x, 16000, subtype="FLOAT")
    a, n_a = encode_stream(model, tmp_path / "r.wav", chunk_seconds=0.3)
    b, n_b = encode_stream(model, tmp_path / "r.wav", chunk_seconds=60)
    assert n_a == n_b == 24000 * 4
    assert torch.equal(a, b)


def test_folders_globs_and_n_codebooks(tmp_path):
    for i in range(3):
        sf.write(tmp_path / f"a{i}.wav", speech_like(0.5, seed=i), 24000)
    assert run("encode", tmp_path, "-o", tmp_path / "codes", "-n", "17", "-q") == 0
    made = sorted((tmp_path / "codes").glob("*.codes"))
    assert [p.stem for p in made] == ["a0", "a1", "a2"]
    assert read_codes(made[0])[1].n_codebooks == 17
    assert run("decode", str(tmp_path / "codes" / "*.codes"), "-o", tmp_path / "wavs", "-q") == 0
    assert len(list((tmp_path / "wavs").glob("*.wav"))) == 3


def test_stream_to_stdout_equals_file_decode(tmp_path):
    sf.write(tmp_path / "s.wav", speech_like(0.7), 24000)
    assert run("encode", tmp_path / "s.wav", "-o", tmp_path / "s.codes", "-q") == 0
    assert run("decode", tmp_path / "s.codes", "-o", tmp_path / "s_out.wav", "-q") == 0
    raw = subprocess.run([sys.executable, "-m", "codec.cli", "decode", str(tmp_path / "s.codes"), "-o", "-"],
                         capture_output=True, check=True).stdout
    pcm = np.frombuffer(raw, dtype="<i2")
    ref, _ = sf.read(tmp_path / "s_out.wav", dtype="int16")
    assert len(pcm) == len(ref) == round(0.7 * 24000)
    assert np.abs(pcm.astype(int) - ref).max() <= 1  # same samples up to 16-bit rounding


def _make_bad(kind: str, path: Path) -> Path:
    if kind == "missing":
        return path
    if kind == "empty":
        sf.write(path, np.zeros(0, np.float32), 24000)
    elif kind == "not audio":
        path.write_text("this is not audio\n")
    elif kind == "nan":
        x = speech_like(0.5)
        x[1000] = np.nan
        sf.write(path, x, 24000, subtype="FLOAT")
    elif kind == "silent":
        sf.write(path, np.zeros(24000, np.float32), 24000)
    elif kind == "folder":
        path.mkdir()
    return path


@pytest.mark.parametrize("kind,message", [
    ("missing", "no such file"), ("empty", "empty audio"), ("not audio", "not a readable audio file"),
    ("nan", "NaN"), ("silent", "silent"), ("folder", "no .*files"),
])
def test_bad_input_gets_one_line_error_and_leaves_outputs_alone(tmp_path, kind, message):
    bad = _make_bad(kind, tmp_path / "bad.wav")
    out = tmp_path / "out.codes"
    out.write_bytes(b"precious earlier result")
    proc = subprocess.run([sys.executable, "-m", "codec.cli", "encode", str(bad), "-o", str(out)],
                          capture_output=True, text=True)
    assert proc.returncode == 3
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr
    assert str(bad) in lines[0] or kind == "folder"
    assert __import__("re").search(message, lines[0]), lines[0]
    assert out.read_bytes() == b"precious earlier result"  # nothing already written is lost
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no temp files left


def test_damaged_codes_file_is_rejected_cleanly(tmp_path):
    sf.write(tmp_path / "s.wav", speech_like(0.5), 24000)
    assert run("encode", tmp_path / "s.wav", "-o", tmp_path / "s.codes", "-q") == 0
    data = bytearray((tmp_path / "s.codes").read_bytes())
    data[len(data) // 2] ^= 0x10
    (tmp_path / "bad.codes").write_bytes(bytes(data))
    proc = subprocess.run([sys.executable, "-m", "codec.cli", "decode", str(tmp_path / "bad.codes"),
                           "-o", str(tmp_path / "bad.wav")], capture_output=True, text=True)
    assert proc.returncode == 4 and "Traceback" not in proc.stderr
    assert "bad.codes" in proc.stderr
    assert not (tmp_path / "bad.wav").exists()


def test_info_describes_the_shipped_model(capsys):
    assert run("info") == 0
    out = capsys.readouterr().out
    assert "37 x 1024" in out and "4.62 kbit/s" in out and "training" in out


def test_usage_error_exit_code(tmp_path):
    sf.write(tmp_path / "s.wav", speech_like(0.3), 24000)
    assert run("encode", tmp_path / "s.wav", "-n", "40") == 2
