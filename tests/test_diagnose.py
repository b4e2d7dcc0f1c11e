"""`codec diagnose`: each measurement runs on a corpus split and prints its table."""
import re

import pytest

import codec
import torch
from codec.cli import main
from codec.diagnose import through_bound_channel, water_level

from test_train import make_corpus


@pytest.fixture(scope="module")
def setup(tmp_path_factory, tiny_model):
    root = tmp_path_factory.mktemp("diagnose")
    codec.save_pretrained(tiny_model, root / "ckpt")
    return make_corpus(root / "corpus", n_train=1, n_valid=2, seconds=1.0), root / "ckpt"


def _run(capsys, setup, *args: str) -> str:
    corpus, ckpt = setup
    assert main(["diagnose", *args[:1], str(corpus), "--model", str(ckpt), "--split", "valid", *args[1:]]) == 0
    return capsys.readouterr().out


def test_rvq_error_at_each_depth(capsys, setup):
    out = _run(capsys, setup, "rvq", "--clips", "2")
    assert out.startswith("| latent stages | 1 | 2 | 4 | 6 | 15 | 35 |")
    errors = [float(x) for x in re.findall(r"\d+\.\d{3}", out.splitlines()[-1])]
    assert len(errors) == 6 and all(0 < e < 2 for e in errors), out  # relative errors of an untrained model


def test_stream_drift_is_float_rounding(capsys, setup):
    out = _run(capsys, setup, "stream", "--seconds", "2")
    rows = [line for line in out.splitlines() if line.startswith(("| first", "| all", "| the median", "| the worst"))]
    assert len(rows) == 4
    assert all(float(row.split("|")[3]) > 60 for row in rows), out  # streamed equals offline to rounding


def test_pitch_and_phase_print_their_tables(capsys, setup):
    out = _run(capsys, setup, "pitch", "--clips", "2", "--seconds", "1")
    assert "| coded contour vs the input's estimate |" in out and "| decoded audio vs the input |" in out
    out = _run(capsys, setup, "phase", "--clips", "1", "--seconds", "1")
    names = ["decoded", "decoded, voiced bins' phases locked to their harmonics", "decoded, no Griffin-Lim passes",
             "decoded, twice the Griffin-Lim passes (8, not 4)",
             "decoded, RTPGHI's heap over the bins within 100 dB of their hop's loudest (not 60)",
             "reference magnitude, computed phase",
             "reference magnitude, computed phase, a 1.5x longer synthesis window",
             "decoded magnitude, reference phase", "decoded with the encoder's pitch estimate, uncoded"]
    rows = [line.split("|") for line in out.splitlines()[2:]]
    assert [row[1].strip() for row in rows] == names
    error = {row[1].strip(): float(row[2]) for row in rows}
    # the reference's own magnitudes with a computed phase come out nearer the reference than an untrained decoder's
    assert error["reference magnitude, computed phase"] < error["decoded"], out


def test_the_head_fitted_to_a_clip_beats_an_untrained_network(capsys, setup):
    out = _run(capsys, setup, "head", "--clips", "1", "--seconds", "1")
    rows = {line.split("|")[1].strip(): [float(x) for x in line.split("|")[2:5]] for line in out.splitlines()[2:]}
    assert list(rows) == ["decoded", "decoded from the unquantized latent", "decoded from a latent fitted to the clip",
                          "decoded by the decoder trained on the clip", "head fitted to the clip (no network)",
                          "fitted envelope, the network's harmonic share",
                          "the network's envelope, fitted harmonic share",
                          "fitted envelope in the loud hops (within 40 dB of the loudest), the network's elsewhere",
                          "fitted envelope in the quiet hops, the network's elsewhere",
                          "fitted envelope below 1000 Hz, the network's above"]
    fitted, decoded = rows["head fitted to the clip (no network)"][0], rows["decoded"][0]
    assert fitted < 0.5 * decoded, out  # the fit reaches the form's ceiling; an untrained network is far off
    # the latent fitted through the decoder starts at the encoder's and lowers the same L1
    assert rows["decoded from a latent fitted to the clip"][0] < rows["decoded from the unquantized latent"][0], out
    assert rows["decoded by the decoder trained on the clip"][0] < rows["decoded"][0], out


