"""Triton kernels against the PyTorch references, run on the CPU by Triton's interpreter, and the dispatcher.

The test configuration (conftest.py) sets TRITON_INTERPRET=1 on machines without a GPU, before anything
imports Triton; with a GPU these tests skip and tests/test_kernels_cuda.py runs the compiled kernels (run
`TRITON_INTERPRET=1 python -m pytest tests/test_kernels.py` there to interpret them too).

Every kernel writes into caller buffers pre-filled with NaN (floats) or -1 (codes), so an element the
kernel never writes fails the comparison. Codes must match exactly, floats to rtol 1e-5.

rvq_encode near-ties: the kernel's fp32 sums run in a different order from the CPU BLAS, so two cosine
scores within a few ulp could in principle rank differently. Random rows whose best and second-best
scores differ by less than TIE_MARGIN at some stage of the reference are dropped from the inputs (about
1 % of rows); exact ties are tested separately with duplicated codebook entries.
"""
from __future__ import annotations

import os

import pytest
import torch

if os.environ.get("TRITON_INTERPRET") != "1":
    pytest.skip("Triton's interpreter is off (TRITON_INTERPRET is not 1): the compiled kernels are "
                "tests/test_kernels_cuda.py's", allow_module_level=True)
pytest.importorskip("triton", reason="Triton is not installed: pip install triton (or codec[triton])")

from codec import kernels  # noqa: E402
from codec.kernels import reference  # noqa: E402
from codec.kernels import triton_backend as tb  # noqa: E402

from kernel_inputs import (  # noqa: E402
    ATOL, RTOL, TIE_MARGIN, close, nan_like, reference_margins, rvq_params, separated_rows, spy, sqrt_hann)


@pytest.fixture(scope="module", autouse=True)
def no_forced_backend():
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("CODEC_KERNELS", raising=False)
        yield


def run_encode(latent, params, return_quantized=True, **blocks):
    n_rows, n = latent.shape[0], params[0].shape[0]
    codes_buf = torch.full((n_rows, n), -1, dtype=torch.long)
    q_buf = nan_like((n_rows, latent.shape[1]))
    result = tb.rvq_encode(latent, *params, return_quantized=return_quantized, out=codes_buf,
                           quantized_out=q_buf, **blocks)
    if return_quantized:
        codes, quantized = result
        assert quantized.data_ptr() == q_buf.data_ptr()
    else:
        codes, quantized = result, None
    assert codes.data_ptr() == codes_buf.data_ptr()
    return codes, quantized


# ---------------------------------------------------------------------------------------------------
# rvq_encode
# ---------------------------------------------------------------------------------------------------

# (N, D, n stages, K, d, block_n, block_k): N = 1, N not a multiple of block_n, 1 to 37 stages,
# non-power-of-two D, d and K, K below one tile, K a multiple of the tile, d above 16 (two dot tiles).
ENCODE_CASES = [
    (1, 256, 37, 1024, 8, 16, 256),  # the model's shapes, one row
    (37, 200, 5, 1000, 6, 16, 256),
    (20, 17, 1, 100, 3, 16, 128),
    (17, 256, 37, 1024, 8, 16, 512),
    (5, 48, 2, 300, 20, 16, 64),
]


@pytest.mark.parametrize("case", ENCODE_CASES, ids=lambda c: "N{}-D{}-n{}-K{}-d{}".format(*c[:5]))
def test_rvq_encode_matches_reference(case):
    n_rows, dim, n, size, code_dim, block_n, block_k = case
    params = rvq_params(n, size, code_dim, dim, seed=n_rows + dim)
    latent = separated_rows(n_rows, dim, params, seed=n_rows)
    codes, quantized = run_encode(latent, params, block_n=block_n, block_k=block_k)
    ref_codes, ref_quantized = reference.rvq_encode(latent, *params, return_quantized=True)
    assert codes.dtype == torch.long
    assert torch.equal(codes, ref_codes)
    close(quantized, ref_quantized)


def test_rvq_encode_default_blocks_and_codes_only():
    params = rvq_params(3, 1024, 8, 256, seed=7)
    latent = separated_rows(45, 256, params, seed=8)  # 45 = one full block of 32 and a partial one
    codes = tb.rvq_encode(latent, *params)
    assert torch.equal(codes, reference.rvq_encode(latent, *params))
    codes, _ = run_encode(latent, params, return_quantized=False)
    assert torch.equal(codes, reference.rvq_encode(latent, *params))


