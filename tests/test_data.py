"""`codec data prepare`: resampling, trimming, every kind of drop counted, splits by whole source or speaker."""
import json

import numpy as np
import pytest
import soundfile as sf

from codec.cli import main as cli_main
from codec.io.corpus import Corpus
from codec.train.prepare import PrepareOptions, parse_min_rate, prepare

from conftest import speech_like


def write(path, x, rate):
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, x, rate)


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    root = tmp_path_factory.mktemp("src")
    speech = speech_like(1.0, 24000)
    quiet = np.zeros(12000, np.float32)
    # source "alpha": speakers s1 (kept clips) and s2 (one kept, the rest dropped for a stated reason)
    write(root / "alpha/s1/padded.wav", np.concatenate([quiet, speech, quiet]), 24000)  # 0.5 s silence each side
    stereo44 = np.stack([speech_like(1.0, 44100), speech_like(1.0, 44100)], axis=1)
    write(root / "alpha/s1/stereo44.flac", stereo44, 44100)
    write(root / "alpha/s2/ok.wav", speech_like(0.8, 16000, f0=200), 16000)
    write(root / "alpha/s2/short.wav", speech_like(0.2, 24000), 24000)
    write(root / "alpha/s2/narrowband.wav", speech_like(1.0, 8000), 8000)
    write(root / "alpha/s2/silent.wav", np.zeros(24000, np.float32) + 1e-5, 24000)
    clipped = np.clip(speech * 40, -1, 1)
    write(root / "alpha/s2/clipped.wav", clipped, 24000)
    (root / "alpha/s2/broken.wav").write_bytes(b"RIFF not really a wave file")
    # source "beta": one speaker, held out as a whole source
    write(root / "beta/s9/a.ogg", speech_like(1.0, 24000, f0=180), 24000)
    return root


def test_prepare_cleans_counts_and_splits(sources, tmp_path):
    summary = prepare([sources / "alpha", sources / "beta"], tmp_path / "corpus", valid="alpha/s2", test="beta",
                      workers=1, progress=False)
    assert summary["files"] == 9 and summary["kept"] == 4
    assert summary["dropped"] == {"too short": 1, "low sample rate": 1, "silent": 1, "clipped": 1, "unreadable": 1}
    assert summary["valid"] == ["alpha/s2"] and summary["test"] == ["beta"]
    corpus = Corpus(tmp_path / "corpus")
    by_name = {c["path"].split("/")[-1]: c for c in corpus.clips}
    assert {n: c["split"] for n, c in by_name.items()} == {
        "padded.wav": "train", "stereo44.flac": "train", "ok.wav": "valid", "a.ogg": "test"}
    assert {n: (c["source"], c["speaker"]) for n, c in by_name.items()}["ok.wav"] == ("alpha", "s2")
    # 0.5 s of silence on each side trimmed to the 50 ms margin (within one 20 ms analysis hop)
    assert abs(by_name["padded.wav"]["length"] - (24000 + 2 * 1200)) <= 2 * 480
    # resampled to 24 kHz mono: 1 s at 44.1 kHz stereo -> 24000 samples, 0.8 s at 16 kHz -> 19200
    assert abs(by_name["stereo44.flac"]["length"] - 24000) <= 2 * 1200
    assert abs(by_name["ok.wav"]["length"] - 19200) <= 2 * 1200
    x = corpus.audio(corpus.clips.index(by_name["stereo44.flac"]))
    assert x.dtype == np.float32 and 0.05 < np.sqrt(np.mean(x ** 2)) < 0.2  # the same level, now one channel
    assert json.loads((tmp_path / "corpus" / "summary.json").read_text()) == summary


def test_prepare_keeps_band_limited_sources_it_is_told_to(sources, tmp_path):
    """A per-source minimum rate keeps that source's 8 kHz file; every clip records its rate and bandwidth."""
    opts = PrepareOptions(source_min_rate={"alpha": 8000})
    summary = prepare([sources / "alpha", sources / "beta"], tmp_path / "corpus", opts=opts, workers=1,
                      progress=False)
    assert summary["kept"] == 5 and "low sample rate" not in summary["dropped"]
    assert summary["source_min_rate"] == {"alpha": 8000} and summary["min_rate"] == 16000
    by_name = {c["path"].split("/")[-1]: c for c in Corpus(tmp_path / "corpus").clips}
    assert {n: c["rate"] for n, c in by_name.items()} == {
        "padded.wav": 24000, "stereo44.flac": 44100, "ok.wav": 16000, "narrowband.wav": 8000, "a.ogg": 24000}
    # speech_like has harmonics to 4 kHz: the 8 kHz file is cut at its 4 kHz Nyquist, the others are not
    assert by_name["narrowband.wav"]["bandwidth"] <= 4000 < by_name["padded.wav"]["bandwidth"]
    alpha = summary["by_source"]["alpha"]
    assert alpha["kept"] == 4 and alpha["rates"] == {"8000": 1, "16000": 1, "24000": 1, "44100": 1}
    assert alpha["dropped"] == {"clipped": 1, "silent": 1, "too short": 1, "unreadable": 1}
    assert summary["by_source"]["beta"]["hours"] == {"train": round(by_name["a.ogg"]["length"] / 24000 / 3600, 3)}


def test_parse_min_rate():
    assert parse_min_rate("16000") == (16000, {})
    assert parse_min_rate("12000,steel-sky=11025, asterisk-8k=8000") == (12000, {"steel-sky": 11025,
                                                                               "asterisk-8k": 8000})
    assert parse_min_rate("queen=11025") == (PrepareOptions.min_rate, {"queen": 11025})


def test_prepare_command_line(sources, tmp_path, capsys):
    assert cli_main(["data", "prepare", str(sources / "beta"), "-o", str(tmp_path / "c"), "--workers", "1",
                     "--valid", "beta/s9"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["kept"] == 1 and summary["valid"] == ["beta/s9"] and "valid" in summary["hours"]
    assert cli_main(["data", "prepare", str(sources / "alpha"), "-o", str(tmp_path / "n"), "--workers", "1",
                     "--min-rate", "alpha=8000"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["kept"] == 4 and summary["source_min_rate"] == {"alpha": 8000}
