"""`codec tokenize`: batched codes equal one file at a time, shards resume, 2 processes = 1 process."""
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import codec
from codec.tts import tokenize as tk
from codec.io.audio import read_audio
from codec.cli import main as cli_main

from conftest import speech_like

pytest.importorskip("pyarrow")

# (seconds, rate): awkward lengths (under one frame, exact frames) and rates that need resampling
CLIPS = [(0.5, 24000), (1.3, 16000), (0.07, 24000), (0.16, 24000), (2.1, 48000), (0.9, 22050), (1.0, 24000)]


@pytest.fixture(scope="module")
def setup(tmp_path_factory, tiny_model):
    root = tmp_path_factory.mktemp("tokenize")
    codec.save_pretrained(tiny_model, root / "ckpt")
    for i, (seconds, rate) in enumerate(CLIPS):
        sub = root / "clips" / ("a" if i % 2 else "b")
        sub.mkdir(parents=True, exist_ok=True)
        x = speech_like(seconds, rate, seed=i)
        sf.write(sub / f"clip{i}.wav", np.stack([x, 0.3 * x], 1) if i == 1 else x, rate)  # one stereo file
    return root


def test_batched_codes_equal_one_file_at_a_time(setup, tiny_model, tmp_path):
    status = cli_main(["tokenize", str(setup / "clips"), "-o", str(tmp_path / "out"), "--model", str(setup / "ckpt"),
                       "--shard-size", "3", "-q"])
    assert status == 0
    rows = list(tk.read_dataset(tmp_path / "out"))
    assert [r["index"] for r in rows] == list(range(len(CLIPS)))
    for row in rows:
        audio, rate = read_audio(row["source"])
        alone = tiny_model.encode(torch.from_numpy(audio), rate)[0].numpy()  # the reference: one file, no batch
        assert row["codes"].shape == (37, row["frames"])
        np.testing.assert_array_equal(row["codes"], alone)
        assert row["samples"] == round(audio.shape[1] * 24000 / rate)
        assert row["frames"] == -(-row["samples"] // 1920)
        assert row["duration"] == pytest.approx(audio.shape[1] / rate)
        assert row["model_checksum"] == tiny_model.checksum
    index = json.loads((tmp_path / "out" / "index.json").read_text())
    assert index["items"] == len(CLIPS) and len(index["shards"]) == 3
    assert index["frames"] == sum(r["frames"] for r in rows)


def test_resume_skips_finished_shards_and_refuses_foreign_ones(setup, tiny_model, tmp_path, monkeypatch):
    out = tmp_path / "out"
    tk.tokenize([str(setup / "clips")], out, tiny_model, shard_size=3)
    (out / "shard-00001.parquet").unlink()  # as if the job died while writing shard 1
    encoded = []
    real = tk.encode_items
    monkeypatch.setattr(tk, "encode_items",
                        lambda m, items, *a, **k: encoded.append([i.index for i in items]) or real(m, items, *a, **k))
    tk.tokenize([str(setup / "clips")], out, tiny_model, shard_size=3)
    assert encoded == [[3, 4, 5]]  # only the missing shard was redone
    with pytest.raises(codec.CodecError, match="another tokenization"):
        tk.tokenize([str(setup / "clips")], out, tiny_model, n_codebooks=8, shard_size=3)


def test_prepared_corpus_and_file_list_inputs(setup, tiny_model, tmp_path):
    corpus = tmp_path / "corpus"  # the layout codec data prepare writes
    corpus.mkdir()
    clips = [speech_like(s, 24000, seed=10 + i) for i, s in enumerate((0.3, 1.1, 0.6))]
    samples = np.concatenate([(c * 32767).astype(np.int16) for c in clips])
    np.save(corpus / "samples.npy", samples)
    offset, lines = 0, []
    for i, c in enumerate(clips):
        lines.append(json.dumps({"path": f"src/spk/{i}.wav", "source": "src", "speaker": "spk", "offset": offset,
                                 "length": len(c), "split": "train" if i else "test"}))
        offset += len(c)
    (corpus / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    (corpus / "summary.json").write_text(json.dumps({"sample_rate": 24000}))
    tk.tokenize([str(corpus)], tmp_path / "out", tiny_model)
    tk.write_index(tmp_path / "out", tiny_model)
    rows = list(tk.read_dataset(tmp_path / "out"))
    assert [r["meta"]["split"] for r in rows] == ["test", "train", "train"]
    for r, c in zip(rows, clips):
        ref = torch.from_numpy((c * 32767).astype(np.int16).astype(np.float32) / 32767)
        np.testing.assert_array_equal(r["codes"], tiny_model.encode(ref, 24000)[0].numpy())
    # a plain list of files, relative to the list's folder
    listing = tmp_path / "files.txt"
    shutil.copy(setup / "clips" / "b" / "clip0.wav", tmp_path / "x.wav")
    listing.write_text("# comment\nx.wav\n")
    assert [it.source for it in tk.list_items([str(listing)])] == [str(tmp_path / "x.wav")]


def test_bad_inputs_are_named_and_skipped(setup, tiny_model, tmp_path, capsys):
    clips = tmp_path / "clips"
    shutil.copytree(setup / "clips", clips)
    (clips / "broken.wav").write_bytes(b"not audio at all")
    sf.write(clips / "silent.wav", np.zeros(4000, np.float32), 24000)
    status = cli_main(["tokenize", str(clips), "-o", str(tmp_path / "out"), "--model", str(setup / "ckpt"), "-q"])
    assert status == 3  # bad input audio, as for codec encode; the good files are still written
    err = capsys.readouterr().err
    assert "broken.wav: not a readable audio file" in err
    index = json.loads((tmp_path / "out" / "index.json").read_text())
    assert index["items"] == len(CLIPS)
    assert sorted(Path(s["source"]).name for s in index["skipped"]) == ["broken.wav", "silent.wav"]
    model = str(setup / "ckpt")
    assert cli_main(["tokenize", str(tmp_path / "nothing"), "-o", str(tmp_path / "o2"), "--model", model]) == 3


def _run_group(cmd, env, timeout=120):
    """Run a command in its own process group; on timeout end the whole group (torchrun's workers too)."""
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def test_two_processes_write_the_same_codes_as_one(setup, tmp_path):
    args = [str(setup / "clips"), "--model", str(setup / "ckpt"), "--shard-size", "2", "-q"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    one = subprocess.run([sys.executable, "-m", "codec.tts.tokenize", *args, "-o", str(tmp_path / "one")],
                         env=env, capture_output=True, text=True, timeout=120)
    assert one.returncode == 0, one.stderr
    two = _run_group([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                      "-m", "codec.tts.tokenize", *args, "-o", str(tmp_path / "two")], env)
    assert two.returncode == 0, two.stderr[-3000:]
    a, b = list(tk.read_dataset(tmp_path / "one")), list(tk.read_dataset(tmp_path / "two"))
    assert len(a) == len(b) == len(CLIPS)
    for x, y in zip(a, b):
        assert x["source"] == y["source"]
        np.testing.assert_array_equal(x["codes"], y["codes"])
    shards = json.loads((tmp_path / "two" / "index.json").read_text())["shards"]
    assert len(shards) == 4  # written by two ranks (shards 0, 2 and 1, 3), indexed once by rank 0