def test_envelope_codes_the_training_frames_exactly_and_an_untrained_model_does_not(capsys, setup):
    # Read on the training split itself, whose few frames the principal components span: coded exactly.
    out = _run(capsys, setup, "envelope", "--split", "train", "--clips", "1", "--seconds", "1")
    rows = {line.split("|")[1].strip(): float(line.split("|")[2]) for line in out.splitlines()[2:]}
    assert list(rows)[:4] == [f"their first {k} principal components" for k in (32, 64, 128, 256)]
    assert all(error < 0.01 for error in list(rows.values())[:4]), out
    bound = [rows[f"their principal components at the rate-distortion bound, {bits} bits (the latent's at {n} "
                  "codebooks)"] for bits, n in ((60, 8), (150, 17), (350, 37))]
    assert bound[0] >= bound[1] >= bound[2] >= 0, out  # more bits, no more error (a few frames: nearly none)
    assert all(rows[f"the model, {n} codebooks"] > 1.0 for n in (8, 17, 37)), out


def test_water_level_spends_the_bits_on_the_largest_variances():
    # Variances 16, 4, 1 at 2 bits: theta = 2 gives 16 log2(8)/2 = 1.5 bits, 4 0.5 bits, 1 none (1 < theta).
    assert water_level(torch.tensor([16.0, 4.0, 1.0]), 2.0) == pytest.approx(2.0, rel=1e-9)
    # All coded: theta = geometric mean * 2^(-2 bits / n).
    assert water_level(torch.tensor([8.0, 2.0]), 6.0) == pytest.approx(4.0 * 2.0 ** -6, rel=1e-9)


def test_the_bounds_test_channel_leaves_the_water_fillings_error():
    # Gaussian frames of variances 16, 4, 1 along a rotated basis, at 2 bits: errors 2, 2 and 1 (theta = 2).
    generator = torch.Generator().manual_seed(1)
    basis = torch.linalg.qr(torch.randn(3, 3, generator=generator))[0].T  # rows: orthonormal components
    variances = torch.tensor([16.0, 4.0, 1.0])
    frames = (torch.randn(40000, 3, generator=generator) * variances.sqrt()) @ basis + 5.0
    coded = through_bound_channel(frames, torch.full((3,), 5.0), basis, variances, 2.0)
    error = ((coded - frames) @ basis.T).square().mean(0)
    torch.testing.assert_close(error, torch.tensor([2.0, 2.0, 1.0]), rtol=0.03, atol=0)


def test_fit_scores_each_source_of_every_split(capsys, setup):
    out = _run(capsys, setup, "fit", "--clips", "1", "--seconds", "1")
    rows = [line.split("|")[1:-1] for line in out.splitlines()[2:]]
    assert [(r[0].strip(), r[1].strip(), int(r[2])) for r in rows] == [("train", "synth", 1), ("valid", "held", 1)]
    for row in rows:
        assert 1.0 <= float(row[3]) <= 4.7 and 0.0 <= float(row[4]) <= 1.0, out  # PESQ-WB's and STOI's ranges


def test_a_split_narrowed_to_a_source_and_a_split_without_clips(capsys, setup):
    corpus, ckpt = setup
    assert main(["diagnose", "rvq", str(corpus), "--model", str(ckpt), "--split", "valid:held", "--clips", "2"]) == 0
    assert capsys.readouterr().out.startswith("| latent stages |")
    for split, problem in (("test", "no clips in split 'test'"), ("valid:synth", "has no source synth")):
        assert main(["diagnose", "rvq", str(corpus), "--model", str(ckpt), "--split", split]) == 3
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and str(corpus) in err and problem in err, err
