"""The command line end to end with the shipped model: formats, rates, channels, chunking, bad input."""
import errno
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import codec
from codec.cli import main
from codec.io.codes_file import read_codes
from codec.io.file_coding import encode_stream

from conftest import speech_like

SAMPLE = Path(__file__).parent / "data" / "speech.flac"
SHIPPED_STREAM_DRIFT = 1e-3  # streamed against offline decoding, as a share of the peak (below)


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
    """Chunks run the encoder's convolutions and transforms on other lengths than one pass does, so its
    latent agrees only to float rounding (about 1e-6 relative): a residual VQ code can flip where two
    entries tie within that (1 of the 3,256 codes here at 0.5 s chunks). The pitch slots never differ."""
    x = speech_like(7.0, rate=24000, seed=3)
    sf.write(tmp_path / "long.wav", x, 24000, subtype="FLOAT")
    one_pass = model.encode(torch.from_numpy(x), 24000)
    for seconds in (0.05, 0.5, 1.234, 100.0):
        chunked, samples = encode_stream(model, tmp_path / "long.wav", chunk_seconds=seconds)
        assert samples == len(x) and chunked.shape == one_pass.shape
        assert torch.equal(chunked[:, :2], one_pass[:, :2]), seconds
        assert (chunked != one_pass).float().mean() <= 1e-3, seconds


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
    assert run("encode", tmp_path, "-o", f"{tmp_path / 'codes'}/", "-n", "17", "-q") == 0
    made = sorted((tmp_path / "codes").glob("*.codes"))
    assert [p.stem for p in made] == ["a0", "a1", "a2"]
    assert read_codes(made[0])[1].n_codebooks == 17
    assert run("decode", str(tmp_path / "codes" / "*.codes"), "-o", f"{tmp_path / 'wavs'}/", "-q") == 0
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
    # Frame by frame and all at once, the network rounds differently (~1e-7) and the phase work carries it on
    # (a bin's place in the heap walk, the Griffin-Lim passes): `codec diagnose stream` has measured 3.8e-2 of
    # the peak in one local event in 60 s of test speech with these weights, 3.0e-5 in the median second;
    # this 0.7 s clip has no such event. Plus 16-bit rounding.
    assert np.abs(pcm.astype(int) - ref).max() <= 1 + SHIPPED_STREAM_DRIFT * np.abs(ref).max()


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
    import codec

    cfg = codec.load().config  # the decoding settings the package ships, as its config.json says
    assert f"{cfg.phase_iterations} Griffin-Lim passes" in out and f"harmonic contrast {cfg.harmonic_contrast:g}" in out


def test_usage_error_exit_code(tmp_path):
    sf.write(tmp_path / "s.wav", speech_like(0.3), 24000)
    assert run("encode", tmp_path / "s.wav", "-n", "40") == 2


def test_folder_trees_are_mirrored(tmp_path):
    for sub, seed in (("a", 0), ("b", 1), ("b/deep", 2)):
        (tmp_path / "in" / sub).mkdir(parents=True)
        sf.write(tmp_path / "in" / sub / "x.wav", speech_like(0.3, seed=seed), 24000)
    assert run("encode", tmp_path / "in", "-o", f"{tmp_path / 'codes'}/", "-n", "4", "-q") == 0
    made = sorted(p.relative_to(tmp_path / "codes").as_posix() for p in (tmp_path / "codes").rglob("*.codes"))
    assert made == ["a/x.codes", "b/deep/x.codes", "b/x.codes"]
    assert read_codes(tmp_path / "codes" / "a" / "x.codes")[1].meta["source"] == "x.wav"
    assert run("decode", str(tmp_path / "codes" / "**" / "*.codes"), "-o", f"{tmp_path / 'wavs'}/", "-q") == 0
    wavs = sorted(p.relative_to(tmp_path / "wavs").as_posix() for p in (tmp_path / "wavs").rglob("*.wav"))
    assert wavs == ["a/x.wav", "b/deep/x.wav", "b/x.wav"]


@pytest.mark.parametrize("case", ["same stem", "same stem, no -o", "-o not a folder", "folder, -o not a folder",
                                  "output is an input", "codes under an audio name"])
