"""`codec export`: a run folder (as the trainer writes it) -> an inference checkpoint with its history."""
import hashlib
import json
from pathlib import Path

import pytest
import torch
import yaml

import codec
from codec.cli import main
from codec.errors import WeightsError
from codec.checkpoint import save_pretrained

from conftest import tiny_config


def make_run(root: Path, corpus: Path, with_best: bool = True) -> tuple[Path, codec.Codec, codec.Codec]:
    """A run folder in the layout `codec train` writes: checkpoint/ (package
    format + trainer.json + recipe.yaml), best/ (package format + valid.json), metrics.jsonl."""
    corpus.mkdir(parents=True, exist_ok=True)
    (corpus / "summary.json").write_text(json.dumps({
        "sample_rate": 24000, "sources": ["a", "b"], "valid": ["b/x"], "test": ["c"],
        "hours": {"train": 5.9, "valid": 0.4}}))
    torch.manual_seed(0)
    last, best = codec.Codec(tiny_config()), codec.Codec(tiny_config())
    run = root / "run"
    save_pretrained(last, run / "checkpoint")
    (run / "checkpoint" / "trainer.json").write_text(json.dumps({"step": 500, "param_groups": []}))
    recipe = {"data": {"corpus": str(corpus), "crop_frames": 16}, "train": {"batch_size": 16, "lr": 4e-4}}
    (run / "checkpoint" / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    lines = [{"step": 250, "loss": 9.0, "audio_s_per_s": 8.0},
             {"step": 250, "loss": 9.0, "audio_s_per_s": 8.0, "valid_mel_8": 1.5, "valid_mel_37": 1.2},
             {"step": 500, "loss": 8.0, "audio_s_per_s": 16.0, "valid_mel_8": 1.6, "valid_mel_37": 1.3}]
    # a torn last line, as a run killed mid-write leaves it
    (run / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in lines) + '{"step": 5')
    if with_best:
        save_pretrained(best, run / "best")
        (run / "best" / "valid.json").write_text(json.dumps(lines[1]) + "\n")
    return run, last, best


def test_export_best_records_how_it_was_trained(tmp_path, capsys):
    run, _, best = make_run(tmp_path, tmp_path / "corpus")
    recipe = "recipes/debian-speech/default.yaml"
    assert main(["export", str(run), "-o", str(tmp_path / "out"), "--recipe", recipe]) == 0
    model = codec.load(tmp_path / "out")
    assert model.checksum == best.checksum  # the best weights, unchanged
    tr = model.config.training
    assert tr["steps"] == 250 and tr["exported"].startswith("best") and tr["recipe_name"] == "debian-speech/default"
    assert not [v for v in tr.values() if str(tmp_path) in str(v) or "recipes/" in str(v)]  # names, never paths
    assert tr["audio_hours_seen"] == round(250 * 16 * 1.28 / 3600, 2)
    assert tr["corpus_sources"] == "a, b" and tr["holdout_valid"] == "b/x" and tr["holdout_test"] == "c"
    assert tr["valid_mel_37"] == 1.2 and tr["valid_mel_8"] == 1.5
    # wall time from the logged speeds: 250 steps * 20.48 s / 8 + 250 * 20.48 / 16 (the valid line repeats step 250)
    assert tr["wall_hours_estimated"] == round((250 * 20.48 / 8 + 250 * 20.48 / 16) / 3600, 2)
    assert main(["info", "--model", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "audio_hours_seen" in out and "valid_mel_37" in out and "corpus_sources" in out


def test_export_last_and_default_without_best(tmp_path):
    run, last, _ = make_run(tmp_path, tmp_path / "corpus", with_best=False)
    assert main(["export", str(run), "-o", str(tmp_path / "out")]) == 0
    model = codec.load(tmp_path / "out")
    assert model.checksum == last.checksum
    tr = model.config.training
    assert tr["steps"] == 500 and tr["valid_mel_37"] == 1.3  # the validation at the checkpoint's step
    with pytest.raises(WeightsError, match="best"):
        from codec.train.export import export

        export(run, tmp_path / "out2", which="best")


def test_export_names_a_damaged_checkpoint(tmp_path):
    run, _, _ = make_run(tmp_path, tmp_path / "corpus")
    weights = run / "best" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    assert main(["export", str(run), "-o", str(tmp_path / "out")]) == 5
    assert not (tmp_path / "out").exists()


def test_export_notes_join_the_summary_but_never_replace_it(tmp_path):
    run, _, _ = make_run(tmp_path, tmp_path / "corpus")
    assert main(["export", str(run), "-o", str(tmp_path / "out"), "--note", "phase_1=steps 0-100, free head",
                 "--note", "test_quality = PESQ-WB 1.5"]) == 0
    tr = codec.load(tmp_path / "out").config.training
    assert tr["phase_1"] == "steps 0-100, free head" and tr["test_quality"] == "PESQ-WB 1.5" and tr["steps"] == 250
    for bad in ("steps=9", "no equals sign"):  # a clash with the summary; not KEY=TEXT
        assert main(["export", str(run), "-o", str(tmp_path / "out2"), "--note", bad]) == 2
        assert not (tmp_path / "out2").exists()


def test_export_in_float16_halves_the_file_and_keeps_its_checksum_through_a_reload(tmp_path):
    run, _, best = make_run(tmp_path, tmp_path / "corpus")
    assert main(["export", str(run), "-o", str(tmp_path / "full")]) == 0
    assert main(["export", str(run), "-o", str(tmp_path / "half"), "--weights-dtype", "float16"]) == 0
    full, half = (tmp_path / name / "model.safetensors" for name in ("full", "half"))
    assert half.stat().st_size < 0.55 * full.stat().st_size
    model = codec.load(tmp_path / "half")
    assert model.config.weights_dtype == "float16"
    assert all(p.dtype == torch.float32 for p in model.parameters())  # stored in half, computed in float
    assert model.checksum == hashlib.sha256(half.read_bytes()).hexdigest()
    save_pretrained(model, tmp_path / "again")  # the loaded weights re-stored: the same bytes
    assert (tmp_path / "again" / "model.safetensors").read_bytes() == half.read_bytes()
    assert codec.load(tmp_path / "again").config.name == model.config.name  # not "-derived": nothing changed
    for (name, a), b in zip(best.state_dict().items(), model.state_dict().values()):
        if a.is_floating_point():
            torch.testing.assert_close(b, a.to(torch.float16).float(), rtol=0, atol=0, msg=name)
