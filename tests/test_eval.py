"""codec eval end to end and its codec adapters, on answers known in advance."""
from __future__ import annotations

import json
import math
import shutil
import struct
import textwrap

import numpy as np
import pytest
import soundfile as sf
import soxr

from codec.eval.baselines import ogg_payload_bytes
from codec.eval import CodecUnavailable, make_codec
from codec.eval.extras import EXTRAS, ExtraUnavailable, normalize_text, wer, word_errors
from codec.cli import main as cli_main


def main(args: list[str]) -> int:
    """`codec eval ARGS`."""
    return cli_main(["eval", *args])

RATE = 24000

# A plugin codec with a known answer: lossless 16-bit PCM delayed by `setting` samples. The report must find
# the delay exactly, give PESQ-WB at its ceiling and measure exactly 16 bits x 24000 / s.
PLUGIN = textwrap.dedent('''
    import numpy as np
    from codec.eval import register

    class DelayedPcm:
        sample_rate = 24000

        def __init__(self, setting):
            self.k = int(setting)
            self.name = f"pcm:{setting}"

        def encode(self, wav):
            return np.round(np.clip(wav, -1, 1) * 32767).astype("<i2").tobytes()

        def decode(self, data, length):
            return np.concatenate([np.zeros(self.k), np.frombuffer(data, "<i2") / 32767])

        def bitrate(self):
            return 16.0 * self.sample_rate

    register("pcm", DelayedPcm)
''')


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    x, rate = sf.read("tests/data/speech.flac", dtype="float64")
    return soxr.resample(x, rate, RATE)


@pytest.fixture()
def folder(tmp_path, speech):
    """Two speech files and one too short for PESQ and STOI (0.2 s)."""
    d = tmp_path / "clips"
    d.mkdir()
    sf.write(d / "a.wav", speech, RATE)
    sf.write(d / "b.flac", speech[::-1].copy(), RATE)  # reversed speech: same spectrum, other waveform
    sf.write(d / "short.wav", speech[RATE: RATE + int(0.2 * RATE)], RATE)
    plugin = tmp_path / "pcm_plugin.py"
    plugin.write_text(PLUGIN)
    return d, plugin


def test_plugin_codec_end_to_end_known_answers(folder, tmp_path, capsys):
    clips, plugin = folder
    out = tmp_path / "out"
    assert main([str(clips), "--plugin", str(plugin), "--codec", "pcm:137", "--out", str(out), "-q"]) == 0
    table = capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())["codecs"]["pcm:137"]
    assert summary["files"] == 3
    assert summary["measured_kbps"] == pytest.approx(16 * 24 * 1.0, rel=1e-9)  # 2 bytes per sample, exactly
    for name in ("a", "b"):
        result = json.loads((out / "files" / "pcm_137" / f"{name}.json").read_text())
        assert result["delay_samples"] == 137
        assert result["metrics"]["pesq_wb"] == pytest.approx(4.644, abs=0.01)
        assert result["metrics"]["stoi"] == pytest.approx(1.0, abs=1e-4)
    short = json.loads((out / "files" / "pcm_137" / "short.json").read_text())["metrics"]
    assert short["pesq_wb"].startswith("n/a: PESQ needs at least 0.25 s")
    # The short file is reported, never averaged in: the mean is over the 2 computable files.
    assert summary["pesq_wb_n"] == 2 and summary["pesq_wb"] == pytest.approx(4.644, abs=0.01)
    assert "not computable" in table and "| pcm:137 |" in table and "(2)" in table
    for name in ("summary.md", "summary.csv", "rate_quality.png", "spectrogram.png"):
        assert (out / name).stat().st_size > 0
    assert (out / "summary.csv").read_text().splitlines()[0].startswith("codec,files,seconds,nominal_kbps")


