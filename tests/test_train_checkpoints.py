"""Run checkpoints: the trainer resumes format-1 folders (model + optimizer, no EMA), survives a save
cut between its renames, and names the file when a checkpoint does not fit the recipe."""
import json

import pytest
import torch
import yaml
from safetensors.torch import load_file, save_file

from codec import Codec, CodecConfig
from codec.checkpoint import load, save_pretrained
from codec.train import Recipe, Trainer, train

from test_train import TINY_MODEL, make_corpus, tiny_recipe


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_corpus(tmp_path_factory.mktemp("corpus"))


def write_format1(out, recipe: Recipe, step: int) -> Trainer:
    """A checkpoint in format 1: the package-format model, AdamW tensors 'state.{i}.{k}' plus 'torch_rng',
    trainer.json {step, param_groups}, recipe.yaml."""
    trainer = Trainer(recipe, torch.device("cpu"))
    wav = torch.randn(2, 1, 4 * 1920) * 0.1
    for s in range(step):  # give the optimizer real moments to restore
        trainer.step(wav, s)
    ckpt = out / "checkpoint"
    save_pretrained(trainer.model, ckpt)
    tensors = {f"state.{i}.{k}": (v if torch.is_tensor(v) else torch.tensor(v))
               for i, st in trainer.opt.state_dict()["state"].items() for k, v in st.items()}
    tensors["torch_rng"] = torch.get_rng_state()
    save_file(tensors, str(ckpt / "optimizer.safetensors"))
    groups = trainer.opt.state_dict()["param_groups"]
    (ckpt / "trainer.json").write_text(json.dumps({"step": step, "param_groups": groups}))
    (ckpt / "recipe.yaml").write_text(yaml.safe_dump(recipe.to_dict()))
    return trainer


def test_format1_checkpoint_resumes_with_ema_starting_fresh(tmp_path, corpus):
    plain = tiny_recipe(corpus, steps=10)
    old = write_format1(tmp_path / "run", plain, step=3)
    recipe = tiny_recipe(corpus, steps=10, ema_decay=0.9, valid_every=5, save_every=5)
    lines = []
    train(recipe, tmp_path / "run", max_steps=2, log=lines.append)
    assert any("resuming" in line and "step 3" in line and "EMA" in line for line in lines), lines
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [4, 5]
    ckpt = tmp_path / "run" / "checkpoint"
    meta = json.loads((ckpt / "trainer.json").read_text())
    assert meta["step"] == 5 and meta["format"] == 2
    assert (ckpt / "ema.safetensors").is_file()
    # The AdamW moments came from the old file: its step counter went on from 3, not from 0.
    assert float(load_file(str(ckpt / "optimizer.safetensors"))["state.0.step"]) == 3 + 2
    assert float(old.opt.state_dict()["state"][0]["step"]) == 3


def test_a_save_cut_between_its_renames_resumes_from_the_previous_checkpoint(tmp_path, corpus):
    recipe = tiny_recipe(corpus, steps=4, save_every=2, valid_every=4)
    train(recipe, tmp_path / "run", max_steps=2, log=lambda s: None)
    ckpt = tmp_path / "run" / "checkpoint"
    ckpt.rename(tmp_path / "run" / "checkpoint.old")  # killed after moving the old one aside ...
    (tmp_path / "run" / "checkpoint.new").mkdir()  # ... with a half-written new one beside it
    (tmp_path / "run" / "checkpoint.new" / "model.safetensors").write_bytes(b"torn")
    train(recipe, tmp_path / "run", log=lambda s: None)
    assert json.loads((ckpt / "trainer.json").read_text())["step"] == 4
    assert not (tmp_path / "run" / "checkpoint.new").exists() and not (tmp_path / "run" / "checkpoint.old").exists()
    steps = [json.loads(line)["step"] for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4]


def test_resuming_with_another_model_names_the_file_and_the_fields(tmp_path, corpus):
    train(tiny_recipe(corpus, steps=1, valid_every=1), tmp_path / "run", log=lambda s: None)
    other = tiny_recipe(corpus, steps=2)
    other.model = {**other.model, "latent_dim": 16}
    fields = r"latent_dim \(32 in the checkpoint, 16 in the recipe\)"
    with pytest.raises(ValueError, match=r"checkpoint/config.json.*" + fields):
        train(other, tmp_path / "run", log=lambda s: None)


def test_export_of_a_run_with_ema_ships_the_ema_weights(tmp_path, corpus):
    from codec.train.export import export
    from codec.checkpoint import load

    run = tmp_path / "run"
    train(tiny_recipe(corpus, steps=2, ema_decay=0.5, valid_every=2), run, log=lambda s: None)
    out = export(run, tmp_path / "out", which="last")
    model, ema = load(out), load_file(str(run / "checkpoint" / "ema.safetensors"))
    assert all(torch.equal(v, ema[k]) for k, v in model.state_dict().items())
    assert not torch.equal(model.state_dict()["decoder.head.proj.weight"],
                           load(run / "checkpoint").state_dict()["decoder.head.proj.weight"])  # not the raw weights
    assert model.config.training["exported"] == "last checkpoint (EMA weights)"
    assert model.config.training["steps"] == 2