def test_outputs_that_would_collide_are_refused_before_writing(tmp_path, capsys, case):
    (tmp_path / "in").mkdir()
    sf.write(tmp_path / "in" / "x.wav", speech_like(0.3), 24000)
    sf.write(tmp_path / "in" / "x.flac", speech_like(0.3, seed=1), 24000)
    sf.write(tmp_path / "in" / "y.wav", speech_like(0.3, seed=2), 24000)
    before = sorted(tmp_path.rglob("*"))
    args, named = {
        "same stem": (["encode", tmp_path / "in", "-o", f"{tmp_path / 'out'}/"], ["x.flac", "x.wav"]),
        "same stem, no -o": (["encode", tmp_path / "in" / "x.wav", tmp_path / "in" / "x.flac"], ["x.flac", "x.wav"]),
        "-o not a folder": (["encode", tmp_path / "in" / "x.wav", tmp_path / "in" / "y.wav",
                             "-o", tmp_path / "two.codes"],
                            ["two.codes", "folder"]),
        "folder, -o not a folder": (["encode", tmp_path / "in", "-o", tmp_path / "out"], ["out/", "folder"]),
        "output is an input": (["encode", tmp_path / "in" / "y.wav", "-o", tmp_path / "in" / "y.wav"],
                               ["y.wav", "input"]),
        "codes under an audio name": (["encode", tmp_path / "in" / "y.wav", "-o", tmp_path / "in" / "x.flac"],
                                      ["x.flac", "x.codes", "not audio"]),
    }[case]
    assert run(*args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and all(word in err[0] for word in named), err
    assert sorted(tmp_path.rglob("*")) == before  # nothing written, no folder made


@pytest.fixture
def read_only(monkeypatch):
    """Make a folder read-only. Root writes through permission bits, so there creating a file in it is
    refused the way the OS refuses everyone else."""
    import codec.io.atomic
    folders = []

    def make(folder: Path) -> Path:
        folder.chmod(0o555)
        folders.append(folder)
        probe = folder / ".probe"
        try:
            probe.write_bytes(b"")
        except PermissionError:
            return folder
        probe.unlink()
        real = codec.io.atomic.tempfile.mkstemp

        def mkstemp(*args, dir=None, **kwargs):
            if Path(dir) in folders:
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(dir))
            return real(*args, dir=dir, **kwargs)

        monkeypatch.setattr(codec.io.atomic.tempfile, "mkstemp", mkstemp)
        return folder

    yield make
    for folder in folders:
        folder.chmod(0o755)


def test_read_only_output_folder_fails_that_file_only(tmp_path, capsys, read_only):
    for name in ("ro", "rw"):
        (tmp_path / name).mkdir()
        sf.write(tmp_path / name / "x.wav", speech_like(0.3), 24000)
    read_only(tmp_path / "ro")
    assert run("encode", tmp_path / "ro" / "x.wav", tmp_path / "rw" / "x.wav", "-n", "4") == 6
    err = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert err == [f"codec: error: {tmp_path / 'ro' / 'x.codes'}: cannot write (Permission denied)"]
    assert read_codes(tmp_path / "rw" / "x.codes")[1].n_codebooks == 4  # the next input was still coded
    assert sorted(p.name for p in (tmp_path / "ro").iterdir()) == ["x.wav"]


def _fail_when_full(write, name: str):
    """`write` that writes part of the data and then fails with ENOSPC when the target's name holds `name`."""
    def full(self, data, *args, **kwargs):
        if name in str(getattr(self, "name", self)):
            write(self, data[: len(data) // 2], *args, **kwargs)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return write(self, data, *args, **kwargs)
    return full


def test_full_disk_while_decoding_keeps_earlier_output_and_goes_on(tmp_path, capsys, monkeypatch):
    for name in ("first", "second"):
        sf.write(tmp_path / f"{name}.wav", speech_like(0.5), 24000)
        assert run("encode", tmp_path / f"{name}.wav", "-o", tmp_path / "codes" / f"{name}.codes", "-n", "4", "-q") == 0
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "first.wav").write_bytes(b"precious earlier result")
    monkeypatch.setattr(sf.SoundFile, "write", _fail_when_full(sf.SoundFile.write, "first"))
    assert run("decode", tmp_path / "codes", "-o", tmp_path / "out", "-q") == 6
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"codec: error: {tmp_path / 'out' / 'first.wav'}: cannot write (No space left on device)"]
    assert (tmp_path / "out" / "first.wav").read_bytes() == b"precious earlier result"
    assert sf.info(tmp_path / "out" / "second.wav").frames == 12000
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["first.wav", "second.wav"]  # no partial file


def test_full_disk_while_encoding_leaves_no_partial_file(tmp_path, capsys, monkeypatch):
    sf.write(tmp_path / "x.wav", speech_like(0.3), 24000)
    monkeypatch.setattr(Path, "write_bytes", _fail_when_full(Path.write_bytes, "x.codes"))
    assert run("encode", tmp_path / "x.wav", "-q") == 6
    assert "x.codes: cannot write (No space left on device)" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.wav"]


