"""The model's guarantees: frame arithmetic, batching, causality, determinism, prefixes, streaming."""

import numpy as np
import pytest
import torch


from conftest import frames_for, speech_like


def noise(n, seed=0, batch=1):
    g = torch.Generator().manual_seed(seed)
    return 0.1 * torch.randn(batch, 1, n, generator=g)


@pytest.mark.parametrize("n", [1, 1919, 1920, 1921, 5000, 3 * 1920])
def test_frame_arithmetic_and_exact_length(tiny_model, n):
    codes = tiny_model.encode(noise(n), 24000)
    assert codes.shape == (1, 37, frames_for(n))
    assert tiny_model.decode(codes).shape == (1, 1, frames_for(n) * 1920)
    assert tiny_model.decode(codes, length=n).shape == (1, 1, n)


def test_codes_are_integers_in_range_and_deterministic(tiny_model):
    x = noise(20000, seed=3)
    a, b = tiny_model.encode(x, 24000), tiny_model.encode(x, 24000)
    assert a.dtype == torch.int64
    assert int(a.min()) >= 0 and int(a.max()) < 1024
    assert torch.equal(a, b)
    assert len(torch.unique(a)) > 37  # not one constant code: the search really discriminates


def test_same_codes_alone_and_in_padded_batch(tiny_model):
    lengths = [7000, 19200, 12345]
    clips = [noise(n, seed=i) for i, n in enumerate(lengths)]
    batch = torch.zeros(3, 1, max(lengths))
    for i, c in enumerate(clips):
        batch[i, :, : c.shape[-1]] = c
    together = tiny_model.encode(batch, 24000)
    for i, c in enumerate(clips):
        alone = tiny_model.encode(c, 24000)
        assert torch.equal(together[i : i + 1, :, : alone.shape[-1]], alone)


def test_encoder_is_causal(tiny_model):
    x = noise(5 * 1920, seed=5)
    longer = torch.cat([x, noise(3 * 1920 + 17, seed=6)], dim=-1)
    assert torch.equal(tiny_model.encode(longer, 24000)[..., :5], tiny_model.encode(x, 24000))


def test_decoder_is_causal(tiny_model):
    # Frame k's samples are final once frame k is decoded, except the last synthesis_delay of them, which
    # later synthesis windows overlap (offline, a cut-off decode closes them with silent windows).
    codes = tiny_model.encode(noise(8 * 1920, seed=7), 24000)
    full = tiny_model.decode(codes)
    final = lambda k: k * 1920 - tiny_model.config.synthesis_delay
    for k in (1, 3, 7):
        head = tiny_model.decode(codes[..., :k])
        torch.testing.assert_close(head[..., : final(k)], full[..., : final(k)], rtol=0, atol=1e-5)
    changed = codes.clone()
    changed[..., 5:] = (changed[..., 5:] + 1) % 1024
    torch.testing.assert_close(tiny_model.decode(changed)[..., : final(5)], full[..., : final(5)], rtol=0, atol=1e-5)


def test_any_prefix_of_codebooks_encodes_and_decodes(tiny_model):
    x = noise(4 * 1920, seed=8)
    full = tiny_model.encode(x, 24000)
    for n in (1, 8, 17, 36, 37):
        prefix = tiny_model.encode(x, 24000, n_codebooks=n)
        assert torch.equal(prefix, full[:, :n])  # residual VQ: fewer stages = a prefix of the codes
        assert tiny_model.decode(prefix).shape == (1, 1, 4 * 1920)
    with pytest.raises(ValueError, match="n_codebooks"):
        tiny_model.encode(x, 24000, n_codebooks=38)


def test_bad_codes_name_the_position(tiny_model):
    codes = torch.zeros(1, 8, 4, dtype=torch.long)
    codes[0, 3, 2] = 1024
    with pytest.raises(ValueError, match=r"batch 0, codebook 3, frame 2"):
        tiny_model.decode(codes)
    with pytest.raises(ValueError, match="codebooks"):
        tiny_model.decode(torch.zeros(1, 38, 2, dtype=torch.long))
    with pytest.raises(TypeError):
        tiny_model.decode(torch.zeros(1, 8, 2))