def test_rvq_encode_breaks_exact_ties_towards_the_lowest_index():
    # Entry k holds unique vector ((k + 1) // 2) % 250: pairs (2j - 1, 2j) are equal, including the pair
    # (255, 256) across a 256-entry tile boundary, and k equals k + 500 (a different tile).
    n, size, code_dim, dim = 3, 1000, 8, 64
    in_w, in_b, _, out_w, out_b = rvq_params(n, size, code_dim, dim, seed=11)
    unique = torch.randn(n, 250, code_dim, generator=torch.Generator().manual_seed(12))
    cls = (torch.arange(size) + 1) // 2 % 250
    params = (in_w, in_b, unique[:, cls], out_w, out_b)
    lowest = torch.full((250,), size).scatter_reduce(0, cls, torch.arange(size), reduce="amin")
    latent = separated_rows(40, dim, params, seed=13, classes=cls)
    ref = reference.rvq_encode(latent, *params)
    assert torch.equal(ref, lowest[cls[ref]]), "reference picks the lowest index of each tied group"
    codes, quantized = run_encode(latent, params, block_n=16, block_k=256)
    assert torch.equal(codes, ref)
    close(quantized, reference.rvq_encode(latent, *params, return_quantized=True)[1])


def test_rvq_encode_all_scores_tied_picks_zero():
    # A zero projection normalizes to zero (not NaN): every score is 0 and the reference picks entry 0.
    params = list(rvq_params(2, 300, 8, 32, seed=21))
    params[0] = params[0].clone()
    params[0][0] = 0.0
    params[1] = params[1].clone()
    params[1][0] = 0.0
    latent = separated_rows(9, 32, params, seed=22, exact_stages=(0,))
    codes, quantized = run_encode(latent, params, block_n=16, block_k=128)
    ref_codes, ref_q = reference.rvq_encode(latent, *params, return_quantized=True)
    assert (ref_codes[:, 0] == 0).all()
    assert torch.equal(codes, ref_codes)
    close(quantized, ref_q)


def test_rvq_encode_empty_inputs():
    params = rvq_params(2, 64, 8, 32, seed=1)
    codes, q = tb.rvq_encode(torch.zeros(0, 32), *params, return_quantized=True)
    assert codes.shape == (0, 2) and q.shape == (0, 32)


# ---------------------------------------------------------------------------------------------------
# rvq_decode
# ---------------------------------------------------------------------------------------------------

DECODE_CASES = [  # (N, D, n stages of codes, n stages of parameters, K, d)
    (1, 256, 37, 37, 1024, 8),
    (37, 200, 5, 7, 1000, 6),  # a prefix of the stages
    (70, 17, 1, 1, 100, 3),
    (33, 48, 3, 3, 300, 20),
]


@pytest.mark.parametrize("case", DECODE_CASES, ids=lambda c: "N{}-D{}-n{}of{}-K{}-d{}".format(*c))
def test_rvq_decode_matches_reference(case):
    n_rows, dim, n, n_params, size, code_dim = case
    _, _, cb, out_w, out_b = rvq_params(n_params, size, code_dim, dim, seed=n_rows)
    codes = torch.randint(0, size, (n_rows, n), generator=torch.Generator().manual_seed(n_rows))
    buf = nan_like((n_rows, dim))
    out = tb.rvq_decode(codes, cb, out_w, out_b, out=buf, block_n=16)
    assert out.data_ptr() == buf.data_ptr()
    close(out, reference.rvq_decode(codes, cb, out_w, out_b))


def test_rvq_decode_int32_strided_codes_and_bad_codes():
    _, _, cb, out_w, out_b = rvq_params(4, 100, 8, 40, seed=3)
    codes = torch.randint(0, 100, (4, 19), generator=torch.Generator().manual_seed(3))
    strided = codes.T.to(torch.int32)  # (19, 4), strides (1, 19)
    close(tb.rvq_decode(strided, cb, out_w, out_b, block_n=16), reference.rvq_decode(strided.long(), cb, out_w, out_b))
    with pytest.raises(IndexError):
        tb.rvq_decode(torch.full((3, 2), 100), cb, out_w, out_b)
    with pytest.raises(IndexError):
        tb.rvq_decode(torch.full((3, 2), -1), cb, out_w, out_b)
    assert tb.rvq_decode(torch.zeros(0, 2, dtype=torch.long), cb, out_w, out_b).shape == (0, 40)
    close(tb.rvq_decode(torch.zeros(3, 0, dtype=torch.long), cb, out_w, out_b), torch.zeros(3, 40))


def test_rvq_roundtrip_quantized_equals_decode():
    params = rvq_params(6, 200, 8, 64, seed=5)
    latent = separated_rows(21, 64, params, seed=6)
    codes, quantized = run_encode(latent, params, block_n=16, block_k=128)
    close(tb.rvq_decode(codes, *params[2:], block_n=16), quantized)


