"""The compiled Triton kernels on a CUDA GPU against the PyTorch references; skipped without a GPU.

tests/test_kernels.py runs the kernels under Triton's interpreter, which checks the kernels' logic but not
what the GPU compiler makes of it. This runs them compiled, at awkward sizes and at the model's, with the
same rules: outputs pre-filled with NaN (codes with -1), codes exactly equal, floats to 1e-5 relative.

The checks run in a fresh process without TRITON_INTERPRET: Triton builds its own @jit helpers (tl.max,
tl.sum, ...) in the mode of its first import, and test_kernels.py imports it in interpreter mode, which
the GPU compiler cannot use. `python tests/test_kernels_cuda.py --device cpu` with TRITON_INTERPRET=1
dry-runs the same checks on the CPU (small cases only).
"""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

RTOL, ATOL = 1e-5, 1e-5
TIE_MARGIN = 1e-5  # rows whose top-two cosine scores are closer than this at some stage are dropped


def _cuda_with_triton() -> bool:
    if not torch.cuda.is_available():
        return False
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.skipif(not _cuda_with_triton(), reason="needs a CUDA GPU and Triton")
def test_compiled_kernels_match_the_references_on_cuda():
    env = {k: v for k, v in os.environ.items() if k not in ("TRITON_INTERPRET", "CODEC_KERNELS")}
    done = subprocess.run([sys.executable, __file__, "--device", "cuda"], env=env, capture_output=True,
                          text=True, timeout=900, cwd=os.path.dirname(os.path.abspath(__file__)))
    assert done.returncode == 0 and "all ok" in done.stdout, (done.stdout[-3000:], done.stderr[-5000:])


# ---------------------------------------------------------------------------------------------------
# The checks (run in the child process)
# ---------------------------------------------------------------------------------------------------

def close(actual: torch.Tensor, expected: torch.Tensor) -> None:
    torch.testing.assert_close(actual.cpu(), expected.cpu(), rtol=RTOL, atol=ATOL)


def rvq_params(n: int, size: int, code_dim: int, dim: int, seed: int):
    """in_w (n, d, D), in_b (n, d), codebooks (n, K, d), out_w (n, D, d), out_b (n, D) on the CPU, at the
    quantizer's initial scales with non-zero biases."""
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, code_dim, dim, generator=g) * dim ** -0.5, 0.1 * torch.randn(n, code_dim, generator=g),
            torch.randn(n, size, code_dim, generator=g), torch.randn(n, dim, code_dim, generator=g) * code_dim ** -0.5,
            0.1 * torch.randn(n, dim, generator=g))


def min_gap(latent: torch.Tensor, params) -> torch.Tensor:
    """(N,) the smallest gap, over the stages of the reference search, between a row's best cosine score
    and its second best: where it is a few ulp, summation order (BLAS vs the kernel) may pick either."""
    from codec.kernels.reference import NORM_EPS

    in_w, in_b, cb, out_w, out_b = params
    residual, normed, gaps = latent.clone(), F.normalize(cb, dim=-1, eps=NORM_EPS), []
    for i in range(in_w.shape[0]):
        scores = F.normalize(residual @ in_w[i].T + in_b[i], dim=-1, eps=NORM_EPS) @ normed[i].T
        top = scores.topk(min(2, scores.shape[1]), dim=1)
        one_entry = scores.shape[1] == 1  # nothing to confuse it with
        gaps.append(torch.ones_like(top.values[:, 0]) if one_entry else top.values[:, 0] - top.values[:, 1])
        residual = residual - (cb[i][top.indices[:, 0]] @ out_w[i].T + out_b[i])
    return torch.stack(gaps, 1).min(dim=1).values