@pytest.mark.parametrize("chunks", [[1920] * 6, [1, 5000, 3, 7000, 1800], [11520], [700] * 17])
def test_streaming_encode_equals_offline(tiny_model, chunks):
    x = noise(sum(chunks), seed=9)
    offline = tiny_model.encode(x, 24000)
    parts, pos = [], 0
    with tiny_model.streaming(batch_size=1) as stream:
        for n in chunks:
            parts.append(stream.encode(x[..., pos : pos + n]))
            pos += n
        parts.append(stream.flush())
    assert torch.equal(torch.cat(parts, dim=-1), offline)


def test_input_shapes_rates_and_channels(tiny_model):
    one_second_16k = torch.from_numpy(speech_like(1.0, rate=16000))
    codes = tiny_model.encode(one_second_16k, 16000)  # [T] at 16 kHz -> 24000 samples -> 13 frames
    assert codes.shape == (1, 37, frames_for(24000))
    stereo = torch.stack([one_second_16k, -one_second_16k])  # [C, T]
    per_channel = tiny_model.encode(stereo, 16000, mono=False)
    assert per_channel.shape[0] == 2
    assert torch.equal(per_channel[:1], codes)  # channel 0 coded on its own = the mono signal
    with pytest.raises(ValueError, match="NaN"):
        tiny_model.encode(torch.full((100,), float("nan")), 24000)


def test_save_and_load_round_trip(tiny_model, tmp_path):
    import codec

    codec.save_pretrained(tiny_model, tmp_path / "ckpt")
    loaded = codec.load(tmp_path / "ckpt")
    assert loaded.checksum == tiny_model.checksum
    x = noise(5000, seed=11)
    assert torch.equal(loaded.encode(x, 24000), tiny_model.encode(x, 24000))
    weights = tmp_path / "ckpt" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(codec.WeightsError, match="SHA-256"):
        codec.load(tmp_path / "ckpt")
    (tmp_path / "ckpt" / "config.json").unlink()
    with pytest.raises(codec.WeightsError, match="missing config.json"):
        codec.load(tmp_path / "ckpt")
    with pytest.raises(codec.WeightsError, match="not a checkpoint"):
        codec.load("no-such-model")


def test_weights_hold_no_pickle(tmp_path, tiny_model):
    import codec

    codec.save_pretrained(tiny_model, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "model.safetensors", "model.sha256"]
    assert not (tmp_path / "model.safetensors").read_bytes().startswith(b"\x80")  # pickle protocol marker


@pytest.mark.parametrize("empty", [torch.zeros(0), torch.zeros(2, 0), np.zeros((1, 1, 0), np.float32)])
def test_empty_audio_is_refused_by_name(tiny_model, empty):
    with pytest.raises(ValueError, match="audio is empty"):
        tiny_model.encode(empty, 16000)


def test_zero_frames_decode_to_no_samples(tiny_model):
    # what a backbone that stops at once gives; a stream decoding 0 frames gives the same
    assert tiny_model.decode(torch.zeros(2, 37, 0, dtype=torch.long)).shape == (2, 1, 0)
    assert tiny_model.decode(torch.zeros(1, 8, 0, dtype=torch.long), length=0).shape == (1, 1, 0)
    with pytest.raises(ValueError, match="length 1 does not fit 0 frames"):
        tiny_model.decode(torch.zeros(1, 8, 0, dtype=torch.long), length=1)


def test_sample_rate_must_be_a_whole_number(tiny_model):
    x = noise(2205)
    with pytest.raises(ValueError, match="whole number of Hz, got 22050.5"):
        tiny_model.encode(x, 22050.5)
    with pytest.raises(ValueError, match="positive"):
        tiny_model.encode(x, 0)
    assert torch.equal(tiny_model.encode(x, 22050.0), tiny_model.encode(x, np.int64(22050)))