# ---------------------------------------------------------------------------------------------------
# overlap-add
# ---------------------------------------------------------------------------------------------------

OLA_CASES = [  # (B, F, W, H, block_t)
    (1, 1, 480, 240, 256),  # one frame: envelope 0 at the tapered edge
    (2, 9, 16, 8, 32),  # the model's 50 % overlap
    (3, 5, 12, 4, 16),  # three frames overlap
    (2, 6, 9, 4, 16),  # W not a multiple of H
    (1, 4, 6, 8, 16),  # hop > W: gaps with zero envelope
    (2, 3, 7, 7, 128),  # no overlap, one partial block
]


@pytest.mark.parametrize("case", OLA_CASES, ids=lambda c: "B{}-F{}-W{}-H{}".format(*c[:4]))
def test_overlap_add_matches_reference(case):
    batch, n_frames, width, hop, block_t = case
    g = torch.Generator().manual_seed(width * hop)
    frames = torch.randn(batch, n_frames, width, generator=g)
    window = sqrt_hann(width) if width % 2 == 0 else 0.5 + torch.rand(width, generator=g)
    length = (n_frames - 1) * hop + width
    buf = nan_like((batch, length))
    out = tb.overlap_add(frames, hop, window, out=buf, block_t=block_t)
    assert out.data_ptr() == buf.data_ptr()
    expected = reference.overlap_add(frames, hop, window)
    close(out, expected)
    if width % 2 == 0:
        assert (out[:, 0] == 0).all()  # sqrt-Hann starts at 0: the edge emits 0, not x / 0


def test_overlap_add_strided_frames_and_eps():
    g = torch.Generator().manual_seed(1)
    frames = torch.randn(2, 12, 7, generator=g).transpose(1, 2)  # (2, 7, 12), non-contiguous
    window = torch.rand(12, generator=g) * 0.01  # tiny envelope: eps decides more samples
    for eps in (1e-8, 1e-5):
        close(tb.overlap_add(frames, 5, window, eps=eps, block_t=16), reference.overlap_add(frames, 5, window, eps=eps))


@pytest.mark.parametrize("split", [[1, 1, 1, 1, 1, 1, 1], [3, 4], [7], [2, 0, 5]])
def test_overlap_add_stream_matches_reference_and_offline(split):
    batch, width, hop = 2, 16, 6
    g = torch.Generator().manual_seed(len(split))
    frames = torch.randn(batch, sum(split), width, generator=g)
    window = sqrt_hann(width)
    tail, env = torch.zeros(batch, width - hop), torch.zeros(width - hop)  # a stream starts from nothing
    ref_tail, ref_env = tail, env
    pieces = []
    for chunk in frames.split(split, dim=1):
        n = chunk.shape[1]
        bufs = dict(out=nan_like((batch, n * hop)), tail_out=nan_like((batch, width - hop)),
                    tail_env_out=nan_like((width - hop,)))
        got = tb.overlap_add_stream(chunk, hop, window, tail, env, block_t=16, **(bufs if n else {}))
        want = reference.overlap_add_stream(chunk, hop, window, ref_tail, ref_env)
        for a, b in zip(got, want):
            close(a, b)
        if n:
            assert [t.data_ptr() for t in got] == [b.data_ptr() for b in bufs.values()]
        pieces.append(got[0])
        _, tail, env = got
        _, ref_tail, ref_env = want
    # Equals the offline result over the same frames, truncated to what no later frame changes.
    offline = tb.overlap_add(frames, hop, window, block_t=16)
    close(torch.cat(pieces, 1), offline[:, : frames.shape[1] * hop])


def test_overlap_add_stream_broadcast_tail_and_errors():
    g = torch.Generator().manual_seed(2)
    frames, window = torch.randn(3, 4, 10, generator=g), sqrt_hann(10)
    tail, env = torch.randn(1, 6, generator=g), torch.rand(6, generator=g)
    for a, b in zip(tb.overlap_add_stream(frames, 4, window, tail, env, block_t=16),
                    reference.overlap_add_stream(frames, 4, window, tail, env)):
        close(a, b)
    with pytest.raises(ValueError):
        tb.overlap_add_stream(frames, 11, window, torch.zeros(3, 0), torch.zeros(0))
    with pytest.raises(ValueError):
        tb.overlap_add(frames[:, :0], 4, window)


# ---------------------------------------------------------------------------------------------------
# Dispatcher
# ---------------------------------------------------------------------------------------------------