def test_crafted_codes_header_gets_one_line(tmp_path, capsys):
    import json
    import struct
    import zlib
    sf.write(tmp_path / "s.wav", speech_like(0.5), 24000)
    assert run("encode", tmp_path / "s.wav", "-q") == 0
    data = (tmp_path / "s.codes").read_bytes()
    head_len = struct.unpack_from("<I", data, 8)[0]
    fields = json.loads(data[12: 12 + head_len])
    fields["samples"] = 0  # frames say otherwise: once an empty wav with exit 0
    head = json.dumps(fields).encode()
    body = data[:8] + struct.pack("<I", len(head)) + head + data[12 + head_len: -4]
    (tmp_path / "bad.codes").write_bytes(body + struct.pack("<I", zlib.crc32(body)))
    for command in (["info", tmp_path / "bad.codes"], ["decode", tmp_path / "bad.codes", "-q"]):
        assert run(*command) == 4
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "bad.codes: invalid header (0 samples need 0 frames" in err[0], err
    assert not (tmp_path / "bad.wav").exists()


def _codes_file(path: Path, frames: int = 4) -> Path:
    from codec.io.codes_file import CodesHeader, write_codes

    header = CodesHeader(model="m", checksum="ab" * 32, sample_rate=24000, frame_rate=12.5, n_codebooks=8,
                         codebook_size=1024, frames=frames, samples=frames * 1920)
    write_codes(path, np.random.default_rng(frames).integers(0, 1024, (1, 8, frames)), header)
    return path


@pytest.mark.parametrize("args,named", [
    (["decode", "--stream", "{codes}", "-o", "{tmp}/y.wav"], "--stream"),
    (["decode", "{codes}", "{codes2}", "-o", "-"], "exactly one codes file"),
    (["decode", "{codes}", "-o", "{tmp}/x.txt"], "x.txt: '.txt' is not an audio format"),
    (["decode", "{codes}", "-o", "{tmp}/x"], "x: no suffix is not an audio format"),
    (["decode", "{codes}", "--chunk-frames", "0"], "--chunk-frames must be at least 1, got 0"),
    (["decode", "{codes}", "--threads", "0"], "--threads must be at least 1, got 0"),
    (["encode", "{wav}", "--chunk-seconds", "0"], "--chunk-seconds must be a positive number of seconds, got 0"),
    (["encode", "{wav}", "--chunk-seconds", "-1.5"], "got -1.5"),
    (["encode", "{wav}", "--chunk-seconds", "nan"], "got nan"),
])
def test_misused_options_are_usage_errors(tmp_path, capsys, args, named):
    names = {"codes": _codes_file(tmp_path / "a.codes"), "codes2": _codes_file(tmp_path / "b.codes", 3),
             "wav": tmp_path / "s.wav", "tmp": tmp_path}
    sf.write(names["wav"], speech_like(0.3), 24000)
    before = sorted(tmp_path.rglob("*"))
    assert run(*[a.format(**names) for a in args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and named in err[0], err
    assert sorted(tmp_path.rglob("*")) == before  # refused before anything was written


def test_the_file_functions_refuse_what_the_options_refuse(tmp_path):
    from codec.io.file_coding import decode_file

    with pytest.raises(ValueError, match="chunk_seconds must be a positive number of seconds, got 0"):
        encode_stream(None, tmp_path / "s.wav", chunk_seconds=0)
    with pytest.raises(ValueError, match="chunk_frames must be at least 1, got -1"):
        decode_file(None, tmp_path / "a.codes", tmp_path / "a.wav", chunk_frames=-1)
    with pytest.raises(codec.UsageError, match="'.txt' is not an audio format"):
        decode_file(None, tmp_path / "a.codes", tmp_path / "a.txt")


def test_decoded_audio_follows_the_suffix(tmp_path):
    sf.write(tmp_path / "s.wav", speech_like(0.3), 24000)
    assert run("encode", tmp_path / "s.wav", "-n", "4", "-q") == 0
    for suffix, kind in ((".flac", "FLAC"), (".ogg", "OGG"), (".AIFF", "AIFF")):
        assert run("decode", tmp_path / "s.codes", "-o", tmp_path / f"y{suffix}", "-q") == 0
        assert sf.info(tmp_path / f"y{suffix}").format == kind


def test_info_reports_every_file_and_each_failure(tmp_path, capsys, monkeypatch):
    import codec.io.codes_file

    good, other = _codes_file(tmp_path / "a.codes", 4), _codes_file(tmp_path / "c.codes", 2)
    (tmp_path / "b.codes").write_bytes(b"CODEC\0junk")
    # info reads headers only: unpacking a payload would be a bug here
    monkeypatch.setattr(codec.io.codes_file, "unpack", lambda *a, **k: pytest.fail("codec info unpacked a payload"))
    assert run("info", good, tmp_path / "b.codes", tmp_path / "missing.codes", other) == 4
    out, err = capsys.readouterr()
    assert [line.split(":")[0] for line in out.splitlines()] == [str(good), str(other)]
    assert "8 codebooks x 4 frames, 0.32 s" in out
    assert err.splitlines() == [
        f"codec: error: {tmp_path / 'b.codes'}: truncated: 10 bytes, shorter than the fixed header",
        f"codec: error: {tmp_path / 'missing.codes'}: no such file"]
