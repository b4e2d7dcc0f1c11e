"""Token layouts round trip exactly; backbone output is read as documented; codebook vectors sum to the latent."""
import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from codec.tts import vocabulary as T
from codec.tts import Vocabulary, decode_tokens

LAYOUTS = [(T.flatten, T.unflatten), (T.delay, T.undelay), (T.frames, T.unframes)]


@st.composite
def codes_and_vocab(draw):
    n = draw(st.integers(1, 6))
    size = draw(st.sampled_from([2, 3, 17, 1024]))
    batch, frames = draw(st.integers(1, 3)), draw(st.integers(0, 7))
    seed = draw(st.integers(0, 2**31 - 1))
    codes = torch.from_numpy(np.random.default_rng(seed).integers(0, size, (batch, n, frames)))
    return codes, Vocabulary(n, size, offsets=draw(st.booleans()))


@pytest.mark.parametrize("forward,inverse", LAYOUTS, ids=["flatten", "delay", "frames"])
@settings(max_examples=60, deadline=None)
@given(cv=codes_and_vocab(), bos=st.booleans(), eos=st.booleans())
def test_every_layout_round_trips_exactly(forward, inverse, cv, bos, eos):
    codes, vocab = cv
    ids = forward(codes, vocab, bos=bos, eos=eos)
    assert ids.numel() == 0 or (int(ids.min()) >= 0 and int(ids.max()) < vocab.size)
    assert torch.equal(inverse(ids, vocab, bos=bos, eos=eos), codes)
    # and the backbone-output reader agrees with the strict inverse on clean output
    layout = forward.__name__
    for b, item in enumerate(T.to_codes(ids, vocab, layout)):
        assert torch.equal(item, codes[b])


def test_vocabulary_map_is_the_documented_one():
    v = Vocabulary(37, 1024)
    assert (v.pad, v.bos, v.eos, v.size) == (37888, 37889, 37890, 37891)
    codes = torch.tensor([[[5], [7]]])  # 2 codebooks, 1 frame
    assert T.flatten(codes, Vocabulary(2, 1024)).tolist() == [[5, 1024 + 7]]
    assert T.flatten(codes, Vocabulary(2, 1024, offsets=False)).tolist() == [[5, 7]]
    assert Vocabulary(2, 1024, offsets=False).size == 1027
    assert "PAD: 37888" in v.describe()


def test_delay_pattern_by_hand():
    v = Vocabulary(3, 10, offsets=False)
    codes = torch.tensor([[[1, 2], [3, 4], [5, 6]]])
    P = v.pad
    assert T.delay(codes, v).tolist() == [[[1, 2, P, P], [P, 3, 4, P], [P, P, 5, 6]]]
    assert T.delay(codes, v, bos=True, eos=True)[0, :, 0].tolist() == [v.bos] * 3
    assert T.frames(codes, v).tolist() == [[[1, 3, 5], [2, 4, 6]]]


def test_backbone_output_padding_eos_and_cut_off_frames():
    v = Vocabulary(2, 10)  # ids: codebook 0 -> 0..9, codebook 1 -> 10..19, PAD 20, BOS 21, EOS 22
    P, B, E = v.pad, v.bos, v.eos
    ids = torch.tensor([
        [P, P, B, 1, 12, 3, 14, E, 5, 16],  # left padded, EOS after two frames: the rest is ignored
        [B, 2, 13, 4, 15, 6, P, P, P, P],   # right padded, last frame cut off: dropped
    ])
    a, b = T.to_codes(ids, v)
    assert a.tolist() == [[1, 3], [2, 4]]
    assert b.tolist() == [[2, 4], [3, 5]]


def test_backbone_output_partial_depth_frames_and_delay():
    v = Vocabulary(3, 10, offsets=False)
    P, E = v.pad, v.eos
    steps = torch.tensor([[[1, 2, 3], [4, 5, P], [6, 7, 8], [E, E, E], [9, 9, 9]]])  # (B, S, n)
    (codes,) = T.to_codes(steps, v, "frames")
    assert codes.tolist() == [[1, 4, 6], [2, 5, 7]]  # frame 1 stops after 2 codebooks: depth 2 for the item
    (codes,) = T.to_codes(steps, v, "frames", n_codebooks=1)
    assert codes.tolist() == [[1, 4, 6]]
    full = torch.tensor([[[1, 2], [3, 4], [5, 6]]])  # (B, n, F) with n = 3, F = 2
    delayed = T.delay(full, v, bos=True, eos=True)
    (codes,) = T.to_codes(delayed, v, "delay")
    assert torch.equal(codes, full[0])
    (codes,) = T.to_codes(delayed[..., :-2], v, "delay")  # stopped early: the frame not yet complete dropped
    assert torch.equal(codes, full[0, :, :1])


