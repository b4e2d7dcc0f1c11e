"""Training: a tiny model overfits a few clips, resume is exact, 2-process DDP on the CPU, the data stream."""
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from codec.errors import RecipeError
from codec.train.batches import StepBatches
from codec.train import Recipe, train

from conftest import speech_like

TINY_MODEL = dict(encoder_dims=[32, 48], encoder_depths=[1, 1], decoder_dims=[48, 32], decoder_depths=[1, 2],
                  latent_dim=32, name="tiny-train")


def make_corpus(root: Path, n_train: int = 3, n_valid: int = 2, seconds: float = 1.0,
                train_sources: list[str] | None = None) -> Path:
    """A prepared corpus of speech-like clips (distinct pitches), in the format `codec data prepare` writes;
    the train clips' sources are `train_sources` (default: all "synth")."""
    root.mkdir(parents=True, exist_ok=True)
    chunks, records, offset = [], [], 0
    train_sources = train_sources or ["synth"] * n_train
    for i in range(n_train + n_valid):
        x = (speech_like(seconds, f0=110 + 25 * i, seed=i) * 32767).astype(np.int16)
        split = "train" if i < n_train else "valid"
        records.append({"path": f"s{i}.wav", "source": train_sources[i] if split == "train" else "held",
                        "speaker": f"spk{i}", "offset": offset, "length": len(x), "split": split})
        chunks.append(x)
        offset += len(x)
    np.save(root / "samples.npy", np.concatenate(chunks))
    (root / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (root / "summary.json").write_text(json.dumps({"sample_rate": 24000, "sources": ["held", "synth"],
                                                   "valid": ["held"], "test": [], "hours": {"train": 0.001}}))
    return root


def tiny_recipe(corpus: Path, **train) -> dict:
    return Recipe.from_dict({
        "model": TINY_MODEL,
        "data": {"corpus": str(corpus), "crop_frames": 4, "valid_clips": 2},
        "train": {"steps": 8, "batch_size": 2, "lr": 3e-3, "warmup": 2, "bf16": False, "threads": 1,
                  "log_every": 1, "valid_every": 4, "save_every": 4, "valid_pesq_clips": 0,
                  "tensorboard": False, "progress": False, **train},
    })


def losses(run: Path) -> list[tuple]:
    keys = ("step", "loss", "mel", "log", "convergence", "commit", "grad_norm")
    return [tuple(m.get(k) for k in keys) for m in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_corpus(tmp_path_factory.mktemp("corpus"))


def test_step_batches_are_a_function_of_seed_step_rank_and_shard_the_global_batch(corpus):
    one = StepBatches(corpus, 3840, 4, seed=5)
    a, b = one[7], StepBatches(corpus, 3840, 4, seed=5)[7]
    assert torch.equal(a, b) and a.shape == (4, 1, 3840)
    assert not torch.equal(a, one[8])
    halves = [StepBatches(corpus, 3840, 4, seed=5, rank=r, world=2)[7] for r in (0, 1)]
    assert torch.equal(torch.cat(halves), a)  # 2 ranks together see exactly the 1-process batch
    with pytest.raises(ValueError, match="multiple"):
        StepBatches(corpus, 3840, 3, seed=5, world=2)


def test_source_weights_scale_how_often_a_sources_clips_are_drawn(tmp_path):
    mixed = make_corpus(tmp_path / "mixed", train_sources=["kept", "other", "other"])
    # Equal clips: "other" holds 2 of 3 clips; weighted 3, it is drawn 6 times in 7.
    weights = StepBatches(mixed, 3840, 4, seed=5, source_weights={"other": 3.0}).weights
    assert weights[1:].sum() == pytest.approx(6 / 7)
    # Weighted 0, a source is never drawn: the batches are those of a corpus holding the kept clip alone.
    alone = make_corpus(tmp_path / "alone", n_train=1)
    assert torch.equal(StepBatches(mixed, 3840, 4, seed=5, source_weights={"other": 0.0})[7],
                       StepBatches(alone, 3840, 4, seed=5)[7])
    with pytest.raises(ValueError, match="'queen', which has no clip there; the sources are kept, other"):
        StepBatches(mixed, 3840, 4, seed=5, source_weights={"queen": 0.5})
    with pytest.raises(ValueError, match="must be >= 0"):
        StepBatches(mixed, 3840, 4, seed=5, source_weights={"kept": -1})
    with pytest.raises(ValueError, match="leave no clip to draw"):
        StepBatches(mixed, 3840, 4, seed=5, source_weights={"kept": 0, "other": 0})


def test_codec_train_names_a_recipe_problem_in_one_line_exits_2_and_writes_nothing(tmp_path, corpus, capsys):
    from codec.cli import main

    misspelt, unparsable = tmp_path / "misspelt.yaml", tmp_path / "unparsable.yaml"
    misspelt.write_text(yaml.safe_dump({"data": {"corpus": str(corpus), "source_weights": {"synthh": 0.5}}}))
    unparsable.write_text("data: [1\n")
    expected = {misspelt: f"{corpus} (train): data.source_weights names 'synthh', which has no clip there; "
                          "the sources are synth",
                unparsable: f"{unparsable}: not YAML: expected ',' or ']', but got '<stream end>' (line 2, column 1)",
                tmp_path / "absent.yaml": f"{tmp_path / 'absent.yaml'}: cannot read it (No such file or directory)"}
    for recipe, message in expected.items():
        assert main(["train", "--config", str(recipe), "--out", str(tmp_path / "run")]) == 2
        assert capsys.readouterr().err.splitlines() == [f"codec: error: {message}"]
        assert not (tmp_path / "run").exists()


def test_tiny_model_overfits_a_few_clips(tmp_path, corpus):
    """240 steps (about 16 s on 2 idle cores) on 3 clips. Judged on the training clips themselves, decoded
    in eval mode (no quantizer dropout): the full-depth log-mel distance falls from 1.40 untrained to below
    0.45 (measured 0.35), and 8 codebooks stay below 0.5 (measured 0.39: quantizer dropout makes the prefix
    decode). For scale: about 0.1-0.3 is good speech coding, above 1 unrelated audio. The held-out clips
    are validated with PESQ and STOI, and best/ and TensorBoard events are written."""
    from codec.io.corpus import Corpus
    from codec.train import evaluate
    from codec.checkpoint import load

    recipe = tiny_recipe(corpus, steps=240, batch_size=3, lr=3e-3, warmup=10, log_every=20, valid_every=240,
                         save_every=240, valid_pesq_clips=2, tensorboard=True)
    clips = Corpus(corpus, "train")
    wav = torch.stack([torch.from_numpy(clips.audio(i)[: 12 * 1920]) for i in range(len(clips))])[:, None]
    mel = __import__("codec.train.losses", fromlist=["MultiScaleMelLoss"]).MultiScaleMelLoss()
    torch.manual_seed(0)
    untrained, _ = evaluate(__import__("codec").Codec(__import__("codec").CodecConfig(**TINY_MODEL)), mel, wav,
                            depths=(37,))
    last = train(recipe, tmp_path / "run", log=lambda s: None)
    trained, _ = evaluate(load(tmp_path / "run" / "checkpoint"), mel, wav, depths=(8, 37))
    assert untrained["valid_mel_37"] > 1.0, untrained
    assert trained["valid_mel_37"] < 0.45 and trained["valid_mel_8"] < 0.5, trained
    assert last["valid_mel_37"] < 1.0, last  # held-out pitches
    assert (tmp_path / "run" / "best" / "valid.json").is_file()
    assert 1.0 <= last["valid_pesq_wb"] <= 4.65 and -1.0 <= last["valid_stoi"] <= 1.0  # the metrics' ranges
    assert list((tmp_path / "run" / "tensorboard").glob("events.out.tfevents.*"))


def test_resume_follows_the_same_trajectory(tmp_path, corpus):
    """A: 6 steps at once. B: 3 steps, then a fresh train() call resumes from the checkpoint for 3 more.
    Every logged loss matches exactly: batches and random draws are functions of (seed, step), weights,
    optimizer moments and quantizer statistics are restored bit for bit, and the same float32 CPU kernels
    run in the same order, so there is no source of difference to tolerate. The run is made to touch every
    source of state: bf16 autocast, EMA, dead-code re-seeding at steps 2, 4 and 6 (a threshold that every
    entry not picked falls under), the critic and its optimizer (its terms on from step 2), and B loads its
    batches in 2 worker processes, A in its own process."""
    recipe = tiny_recipe(corpus, ema_decay=0.9, steps=6, save_every=3, valid_every=3, bf16=True, reseed_every=2,
                         reseed_threshold=0.999, adversarial_weight=1.0, feature_weight=2.0, adversarial_from=2)
    train(recipe, tmp_path / "a", log=lambda s: None)
    recipe = recipe.replace(data={"workers": 2})
    train(recipe, tmp_path / "b", max_steps=3, log=lambda s: None)
    train(recipe, tmp_path / "b", log=lambda s: None)
    a, b = losses(tmp_path / "a"), losses(tmp_path / "b")
    assert len(a) == 6 and a == b
    lines = (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()
    reseeded = [json.loads(line).get("reseeded") for line in lines]
    assert reseeded[1] > 0 and reseeded[3] > 0 and reseeded[0] == 0  # re-seeding happened inside the trajectory
    ema_a = (tmp_path / "a" / "checkpoint" / "ema.safetensors").read_bytes()
    assert ema_a == (tmp_path / "b" / "checkpoint" / "ema.safetensors").read_bytes()
    records = [json.loads(line) for line in lines]
    assert "adversarial" not in records[1] and records[2]["adversarial"] > 0 and records[2]["discriminator"] > 0
    critic_a = (tmp_path / "a" / "checkpoint" / "discriminator.safetensors").read_bytes()
    assert critic_a == (tmp_path / "b" / "checkpoint" / "discriminator.safetensors").read_bytes()


def test_ddp_two_processes_on_cpu(tmp_path, corpus):
    """torchrun with 2 gloo processes: the run completes and the replicas hold bit-identical weights at every
    save (train() all-gathers their parameter sums and fails the run otherwise); each rank's data is its
    half of the 1-process batch (test_step_batches_...). Re-seeding at every other step (a threshold every
    entry not picked falls under) draws from each rank's own batch, so the replicas stay equal only if rank
    0's codebooks are broadcast after it."""
    recipe = tiny_recipe(corpus, steps=4, save_every=2, valid_every=4, adversarial_weight=1.0,  # the critic too
                         reseed_every=2, reseed_threshold=0.999)
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe.to_dict()))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parents[1])}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
           "-m", "codec.train", "--config", str(path), "-o", str(tmp_path / "ddp")]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=170)
    assert done.returncode == 0, done.stderr[-3000:]
    ddp = losses(tmp_path / "ddp")
    assert [r[0] for r in ddp] == [1, 2, 3, 4]
    assert json.loads((tmp_path / "ddp" / "checkpoint" / "trainer.json").read_text())["world_size"] == 2


