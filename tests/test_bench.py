"""`codec bench`: model|stream --audio time a recording instead of noise; train --recipe times a recipe's step."""
from __future__ import annotations

import numpy as np
import soundfile as sf
import torch

import codec
from codec.bench import bench_audio
from codec.cli import main


def test_bench_audio_repeats_the_recording_to_the_length(tiny_model):
    rate = tiny_model.sample_rate
    x = torch.arange(1, rate // 2 + 1, dtype=torch.float32) / rate  # 0.5 s ramp: every sample distinct
    out = bench_audio(tiny_model, 1.2, x)
    assert out.shape == (1, 1, int(1.2 * rate))
    expected = torch.cat([x, x, x])[: int(1.2 * rate)]
    assert torch.equal(out[0, 0], expected)
    noise = bench_audio(tiny_model, 0.5)
    assert noise.shape == (1, 1, rate // 2) and torch.equal(noise, bench_audio(tiny_model, 0.5))  # seeded


def test_bench_stream_on_a_file_and_a_bad_file_named(tiny_model, tmp_path, capsys):
    codec.save_pretrained(tiny_model, tmp_path / "ckpt")
    wav = tmp_path / "speech.wav"
    sf.write(wav, (0.1 * np.sin(np.arange(8000) * 0.05)).astype(np.float32), 16000)  # another rate: resampled
    args = ["bench", "stream", "--seconds", "0.16", "--repeats", "1", "--model", str(tmp_path / "ckpt")]
    assert main([*args, "--audio", str(wav)]) == 0
    out = capsys.readouterr().out
    assert f"audio: {wav}" in out and "stream decode, per 80 ms frame" in out
    (tmp_path / "empty.wav").write_bytes(b"")
    assert main([*args, "--audio", str(tmp_path / "empty.wav")]) == 3
    assert "empty.wav" in capsys.readouterr().err


def test_bench_train_times_a_recipes_step_and_names_a_bad_recipe(tmp_path, capsys):
    """--recipe: the step of that recipe (its model, batch and crop), not the default recipe's; a recipe
    that cannot be read is one line and exit 2, as for `codec train`."""
    import yaml

    from test_train import TINY_MODEL

    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({"model": TINY_MODEL, "data": {"crop_frames": 2},
                                      "train": {"batch_size": 3, "envelope_weight": 5.0, "init": "default"}}))
    assert main(["bench", "train", "--recipe", str(recipe), "--repeats", "1", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert f"recipe: {recipe}" in out
    assert out.count("train step, batch 3 x 0.16 s") == 2 and "| fp32 |" in out and "| bf16 |" in out
    assert main(["bench", "train", "--recipe", str(tmp_path / "missing.yaml")]) == 2
    assert "missing.yaml" in capsys.readouterr().err