def separated_rows(n_rows: int, dim: int, params, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    candidates = torch.randn(n_rows + n_rows // 8 + 16, dim, generator=g)
    keep = candidates[min_gap(candidates, params) >= TIE_MARGIN][:n_rows]
    assert len(keep) == n_rows
    return keep


def check_rvq(device: str, tb, reference, big: bool) -> None:
    # (N, D, n, K, d, blocks): N = 1, N not a multiple of the block, 1 to 37 stages, non-power-of-two D, d, K.
    cases = [(1, 256, 37, 1024, 8, {}), (37, 200, 5, 1000, 6, dict(block_n=16, block_k=256)),
             (20, 17, 1, 100, 3, {}), (5, 48, 2, 300, 20, dict(block_n=16, block_k=64))]
    if big:
        cases += [(4099, 256, 37, 1024, 8, {}), (1000, 256, 12, 1024, 8, dict(block_n=64, block_k=128))]
    for n_rows, dim, n, size, code_dim, blocks in cases:
        params = rvq_params(n, size, code_dim, dim, seed=n_rows + dim)
        latent = separated_rows(n_rows, dim, params, seed=n_rows)
        ref_codes, ref_q = reference.rvq_encode(latent, *params, return_quantized=True)
        on = [p.to(device) for p in params]
        codes = torch.full((n_rows, n), -1, dtype=torch.long, device=device)
        quantized = torch.full((n_rows, dim), float("nan"), device=device)
        tb.rvq_encode(latent.to(device), *on, return_quantized=True, out=codes, quantized_out=quantized, **blocks)
        assert torch.equal(codes.cpu(), ref_codes), f"rvq_encode codes differ at N {n_rows}, D {dim}, n {n}"
        close(quantized, ref_q)
        # Decode the reference codes, and a prefix of the stages, into NaN-filled buffers.
        for depth in sorted({n, max(1, n // 2)}):
            out = torch.full((n_rows, dim), float("nan"), device=device)
            tb.rvq_decode(ref_codes[:, :depth].to(device), *on[2:], out=out)
            close(out, reference.rvq_decode(ref_codes[:, :depth], *params[2:]))
        print(f"ok rvq N {n_rows} D {dim} n {n} K {size} d {code_dim}")


def check_overlap_add(device: str, tb, reference, big: bool) -> None:
    def sqrt_hann(width: int) -> torch.Tensor:
        return torch.hann_window(width, periodic=True).sqrt()

    cases = [(1, 1, 480, 240), (2, 9, 16, 8), (3, 5, 12, 4), (2, 6, 9, 4), (1, 4, 6, 8), (2, 3, 7, 7)]
    if big:
        cases += [(1, 36_001, 480, 240), (3, 1001, 480, 240)]  # the model's window: 6 minutes, and a batch
    for batch, n_frames, width, hop in cases:
        g = torch.Generator().manual_seed(width * hop + n_frames)
        frames = torch.randn(batch, n_frames, width, generator=g)
        window = sqrt_hann(width) if width % 2 == 0 else 0.5 + torch.rand(width, generator=g)
        out = torch.full((batch, (n_frames - 1) * hop + width), float("nan"), device=device)
        tb.overlap_add(frames.to(device), hop, window.to(device), out=out)
        close(out, reference.overlap_add(frames, hop, window))
        print(f"ok overlap_add B {batch} F {n_frames} W {width} H {hop}")

    batch, width, hop = 2, 480, 240
    window = sqrt_hann(width)
    frames = torch.randn(batch, 40, width, generator=torch.Generator().manual_seed(7))
    for split in ([1] * 40, [3, 0, 17, 20], [40]):
        tail, env = torch.zeros(batch, width - hop, device=device), (window[hop:] ** 2).to(device)
        ref_tail, ref_env = tail.cpu(), env.cpu()
        for chunk in frames.split(split, dim=1):
            n = chunk.shape[1]
            bufs = dict(out=torch.full((batch, n * hop), float("nan"), device=device),
                        tail_out=torch.full((batch, width - hop), float("nan"), device=device),
                        tail_env_out=torch.full((width - hop,), float("nan"), device=device))
            got = tb.overlap_add_stream(chunk.to(device), hop, window.to(device), tail, env, **(bufs if n else {}))
            want = reference.overlap_add_stream(chunk, hop, window, ref_tail, ref_env)
            for a, b in zip(got, want):
                close(a, b)
            _, tail, env = got
            _, ref_tail, ref_env = want
        print(f"ok overlap_add_stream split {split[:4]}")


def check_model(device: str) -> None:
    """The dispatcher on CUDA tensors: `auto` picks Triton, and a small Codec codes as the reference does."""
    from codec import Codec, CodecConfig, kernels

    if device == "cuda":
        assert kernels.choose_backend(torch.zeros(1, device=device)) == "triton"
    torch.manual_seed(1234)
    cfg = CodecConfig(encoder_dims=(32, 48), encoder_depths=(1, 1), decoder_dims=(48, 32), decoder_depths=(1, 2),
                      latent_dim=32, name="tiny-test")
    model = Codec(cfg).eval().to(device)
    q = model.quantizer
    params = [p.detach().cpu() for p in (q.in_weight, q.in_bias, q.codebooks, q.out_weight, q.out_bias)]
    t = torch.arange(12_000) / 24_000  # 7 frames, the last one padded
    for f0 in (220.0, 180.0, 260.0, 140.0, 310.0, 120.0):
        # The first clip (deterministic) whose search has no near-tie on this device's encoder output.
        wav = (0.1 * torch.sin(2 * torch.pi * f0 * t) * (1 + torch.sin(2 * torch.pi * 3 * t)))[None, None].to(device)
        with torch.no_grad():
            latent = model.encoder(model._pad_to_frames(wav)).float()
        if min_gap(latent.transpose(1, 2).reshape(-1, latent.shape[1]).cpu(), params).min() >= TIE_MARGIN:
            break
    else:
        raise AssertionError("every candidate clip has a near-tie")
    backend = None if device == "cuda" else "triton"  # auto on CUDA; forced for the CPU dry run
    codes = model.encode(wav, 24_000, backend=backend)
    ref_codes = model.encode(wav, 24_000, backend="reference")
    assert torch.equal(codes, ref_codes)
    os.environ["CODEC_KERNELS"] = backend or "auto"  # the ISTFT head's overlap-add follows the variable
    audio = model.decode(codes, backend=backend)
    os.environ["CODEC_KERNELS"] = "reference"
    close(audio, model.decode(codes, backend="reference"))
    print("ok Codec.encode / decode through the dispatcher")


def main(argv: list[str]) -> int:
    device = argv[argv.index("--device") + 1] if "--device" in argv else "cuda"
    from codec.kernels import reference, triton_backend as tb

    big = device == "cuda"  # the interpreter (CPU dry run) would take minutes on the large cases
    check_rvq(device, tb, reference, big)
    check_overlap_add(device, tb, reference, big)
    check_model(device)
    print("all ok")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