def test_augmentation_band_limits_and_adds_noise_at_the_stated_snr():
    from codec.train.batches import augment_crop
    from codec.train.recipe import Augment

    t = np.arange(24000) / 24000
    x = (0.1 * np.sin(2 * np.pi * 1000 * t) + 0.1 * np.sin(2 * np.pi * 10000 * t)).astype(np.float32)
    band = Augment(gain_db=0.0, bandlimit_prob=1.0, bandlimit_hz=[5000.0, 5000.0])
    y = augment_crop(x, np.random.default_rng(0), -23.0, band, 24000)
    spec = np.abs(np.fft.rfft(y[4800:]))  # past the filter's start-up transient
    assert spec[10000 * 19200 // 24000] < 1e-3 * spec[1000 * 19200 // 24000]  # 10 kHz down > 60 dB
    noisy = Augment(gain_db=0.0, noise_prob=1.0, noise_snr_db=[20.0, 20.0])
    quiet = Augment(gain_db=0.0, noise_prob=0.0, noise_snr_db=[20.0, 20.0])
    clean = augment_crop(x, np.random.default_rng(1), -23.0, quiet, 24000)
    dirty = augment_crop(x, np.random.default_rng(1), -23.0, noisy, 24000)
    snr = 10 * np.log10(np.mean(clean.astype(np.float64) ** 2) / np.mean((dirty - clean).astype(np.float64) ** 2))
    assert abs(snr - 20.0) < 0.3  # a steady tone: its active-frame power is its mean power


def test_the_ema_averages_the_networks_and_keeps_the_models_quantizer(corpus):
    # Re-seeding at every other step (a threshold every entry not picked falls under) replaces codebook
    # entries: an average of old and new entries would fit neither, so the EMA takes the quantizer as it is.
    from codec.train import Trainer

    recipe = tiny_recipe(corpus, ema_decay=0.5, reseed_every=2, reseed_threshold=0.999)
    torch.manual_seed(0)
    trainer = Trainer(recipe, torch.device("cpu"))
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    batches = StepBatches(corpus, 4 * 1920, 2, seed=0)
    for step in range(4):
        trainer.step(batches[step], step)
    model, ema = trainer.model.state_dict(), trainer.ema.state_dict()
    quantizer = [k for k in model if k.startswith("quantizer.")]
    assert all(torch.equal(ema[k], model[k]) for k in quantizer)
    assert not torch.equal(model["quantizer.codebooks"], before["quantizer.codebooks"])  # re-seeded, moved
    networks = [k for k in model if k.startswith(("encoder.", "decoder.")) and model[k].is_floating_point()
                and not torch.equal(model[k], before[k])]
    assert networks and all(not torch.equal(ema[k], model[k]) for k in networks)


def test_a_speed_change_multiplies_every_frequency_by_its_factor():
    from codec.train.batches import change_speed

    t = np.arange(24000) / 24000
    y = change_speed(np.sin(2 * np.pi * 1000 * t).astype(np.float32), 1.2, 24000)
    assert len(y) == 20000  # 1.2 times as fast: 1 s plays in 1/1.2 s
    spectrum = np.abs(np.fft.rfft(y * np.hanning(len(y))))
    assert np.argmax(spectrum) * 24000 / len(y) == pytest.approx(1200, abs=2)


def test_speed_augmentation_changes_only_the_crops_it_draws(corpus):
    from codec.train.batches import speed_factor
    from codec.train.recipe import Augment

    plain = StepBatches(corpus, 3840, 8, seed=5)[3]
    fast = Augment(speed_prob=0.5, speed_range=[0.8, 1.25])
    sped = StepBatches(corpus, 3840, 8, seed=5, augment=fast)[3]
    factors = [speed_factor(5, 3, j, fast) for j in range(8)]
    assert 0 < sum(f == 1.0 for f in factors) < 8 and all(0.8 <= f <= 1.25 for f in factors)
    for j, f in enumerate(factors):  # crops left at speed 1 are those of the recipe without it, bit for bit
        assert torch.equal(sped[j], plain[j]) == (f == 1.0)
    with pytest.raises(RecipeError, match="speed_range"):  # when the recipe is read, before a run starts
        Recipe.from_dict({"data": {"augment": {"speed_range": [1.2, 0.9]}}})


def test_training_fits_the_magnitudes_of_a_voiced_signal():
    # A known answer: speech_like at 140 Hz. The decoder's comb comes from the coded pitch, so a few dozen
    # steps on one crop bring the decoded log magnitudes well towards the input's, and the decoded audio's
    # spectrum has its harmonics where the input has them.
    from codec.train import Trainer

    recipe = Recipe.from_dict({"model": TINY_MODEL, "train": {"bf16": False, "lr": 3e-3, "warmup": 1, "steps": 60,
                                                              "quantizer_dropout": 0.0}})
    torch.manual_seed(0)
    trainer = Trainer(recipe, torch.device("cpu"))
    wav = torch.from_numpy(speech_like(16 * 0.08, f0=140.0))[None, None].repeat(2, 1, 1)
    first = trainer.step(wav, 0)
    for step in range(1, 60):
        last = trainer.step(wav, step)
    assert last["log"] < 0.5 * first["log"] and last["mel"] < 0.5 * first["mel"]
    model = trainer.model.eval()
    out = model.decode(model.encode(wav[:1], 24000))[0, 0, 4800:].numpy()
    spectrum = np.abs(np.fft.rfft(out * np.hanning(len(out))))
    freqs = np.fft.rfftfreq(len(out), 1 / 24000)
    harmonic = sum(spectrum[(freqs > k * 140 * 0.85) & (freqs < k * 140 * 1.15)].sum() for k in range(1, 8))
    between = sum(spectrum[(freqs > (k + 0.35) * 140) & (freqs < (k + 0.65) * 140)].sum() for k in range(1, 8))
    assert harmonic > 3 * between


def test_the_synthesis_terms_score_the_decoded_audio_and_train_the_magnitudes(tmp_path, corpus):
    # Their reference is the decoder's own synthesis: the terms of the audio it makes of the decoded
    # magnitudes, analysed again. A step with them moves the decoder's weights otherwise than one without,
    # and a run logs them.
    from codec.train import Trainer

    wav = torch.from_numpy(speech_like(8 * 0.08, f0=140.0))[None, None].repeat(2, 1, 1)
    recipe = Recipe.from_dict({"model": TINY_MODEL, "train": {"bf16": False, "synthesis_weight": 1.0,
                                                              "quantizer_dropout": 0.0}})
    torch.manual_seed(0)
    trainer = Trainer(recipe, torch.device("cpu"))
    model = trainer.model
    log_mag, _ = model(wav)
    target = model.target_magnitudes(wav)
    with torch.no_grad():
        heard = model.analysis(model.synthesis(log_mag.float())[:, None]).abs()
        expected = trainer.magnitude(torch.log(heard.clamp_min(1e-8)), target)
    terms = trainer._synthesized(log_mag.float(), target)
    for name, value in expected.items():
        assert terms[name].item() == pytest.approx(value.item(), rel=1e-4)
    terms["log"].backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.decoder.parameters())
    changed = {}
    for weight in (0.0, 1.0):
        recipe.train.synthesis_weight = weight
        torch.manual_seed(0)
        trainer = Trainer(recipe, torch.device("cpu"))
        out = trainer.step(wav, 0)
        assert ("synthesis_log" in out) == bool(weight)
        changed[weight] = [p.detach().clone() for p in trainer.model.decoder.parameters()]
    assert any(not torch.equal(a, b) for a, b in zip(changed[0.0], changed[1.0]))
    train(tiny_recipe(corpus, steps=2, synthesis_weight=0.5), tmp_path / "run", log=lambda s: None)
    logged = [r for r in map(json.loads, (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()) if "loss" in r]
    assert len(logged) == 2 and all("synthesis_log" in record for record in logged)


def test_envelope_term_ignores_where_the_harmonics_sit_and_follows_the_envelope():
    """A pulse train's harmonics moved by 4 % (a quarter-tone) change every bin's log magnitude, not the
    band energies; a 6 dB tilt of the envelope changes both."""
    from codec.train.losses import MagnitudeLoss

    t = torch.arange(24000) / 24000

    def voice(f0: float, tilt_db: float = 0.0) -> torch.Tensor:
        k = torch.arange(1, int(11000 / f0))[:, None]
        gain = 10 ** (-tilt_db * k * f0 / 12000 / 20) / k  # 1/k falloff, tilted towards the top
        return (gain * torch.sin(2 * torch.pi * k * f0 * t)).sum(dim=0)

    window = torch.hann_window(480, periodic=True)

    def mags(x: torch.Tensor) -> torch.Tensor:
        return torch.stft(x, 480, 120, window=window, center=False, return_complex=True).abs().T[None]

    loss = MagnitudeLoss(480, 24000)
    ref = mags(voice(150.0))
    detuned = loss(torch.log(mags(voice(156.0)) + 1e-9), ref)
    tilted = loss(torch.log(mags(voice(150.0, tilt_db=6.0)) + 1e-9), ref)
    assert detuned["log"] > 0.5 and detuned["envelope"] < 0.05, detuned  # log10 power: 0.05 = 0.5 dB
    assert tilted["envelope"] > 0.1, tilted


def test_loudness_term_weighs_loud_hops_and_nearly_ignores_silence():
    """The same 6 dB error costs the log term about alike in a loud hop and a hop 50 dB down (its floor sits
    lower still); the loudness term
    (band power^0.23 against the item's level) charges the quiet hop far less, and nothing for no error."""
    from codec.train.losses import MagnitudeLoss

    loss = MagnitudeLoss(480, 24000)
    g = torch.Generator().manual_seed(0)
    ref = torch.rand(1, 40, 241, generator=g) + 0.5
    ref[:, 20:] *= 10 ** (-50 / 20)  # the second half: 50 dB quieter

    def with_error(rows: slice) -> dict:
        est = ref.clone()
        est[:, rows] *= 2.0  # +6 dB
        return loss(torch.log(est), ref)

    loud, quiet = with_error(slice(0, 20)), with_error(slice(20, 40))
    assert abs(loud["log"] - quiet["log"]) < 0.05 * loud["log"]
    assert quiet["loudness"] < 0.1 * loud["loudness"], (loud, quiet)
    assert loss(torch.log(ref), ref)["loudness"] < 1e-6


def test_low_term_sees_only_the_band_below_1_khz():
    from codec.train.losses import MagnitudeLoss

    loss = MagnitudeLoss(480, 24000)
    ref = torch.rand(1, 10, 241, generator=torch.Generator().manual_seed(0)) + 0.5
    est = ref.clone()
    est[..., 21:] *= 2.0  # every bin from 1050 Hz up (50 Hz bins)
    high = loss(torch.log(est), ref)
    est = ref.clone()
    est[..., :21] *= 2.0
    low = loss(torch.log(est), ref)
    assert high["low"] < 1e-6 and high["log"] > 0.5
    assert abs(low["low"] - math.log(2.0)) < 1e-3 and low["log"] < 0.1


def test_the_critic_learns_to_tell_speech_magnitudes_from_smoothed_ones():
    """Real log magnitudes of a speech-like clip (harmonics under formants) against the same smoothed over 9
    bins (an envelope without harmonics, what a regression loss drifts to; 1.7 dB from the real on average):
    120 steps of the least-squares critic separate them (1.0 is a critic that cannot tell them apart), and
    the generator's adversarial term then rates the smoothed ones worse than the real."""
    from codec.train.discriminator import SpectrogramDiscriminator, discriminator_loss, generator_losses

    torch.manual_seed(0)
    x = torch.from_numpy(speech_like(1.0)).float()
    mags = torch.stft(x, 480, 120, window=torch.hann_window(480), center=False, return_complex=True).abs()
    real = torch.log(mags.T[None] + 1e-5)  # (1, H, 241)
    smooth = torch.nn.functional.avg_pool1d(real.transpose(0, 1), 9, 1, 4, count_include_pad=False).transpose(0, 1)
    critic = SpectrogramDiscriminator(480, 24000)
    opt = torch.optim.Adam(critic.parameters(), lr=1e-3)
    first = None
    for _ in range(120):
        loss = discriminator_loss(critic(real), critic(smooth))
        first = float(loss.detach()) if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(loss.detach()) < 0.4 * first, (first, float(loss.detach()))
    with torch.no_grad():
        out = critic(real)
        smoothed_adv, _ = generator_losses(out, critic(smooth))
        real_adv, features = generator_losses(out, out)
    assert smoothed_adv > 3 * real_adv and features == 0