def test_report_resumes_without_recomputing(folder, tmp_path):
    clips, plugin = folder
    out = tmp_path / "out"
    args = [str(clips), "--plugin", str(plugin), "--codec", "pcm:5", "--out", str(out), "-q", "--no-plots"]
    assert main(args) == 0
    stamps = {p: p.stat().st_mtime_ns for p in (out / "files").rglob("*.json")}
    assert len(stamps) == 3
    assert main(args) == 0
    assert {p: p.stat().st_mtime_ns for p in (out / "files").rglob("*.json")} == stamps


def test_parallel_workers_give_the_same_results(folder, tmp_path, speech):
    _, plugin = folder
    clips = tmp_path / "two_clips"  # short clips: the cost here is starting two worker processes
    clips.mkdir()
    sf.write(clips / "x.wav", speech[:RATE], RATE)
    sf.write(clips / "y.wav", speech[RATE: 2 * RATE], RATE)
    common = [str(clips), "--plugin", str(plugin), "--codec", "pcm:3", "-q", "--no-plots"]
    assert main(common + ["--out", str(tmp_path / "one")]) == 0
    assert main(common + ["--out", str(tmp_path / "two"), "--workers", "2"]) == 0
    for path in (tmp_path / "one" / "files").rglob("*.json"):
        other = tmp_path / "two" / path.relative_to(tmp_path / "one")
        # equal to the last few ulps: threaded numpy reductions may order a sum differently in another process
        expected = json.loads(path.read_text())["metrics"]
        assert json.loads(other.read_text())["metrics"] == pytest.approx(expected, rel=1e-12)


def test_bad_input_file_is_named_and_the_rest_still_evaluated(folder, tmp_path, capsys):
    clips, plugin = folder
    (clips / "broken.wav").write_bytes(b"not audio at all")
    code = main([str(clips), "--plugin", str(plugin), "--codec", "pcm:0", "--out", str(tmp_path / "o"), "-q",
                 "--no-plots"])
    assert code == 3
    err = capsys.readouterr().err
    assert "broken.wav: not a readable audio file" in err
    assert json.loads((tmp_path / "o" / "summary.json").read_text())["codecs"]["pcm:0"]["files"] == 3


def test_unknown_codec_and_missing_tool(monkeypatch):
    with pytest.raises(ValueError, match="unknown family 'nope'"):
        make_codec("nope:3")
    with pytest.raises(ValueError, match="modes are"):
        make_codec("codec2:999")
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(CodecUnavailable, match="apt-get install opus-tools"):
        make_codec("opus:6")


def test_our_codec_bytes_are_a_codes_file(speech):
    ours = make_codec("codec:3")
    x = speech[: 5 * 1920 + 7]
    data = ours.encode(x)
    frames = math.ceil(len(x) / 1920)
    assert ours.payload_bytes(data) == math.ceil(3 * frames * 10 / 8)  # 10 bits per index, bit-packed
    assert ours.tokens(data).shape == (3, frames)
    assert len(ours.decode(data, len(x))) == len(x)
    assert ours.bitrate() == 3 * 10 * 12.5


def _ogg_page(packets_segments: list[int]) -> bytes:
    """One Ogg page with the given lacing values and zero-filled body."""
    head = b"OggS" + bytes([0, 0]) + struct.pack("<QIII", 0, 1, 0, 0) + bytes([len(packets_segments)])
    return head + bytes(packets_segments) + bytes(sum(packets_segments))


def test_ogg_payload_skips_headers_and_page_overhead():
    # page 1: header packet of 19 bytes; page 2: tags packet of 255 + 10 bytes; page 3: packets of 30 and 255+0.
    data = _ogg_page([19]) + _ogg_page([255, 10]) + _ogg_page([30, 255, 0])
    assert ogg_payload_bytes(data) == 30 + 255


@pytest.mark.skipif(shutil.which("c2enc") is None, reason="codec2 tools not installed (apt-get install codec2)")
@pytest.mark.parametrize("mode, bytes_per_frame, frame_s", [("3200", 8, 0.02), ("1600", 8, 0.04), ("700C", 4, 0.04)])
def test_codec2_writes_its_exact_frame_size(speech, mode, bytes_per_frame, frame_s):
    c2 = make_codec(f"codec2:{mode}")
    x = soxr.resample(speech, RATE, 8000)
    data = c2.encode(x)
    assert len(data) == len(x) // int(frame_s * 8000) * bytes_per_frame
    assert abs(len(c2.decode(data, len(x))) - len(x)) <= frame_s * 8000