def test_choose_backend(monkeypatch):
    x = torch.zeros(2)
    assert kernels.choose_backend(x) == "reference"  # auto: CPU tensors use the reference, even interpreted
    assert kernels.choose_backend(x, "reference") == "reference"
    assert kernels.choose_backend(x, "triton") == "triton"  # allowed on CPU because TRITON_INTERPRET=1
    monkeypatch.setenv("CODEC_KERNELS", "triton")
    assert kernels.choose_backend(x) == "triton"
    assert kernels.choose_backend(x, "reference") == "reference"  # the argument wins over the variable
    monkeypatch.setenv("CODEC_KERNELS", "bogus")
    with pytest.raises(ValueError):
        kernels.choose_backend(x)
    monkeypatch.setenv("CODEC_KERNELS", "auto")
    with pytest.raises(ValueError):
        kernels.choose_backend(x, "cuda")


def test_forcing_triton_where_it_cannot_run_raises(monkeypatch):
    x = torch.zeros(2)
    monkeypatch.delenv("TRITON_INTERPRET")  # a CPU tensor without the interpreter
    with pytest.raises(RuntimeError):
        kernels.choose_backend(x, "triton")
    with pytest.raises(RuntimeError):
        kernels.overlap_add(torch.zeros(1, 2, 4), 2, torch.ones(4), backend="triton")
    assert kernels.choose_backend(x) == "reference"
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    monkeypatch.setattr(kernels, "_triton_module", lambda: None)  # Triton missing
    with pytest.raises(RuntimeError):
        kernels.choose_backend(x, "triton")
    monkeypatch.setenv("CODEC_KERNELS", "triton")
    with pytest.raises(RuntimeError):
        kernels.rvq_decode(torch.zeros(1, 1, dtype=torch.long), torch.zeros(1, 4, 8), torch.zeros(1, 5, 8),
                           torch.zeros(1, 5))


@pytest.mark.parametrize("how", ["argument", "env"])
def test_dispatcher_runs_triton_with_reference_signatures(monkeypatch, how):
    force = {"backend": "triton"} if how == "argument" else {}
    if how == "env":
        monkeypatch.setenv("CODEC_KERNELS", "triton")
    params = rvq_params(4, 100, 8, 24, seed=30)
    latent = separated_rows(5, 24, params, seed=31)
    calls = [spy(monkeypatch, tb, name) for name in ("rvq_encode", "rvq_decode", "overlap_add", "overlap_add_stream")]
    ref_calls = spy(monkeypatch, reference, "rvq_encode")
    codes, quantized = kernels.rvq_encode(latent, *params, return_quantized=True, **force)
    assert ref_calls == []  # the forced backend did not fall back to the reference
    ref_codes, ref_q = reference.rvq_encode(latent, *params, return_quantized=True)
    assert torch.equal(codes, ref_codes)
    close(quantized, ref_q)
    close(kernels.rvq_decode(codes, *params[2:], **force), reference.rvq_decode(codes, *params[2:]))
    frames, window = torch.randn(2, 3, 8), sqrt_hann(8)
    close(kernels.overlap_add(frames, 4, window, eps=1e-6, **force), reference.overlap_add(frames, 4, window, eps=1e-6))
    tail, env = torch.zeros(2, 4), window[4:] ** 2
    for a, b in zip(kernels.overlap_add_stream(frames, 4, window, tail, env, **force),
                    reference.overlap_add_stream(frames, 4, window, tail, env)):
        close(a, b)
    assert [len(c) for c in calls] == [1, 1, 1, 1]


def test_model_paths_under_forced_triton(monkeypatch):
    from codec.nn.networks import PhaseSynthesis
    from codec.nn.quantizer import ResidualVQ
    from codec.nn.stream_state import active

    torch.manual_seed(40)
    rvq = ResidualVQ(dim=24, n_codebooks=4, codebook_size=64, codebook_dim=8).eval()
    latent = torch.randn(2, 24, 5)
    params = (rvq.in_weight, rvq.in_bias, rvq.codebooks, rvq.out_weight, rvq.out_bias)
    _, margin = reference_margins(latent.transpose(1, 2).reshape(-1, 24), [p.detach() for p in params])
    assert margin.min() >= TIE_MARGIN  # this seed has no near-tie
    codes = rvq.encode(latent, backend="reference")
    assert torch.equal(rvq.encode(latent, backend="triton"), codes)
    close(rvq.decode(codes[:, :3], backend="triton"), rvq.decode(codes[:, :3], backend="reference"))

    synth = PhaseSynthesis(n_fft=16, hop=4, block=2, sample_rate=16).eval()
    x = torch.randn(2, 6, 9)  # log magnitudes of 6 hops
    with torch.no_grad():
        monkeypatch.setenv("CODEC_KERNELS", "reference")
        offline = synth(x)
        with active({}):
            ref_stream = torch.cat([synth(x[:, :2]), synth(x[:, 2:]), synth.flush(2)], -1)
        close(ref_stream, offline)
        monkeypatch.setenv("CODEC_KERNELS", "triton")
        close(synth(x), offline)
        with active({}):
            close(torch.cat([synth(x[:, :2]), synth(x[:, 2:]), synth.flush(2)], -1), ref_stream)