def test_a_new_run_starts_from_given_weights_and_grows_the_decoder(tmp_path, corpus):
    source = Codec(CodecConfig(**{**TINY_MODEL, "name": "tiny-source"}))
    save_pretrained(source, tmp_path / "source")
    deeper = {**TINY_MODEL, "decoder_depths": [1, 3]}
    recipe = tiny_recipe(corpus, steps=1, lr=0.0, init=str(tmp_path / "source"), valid_every=100)
    recipe = recipe.replace(model=deeper)
    lines = []
    train(recipe, tmp_path / "run", log=lines.append)
    assert any("starting from" in line and "decoder.hop_blocks.2" in line and "decoder.hop_blocks.1" not in line
               for line in lines), lines
    grown = load(tmp_path / "run" / "checkpoint")
    assert grown.config.decoder_depths == (1, 3)
    grown_params = dict(grown.named_parameters())
    for name, value in source.named_parameters():
        if not name.startswith("quantizer.codebooks"):  # lr 0 keeps each as copied; codebooks take k-means steps
            assert torch.equal(grown_params[name], value), name
    # The added blocks start as identities, so the grown decoder makes what the source's did.
    cfg = source.config
    latent = torch.randn(2, cfg.latent_dim, 3)
    f0 = torch.full((2, 3 * cfg.frame_size // cfg.synthesis_hop), 150.0)
    assert torch.allclose(grown.decoder(latent, f0), source.decoder(latent, f0), atol=1e-5)
    assert float(grown.decoder.hop_blocks[2].gamma.detach().min()) == pytest.approx(0.1)
    # A resumed run keeps its own weights: init only seeds a new one.
    lines.clear()
    train(recipe.replace(train={"steps": 2}), tmp_path / "run", log=lines.append)
    assert not any("starting from" in line for line in lines)


def test_reinit_starts_named_layers_of_the_init_weights_fresh(tmp_path, corpus):
    source = Codec(CodecConfig(**{**TINY_MODEL, "name": "tiny-source"}))
    save_pretrained(source, tmp_path / "source")
    recipe = tiny_recipe(corpus, steps=1, lr=0.0, init=str(tmp_path / "source"), valid_every=100,
                         reinit=["decoder.hop_blocks.0"])
    lines = []
    train(recipe, tmp_path / "run", log=lines.append)
    assert any("started as identities: decoder.hop_blocks.0" in line for line in lines), lines
    block, before = load(tmp_path / "run" / "checkpoint").decoder.hop_blocks[0], source.decoder.hop_blocks[0]
    assert not block.pw2.weight.any() and not torch.equal(block.pw1.weight, before.pw1.weight)


def test_a_run_fits_missing_pitch_shapes_on_its_training_clips_and_keeps_given_ones(tmp_path, corpus):
    from codec.io.corpus import Corpus
    from codec.nn.pitch import analysis_centres, causal_yin

    save_pretrained(Codec(CodecConfig(**{**TINY_MODEL, "name": "tiny-source"})), tmp_path / "source")  # unfitted
    recipe = tiny_recipe(corpus, steps=1, lr=0.0, init=str(tmp_path / "source"), valid_every=100)
    lines = []
    train(recipe, tmp_path / "run", log=lines.append)
    assert any("fitted the pitch coder's 1024 contour shapes" in line for line in lines), lines
    fitted = load(tmp_path / "run" / "checkpoint").pitch
    flat = Codec(CodecConfig(**TINY_MODEL)).pitch
    clips = Corpus(corpus, "train")
    wav = torch.from_numpy(clips.audio(0)[: 12 * 1920])[None, None]
    f0, voiced = causal_yin(wav)
    def worst_cents(coder):
        out = coder.decode(coder.encode(f0, voiced), analysis_centres(240, 1920, 960))
        return float((1200 * torch.log2(out[voiced] / f0[voiced])).abs().max())

    assert worst_cents(fitted) < 10 < worst_cents(flat)  # the contour's glide, which a flat level misses
    lines.clear()
    train(recipe.replace(train={"init": str(tmp_path / "run" / "checkpoint")}), tmp_path / "again", log=lines.append)
    assert not any("fitted the pitch" in line for line in lines)
    assert torch.equal(load(tmp_path / "again" / "checkpoint").pitch.shapes, fitted.shapes)


def test_a_state_saved_by_a_foreach_adamw_resumes_fused_with_the_same_steps():
    """The trainer's AdamW is fused; checkpoints written by the multi-tensor one must load into it, keep it
    fused (the saved groups name the other implementation), and step as that one would from there."""
    from codec.train.state import _load_opt, _opt_tensors

    gen = torch.Generator().manual_seed(0)
    start = [torch.randn(300, generator=gen), torch.randn(7, 5, generator=gen)]
    grads = [[torch.randn(p.shape, generator=gen) for p in start] for _ in range(4)]

    def stepped(opt, params, rounds):
        for g in rounds:
            for p, gp in zip(params, g):
                p.grad = gp.clone()
            opt.step()

    saved = [p.clone().requires_grad_() for p in start]
    foreach = torch.optim.AdamW(saved, lr=1e-2, betas=(0.8, 0.99), foreach=True)
    stepped(foreach, saved, grads[:2])
    tensors, groups = _opt_tensors(foreach)
    tensors = {k: v.clone() for k, v in tensors.items()}  # as read back from the file: not the live moments
    resumed = [p.detach().clone().requires_grad_() for p in saved]
    fused = torch.optim.AdamW(resumed, lr=1e-2, betas=(0.8, 0.99), fused=True)
    _load_opt(fused, tensors, groups)
    assert fused.param_groups[0]["fused"] is True and not groups[0]["fused"]
    stepped(foreach, saved, grads[2:])
    stepped(fused, resumed, grads[2:])
    for a, b in zip(saved, resumed):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-6)