@pytest.mark.parametrize("spec, tool", [("opus:6", "opusenc"), ("opus:12", "opusenc"), ("speex:8", "speexenc"),
                                        ("amrwb:12.65", "ffmpeg")])
def test_classic_codecs_produce_their_bitrate_and_intelligible_speech(speech, spec, tool):
    if shutil.which(tool) is None:
        pytest.skip(f"{tool} not installed")
    try:
        c = make_codec(spec)
    except CodecUnavailable as err:
        pytest.skip(str(err))
    from codec.eval.align import align
    from codec.eval.metrics import stoi

    x = soxr.resample(speech, RATE, c.sample_rate)
    data = c.encode(x)
    payload_kbps = c.payload_bytes(data) * 8 / (len(x) / c.sample_rate) / 1000
    assert payload_kbps == pytest.approx(c.bitrate() / 1000, rel=0.12)
    y = soxr.resample(c.decode(data, len(x)), c.sample_rate, RATE)
    aligned, _ = align(speech, y, RATE)
    assert stoi(speech, aligned, RATE) > 0.8  # these codecs keep speech intelligible at these rates


def test_word_error_rate_known_answers():
    assert normalize_text("Hello, world! It's  fine.") == ["hello", "world", "it's", "fine"]
    assert word_errors("a b c d".split(), "a x c".split()) == 2  # one substitution, one deletion
    assert wer("the cat sat", "the cat sat") == 0.0
    assert wer("the cat sat", "a cat sat down") == pytest.approx(2 / 3)


def test_missing_extra_names_its_pip_command(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "speechmos" else real(name, *a))
    with pytest.raises(ExtraUnavailable, match="pip install --no-deps speechmos"):
        EXTRAS["dnsmos"]()


def test_corpus_split_and_max_clips_spread_over_the_set(tmp_path, speech):
    from codec.errors import InputError
    from codec.eval.clips import find_clips

    pcm = np.round(speech[:RATE] * 32767).astype(np.int16)
    records = [{"path": f"s/{i}.wav", "split": "test" if i % 2 else "train", "source": "toy", "offset": 0,
                "length": len(pcm)} for i in range(10)]
    (tmp_path / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    np.save(tmp_path / "samples.npy", pcm)
    (tmp_path / "summary.json").write_text(json.dumps({"sample_rate": RATE}))
    clips, name = find_clips(tmp_path / "manifest.jsonl", "test", max_clips=3)
    assert [c.id for c in clips] == ["00000_1", "00002_5", "00004_9"]  # first, middle, last of the 5 test clips
    assert name == f"{tmp_path.name}:test (toy)"
    assert np.allclose(clips[0].load(), pcm / 32767)
    with pytest.raises(InputError, match="no clips in split 'dev'"):
        find_clips(tmp_path, "dev")


def test_a_split_narrowed_to_some_sources_keeps_their_indices_in_the_split(tmp_path, speech):
    from codec.errors import InputError
    from codec.eval.clips import find_clips

    pcm = np.round(speech[:RATE] * 32767).astype(np.int16)
    records = [{"path": f"s/{i}.wav", "split": "test", "source": "en" if i % 3 == 0 else "ru", "offset": 0,
                "length": len(pcm)} for i in range(7)]
    (tmp_path / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    np.save(tmp_path / "samples.npy", pcm)
    (tmp_path / "summary.json").write_text(json.dumps({"sample_rate": RATE}))
    clips, name = find_clips(tmp_path, "test:en")
    assert [c.index for c in clips] == [0, 3, 6] and name == f"{tmp_path.name}:test (en)"
    assert all(c.source.startswith("en/") for c in clips) and np.allclose(clips[1].load(), pcm / 32767)
    with pytest.raises(InputError, match="no source xx"):
        find_clips(tmp_path, "test:en,xx")