def test_codes_of_any_integer_type_decode_alike(tiny_model):
    codes = tiny_model.encode(noise(3 * 1920, seed=12), 24000)
    as_uint16 = codes.numpy().astype(np.uint16)  # how a codes file is read
    torch.testing.assert_close(tiny_model.decode(as_uint16), tiny_model.decode(codes), rtol=0, atol=0)


@pytest.mark.parametrize("cast", ["half", "double", "bfloat16"])
def test_weights_in_another_precision_are_refused_clearly(tiny_model, cast):
    import copy

    other = getattr(copy.deepcopy(tiny_model), cast)()
    for call in (lambda: other.encode(noise(1920), 24000),
                 lambda: other.decode(torch.zeros(1, 37, 1, dtype=torch.long))):
        with pytest.raises(TypeError, match="the codec runs in float32: call model.float()"):
            call()
    assert other.float().encode(noise(1920), 24000).shape == (1, 37, 1)


def test_changed_weights_are_not_saved_under_the_original_name(tiny_model, tmp_path):
    import copy

    import codec

    original = tmp_path / "original"
    trained = copy.deepcopy(tiny_model)
    trained.config.training = {"steps": 5}
    codec.save_pretrained(trained, original)
    loaded = codec.load(original)
    codec.save_pretrained(loaded, tmp_path / "same")  # unchanged weights: name and summary stay theirs
    same = codec.load(tmp_path / "same").config
    assert (same.name, same.training) == ("tiny-test", {"steps": 5})
    with torch.no_grad():
        next(loaded.parameters()).add_(0.01)  # as fine-tuning would
    codec.save_pretrained(loaded, tmp_path / "changed")
    changed = codec.load(tmp_path / "changed").config
    assert changed.name == "tiny-test-derived"
    assert changed.training["derived_from"] == f"tiny-test ({codec.load(original).checksum[:12]})"
    assert "steps" not in changed.training
    codec.save_pretrained(loaded, tmp_path / "named", name="my-voice")
    assert codec.load(tmp_path / "named").config.name == "my-voice"
    loaded.config.training = {"steps": 9, "recipe": "mine"}  # the caller says how they were made: kept
    codec.save_pretrained(loaded, tmp_path / "described")
    described = codec.load(tmp_path / "described").config
    assert (described.name, described.training) == ("tiny-test", {"steps": 9, "recipe": "mine"})
    with pytest.raises(ValueError, match="name must be"):
        codec.save_pretrained(loaded, tmp_path / "bad", name="a\nb")
    assert loaded.config.name == "tiny-test"  # saving never renames the model in memory


def test_harmonic_contrast_deepens_a_voiced_hops_valleys_and_leaves_the_rest():
    from codec.nn.networks import harmonic_contrast

    bin_hz, bins = 24000 / 720, 361
    k = torch.arange(bins, dtype=torch.float64)
    f0 = torch.tensor([[150.0, 0.0, 150.0]])
    # A harmonic ripple of 150 Hz (4.5 bins) about a sloping envelope; in hop 2 a ripple of another period.
    ripple = torch.cos(2 * np.pi * k * bin_hz / 150.0)
    log_mag = torch.stack([-0.01 * k + ripple, -0.01 * k + ripple, -0.01 * k + torch.cos(k)])[None]
    out = harmonic_contrast(log_mag, f0, 1.5, bin_hz)
    assert torch.equal(harmonic_contrast(log_mag, f0, 1.0, bin_hz), log_mag)
    assert torch.equal(out[0, 1], log_mag[0, 1])  # unvoiced: as decoded
    inner = slice(20, 340)  # away from the edges, where the mean's window is cut short
    gain = (out[0, 0, inner] + 0.01 * k[inner]).std() / ripple[inner].std()
    assert 1.4 < gain < 1.6  # the ripple grows about 1.5 times ...
    envelope = torch.nn.functional.avg_pool1d(out[:, :1, inner] - log_mag[:, :1, inner], 9, 1)
    assert envelope.abs().max() < 0.1  # ... while the envelope under it stays where it was
    assert not torch.equal(out[0, 2], log_mag[0, 2])