@pytest.mark.parametrize("layout,ids,where", [
    ("flatten", [[0, 10, 5, 3]], r"item 0, step 3, codebook 1"),       # 3 is a codebook-0 id at codebook 1
    ("flatten", [[0, 10, 99, 10]], r"item 0, step 2, codebook 0.*outside the vocabulary"),
    ("frames", [[[0, 10], [-1, 11]]], r"item 0, step 1, codebook 0"),
    ("delay", [[[0, 1, 20], [20, 10, 30]]], r"item 0, step 2, codebook 1"),
])
def test_out_of_range_ids_name_their_position(layout, ids, where):
    with pytest.raises(ValueError, match=where):
        T.to_codes(torch.tensor(ids), Vocabulary(2, 10), layout)


def test_strict_inverses_reject_bad_input():
    v = Vocabulary(2, 10)
    with pytest.raises(ValueError, match="whole frames"):
        T.unflatten(torch.tensor([[0, 10, 1]]), v)
    with pytest.raises(ValueError, match=r"batch 0, codebook 1, frame 0\) is PAD"):
        T.unflatten(torch.tensor([[0, v.pad]]), v)
    with pytest.raises(ValueError, match="expected BOS"):
        T.unflatten(torch.tensor([[0, 10]]), v, bos=True)
    with pytest.raises(ValueError, match="codebooks"):
        T.flatten(torch.zeros(1, 3, 2, dtype=torch.long), v)
    with pytest.raises(TypeError):
        T.flatten(torch.zeros(1, 2, 2), v)


def test_codebook_embeddings_sum_to_the_decoder_latent(tiny_model):
    g = torch.Generator().manual_seed(0)
    codes = torch.randint(0, 1024, (2, 37, 5), generator=g)
    emb = tiny_model.codebook_embeddings()
    assert emb.shape == (37, 1024, tiny_model.config.latent_dim)
    for n in (3, 8, 37):
        # gather each latent slot's picked vector and sum: an independent path from rvq_decode
        picked = torch.stack([emb[q][codes[:, q]] for q in range(2, n)])  # (n - 2, B, F, D)
        latent = picked.sum(0).transpose(1, 2)
        torch.testing.assert_close(latent, tiny_model.latent(codes[:, :n]), rtol=1e-5, atol=1e-5)
    # as an embedding table indexed by vocabulary ids: summing a frame's 35 latent token embeddings = latent
    v = Vocabulary.for_model(tiny_model)
    table = torch.nn.Embedding.from_pretrained(emb.reshape(-1, emb.shape[-1]))
    steps = T.frames(codes, v)  # (B, F, 37)
    torch.testing.assert_close(table(steps[..., 2:]).sum(2).transpose(1, 2), tiny_model.latent(codes),
                               rtol=1e-5, atol=1e-5)
    assert tiny_model.codebook_embeddings(8).shape[0] == 8


def test_pitch_embeddings_are_smooth_in_the_pitch_they_code(tiny_model):
    level = tiny_model.codebook_embeddings()[0]
    near = (level[500] - level[501]).norm()
    far = (level[500] - level[800]).norm()
    assert near < 0.1 * far and level[0].abs().max() == 0  # code 0 (unvoiced) carries no pitch


def test_decode_tokens_equals_decoding_the_codes(tiny_model):
    g = torch.Generator().manual_seed(1)
    codes = torch.randint(0, 1024, (2, 8, 4), generator=g)
    v = Vocabulary.for_model(tiny_model, n_codebooks=8)
    ids = T.flatten(codes, v, bos=True, eos=True)
    ids[1, 1 + 3 * 8 + 4] = v.eos  # item 1 ends inside its last frame: three whole frames remain
    ids[1, 1 + 3 * 8 + 5:] = v.pad
    wav_a, wav_b = decode_tokens(tiny_model, ids, v)
    torch.testing.assert_close(wav_a, tiny_model.decode(codes[:1])[0])
    torch.testing.assert_close(wav_b, tiny_model.decode(codes[1:, :, :3])[0])
    with pytest.raises(ValueError, match="does not fit"):
        decode_tokens(tiny_model, ids, Vocabulary(8, 512))