@pytest.mark.parametrize("how", ["argument", "env"])
def test_forcing_reference_never_calls_triton(monkeypatch, how):
    # The other direction of forcing: with TRITON_INTERPRET=1 Triton could run, yet "reference" must win.
    force = {"backend": "reference"} if how == "argument" else {}
    monkeypatch.setenv("CODEC_KERNELS", "triton" if how == "argument" else "reference")
    calls = [spy(monkeypatch, tb, name) for name in ("rvq_encode", "rvq_decode", "overlap_add", "overlap_add_stream")]
    params = rvq_params(2, 50, 8, 16, seed=50)
    latent = torch.randn(3, 16, generator=torch.Generator().manual_seed(51))
    codes = kernels.rvq_encode(latent, *params, **force)
    assert torch.equal(codes, reference.rvq_encode(latent, *params))
    close(kernels.rvq_decode(codes, *params[2:], **force), reference.rvq_decode(codes, *params[2:]))
    frames, window = torch.randn(1, 3, 8), sqrt_hann(8)
    close(kernels.overlap_add(frames, 4, window, **force), reference.overlap_add(frames, 4, window))
    kernels.overlap_add_stream(frames, 4, window, torch.zeros(1, 4), window[4:] ** 2, **force)
    assert [len(c) for c in calls] == [0, 0, 0, 0]


def test_codec_encode_decode_through_the_dispatcher(monkeypatch, tiny_model):
    """The whole model (tests/conftest.py tiny_config, 37 x 1024 codebooks) under forced Triton."""
    from conftest import speech_like

    model = tiny_model
    wav = torch.from_numpy(speech_like(0.5, seed=3))[None, None]  # 12,000 samples: 7 frames, the last padded
    with torch.no_grad():
        latent = model.encoder(model._pad_to_frames(wav)).float()
    rows = latent.transpose(1, 2).reshape(-1, latent.shape[1])
    q = model.quantizer
    params = [p.detach() for p in (q.in_weight, q.in_bias, q.codebooks, q.out_weight, q.out_bias)]
    _, margin = reference_margins(rows, [p[:12] for p in params])
    assert margin.min() >= TIE_MARGIN  # this clip has no near-tie, so the codes must agree exactly

    # 12 of the 37 stages: a prefix depth keeps the interpreted search ~3x shorter than all 37.
    ref_codes = model.encode(wav, 24000, n_codebooks=12, backend="reference")
    ref_audio = model.decode(ref_codes, backend="reference")
    calls = {name: spy(monkeypatch, tb, name) for name in ("rvq_encode", "rvq_decode", "overlap_add_stream")}
    codes = model.encode(wav, 24000, n_codebooks=12, backend="triton")  # forced by argument
    assert torch.equal(codes, ref_codes)
    # Forced by the variable: the synthesis overlap-adds each codec frame, then the closing silent frames.
    monkeypatch.setenv("CODEC_KERNELS", "triton")
    audio = model.decode(codes)
    assert {k: len(v) for k, v in calls.items()} == {"rvq_encode": 1, "rvq_decode": 1, "overlap_add_stream": 7 + 1}
    assert audio.shape == ref_audio.shape == (1, 1, 7 * 1920)
    # The overlap tail seeds the next frame's Griffin-Lim passes, which carry the kernels' float32 rounding
    # (each within RTOL / ATOL above) on through the phases: a few times ATOL by the end of the clip.
    torch.testing.assert_close(audio, ref_audio, rtol=RTOL, atol=5 * ATOL)


def test_bench_floors_match_the_documented_hour():
    # docs/kernels.md quotes these numbers; the formulas live in kernels/bench.py.
    from codec.kernels.bench import ola_floors, rvq_floors

    (enc, dec), (ola, stream) = rvq_floors(45_000), ola_floors(720_000)
    assert enc == (60_437_280, 39_564_860_160)
    assert dec == (60_149_440, 7_257_600_000)
    assert ola == (2_419_205_280, 1_123_200_600)
    assert stream[0] == 4 * 720_000 * 720 + 4 * 720 + 4 * 720_000 * 120 + 2 * 4 * 2 * 600
