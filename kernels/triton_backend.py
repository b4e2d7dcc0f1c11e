"""Triton kernels for the hot paths, with exactly the signatures of `reference` (plus keyword-only extras).

Each public function is one kernel launch (plus cheap host-side checks and allocation):

* `rvq_encode`: all n stages of the residual VQ search for a block of rows in one program; the residual
  row block stays in registers across the stages.
* `rvq_decode`: codes -> summed, out-projected latent, one program per block of rows.
* `overlap_add` / `overlap_add_stream`: one program per (block of output samples, batch item); every
  output sample gathers its <= ceil(W / H) contributing frames and computes the squared-window envelope
  in-kernel. The streaming form adds the carried tail in the same launch and writes the new tail too.

All arithmetic is fp32: `tl.dot(..., input_precision="ieee")` (no TF32), `sqrt_rn` / `div_rn` (IEEE
rounding, like torch), so the codes agree with the reference except where two cosine scores are within
a few ulp of each other (where summation order decides, in either implementation).

Extras, keyword-only, not used by the dispatcher: `out=` (and `quantized_out=`, `tail_out=`,
`tail_env_out=`) to write into caller-provided buffers, and block sizes / warp counts for tuning.

Kernels are compiled on their first launch, or run by Triton's interpreter on the CPU when
TRITON_INTERPRET=1 is set before Triton is first imported (as the test configuration does on machines
without a GPU): Triton reads it once, when its own helpers and these kernels are built.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from . import reference
from .reference import NORM_EPS


def _pow2(x: int, floor: int = 1) -> int:
    return max(floor, triton.next_power_of_2(max(int(x), 1)))


def _dot_min_k() -> int:
    """Smallest inner dimension tl.dot accepts for fp32 on NVIDIA GPUs (8 in recent Triton, 16 before)."""
    try:
        from triton.backends.nvidia.compiler import min_dot_size

        return int(min_dot_size(None)(tl.float32, tl.float32)[2])
    except Exception:  # older or different Triton layout: the historical bound
        return 16


_CODE_DIM_FLOOR = max(_dot_min_k(), 1)


def _check_out(buf, shape, dtype, device, name):
    if buf is None:
        return torch.empty(shape, dtype=dtype, device=device)
    if tuple(buf.shape) != tuple(shape) or buf.dtype != dtype or buf.device != torch.device(device) \
            or not buf.is_contiguous():
        raise ValueError(f"{name} must be a contiguous {dtype} tensor of shape {tuple(shape)} on {device}, "
                         f"got {buf.dtype} {tuple(buf.shape)} on {buf.device}")
    return buf


# ----------------------------------------------------------------------------------------------------
# Residual VQ encode
# ----------------------------------------------------------------------------------------------------

@triton.jit
def _tile(N, D, d, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_C: tl.constexpr):
    """This program's rows (int64) of the N, the latent columns of D and the code dims of d, with masks."""
    rows = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    cols = tl.arange(0, BLOCK_D)
    dims = tl.arange(0, BLOCK_C)
    return rows.to(tl.int64), rows < N, cols, cols < D, dims, dims < d


@triton.jit
def _nearest_entry(z, cb_ptr, i, K, d, dims, dim_ok, eps, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    """Index of stage i's entry with the highest cosine to each row of z (BLOCK_N, BLOCK_C), z normalized;
    ties go to the lowest index."""
    kk = tl.arange(0, BLOCK_K)
    best = tl.full((BLOCK_N,), float("-inf"), tl.float32)
    best_idx = tl.zeros((BLOCK_N,), tl.int32)
    for k0 in range(0, K, BLOCK_K):
        ks = k0 + kk
        k_ok = ks < K
        # Codebook tile (BLOCK_K, BLOCK_C), each entry normalized like the reference's F.normalize.
        e = tl.load(cb_ptr + (i * K + ks[:, None]) * d + dims[None, :], mask=k_ok[:, None] & dim_ok[None, :], other=0.0)
        e_norm = tl.sqrt_rn(tl.sum(e * e, axis=1))
        e = tl.div_rn(e, tl.maximum(e_norm, eps)[:, None])
        # Cosine scores as a broadcast multiply and sum over the d code dims: every score goes through
        # the same operations in the same order, so duplicated entries score exactly equal and the
        # lowest index wins, here and in the interpreter (whose tl.dot is a BLAS call that may round
        # identical columns differently).
        scores = tl.sum(z[:, None, :] * e[None, :, :], axis=2)  # (BLOCK_N, BLOCK_K)
        scores = tl.where(k_ok[None, :], scores, float("-inf"))
        tile_best, tile_idx = tl.max(scores, axis=1, return_indices=True, return_indices_tie_break_left=True)
        # Strictly greater: an equal score in a later tile keeps the earlier (lower) index.
        better = tile_best > best
        best = tl.where(better, tile_best, best)
        best_idx = tl.where(better, k0 + tile_idx, best_idx)
    return best_idx


@triton.jit
def _stage_output(cb_ptr, out_w_ptr, out_b_ptr, i, idx, K, d, D, dims, cols, q_mask, w_out_mask, col_ok):
    """Stage i's out-projected entries for rows' codes idx: cb[i][idx] @ out_w[i].T + out_b[i]."""
    q = tl.load(cb_ptr + (i * K + idx[:, None]) * d + dims[None, :], mask=q_mask, other=0.0)
    w_out = tl.load(out_w_ptr + i * D * d + cols[None, :] * d + dims[:, None], mask=w_out_mask, other=0.0)
    b_out = tl.load(out_b_ptr + i * D + cols, mask=col_ok, other=0.0)
    return tl.dot(q, w_out, input_precision="ieee") + b_out[None, :]


@triton.jit
def _rvq_encode_kernel(
    latent_ptr, in_w_ptr, in_b_ptr, cb_ptr, out_w_ptr, out_b_ptr, codes_ptr, quant_ptr,
    N, D, K, d, n_stages, eps,
    RETURN_Q: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_C: tl.constexpr,
    BLOCK_K: tl.constexpr,
):
    # Layouts (all contiguous fp32): latent (N, D); in_w (n, d, D); in_b (n, d); cb (n, K, d);
    # out_w (n, D, d); out_b (n, D); codes (N, n) int64; quant (N, D).
    rows64, row_ok, cols, col_ok, dims, dim_ok = _tile(N, D, d, BLOCK_N, BLOCK_D, BLOCK_C)

    x_mask = row_ok[:, None] & col_ok[None, :]
    x_offs = rows64[:, None] * D + cols[None, :]
    # Padded columns stay exactly 0 through every stage (zero weights and biases there).
    residual = tl.load(latent_ptr + x_offs, mask=x_mask, other=0.0)
    w_in_mask = col_ok[:, None] & dim_ok[None, :]  # (BLOCK_D, BLOCK_C)
    w_out_mask = dim_ok[:, None] & col_ok[None, :]  # (BLOCK_C, BLOCK_D)
    q_mask = row_ok[:, None] & dim_ok[None, :]  # (BLOCK_N, BLOCK_C)

    for i in range(n_stages):
        # Project: z = residual @ in_w[i].T + in_b[i]; in_w[i] read transposed as (BLOCK_D, BLOCK_C).
        w_in = tl.load(in_w_ptr + i * d * D + dims[None, :] * D + cols[:, None], mask=w_in_mask, other=0.0)
        b_in = tl.load(in_b_ptr + i * d + dims, mask=dim_ok, other=0.0)
        z = tl.dot(residual, w_in, input_precision="ieee") + b_in[None, :]
        # F.normalize: z / max(||z||, eps)
        z_norm = tl.sqrt_rn(tl.sum(z * z, axis=1))
        z = tl.div_rn(z, tl.maximum(z_norm, eps)[:, None])

        best_idx = _nearest_entry(z, cb_ptr, i, K, d, dims, dim_ok, eps, BLOCK_N, BLOCK_K)
        tl.store(codes_ptr + rows64 * n_stages + i, best_idx.to(tl.int64), mask=row_ok)
        # Out-project the raw winning entries and subtract: residual -= cb[i][idx] @ out_w[i].T + out_b[i].
        residual = residual - _stage_output(cb_ptr, out_w_ptr, out_b_ptr, i, best_idx, K, d, D, dims, cols,
                                            q_mask, w_out_mask, col_ok)

    if RETURN_Q:
        latent = tl.load(latent_ptr + x_offs, mask=x_mask, other=0.0)
        tl.store(quant_ptr + x_offs, latent - residual, mask=x_mask)



def _params(*tensors):
    return [t.detach().float().contiguous() for t in tensors]


def rvq_encode(
    latent: torch.Tensor,
    in_weight: torch.Tensor,
    in_bias: torch.Tensor,
    codebooks: torch.Tensor,
    out_weight: torch.Tensor,
    out_bias: torch.Tensor,
    return_quantized: bool = False,
    *,
    out: torch.Tensor | None = None,
    quantized_out: torch.Tensor | None = None,
    block_n: int = 32,
    block_k: int = 64,
    num_warps: int = 8,
):
    """See `reference.rvq_encode`. One launch for all stages; `out` / `quantized_out` receive the results."""
    latent, in_weight, in_bias, codebooks, out_weight, out_bias = _params(
        latent, in_weight, in_bias, codebooks, out_weight, out_bias)
    n_rows, dim = latent.shape
    n_stages, code_dim, _ = in_weight.shape
    size = codebooks.shape[1]
    if in_weight.shape[2] != dim or out_weight.shape[1:] != (dim, code_dim) or codebooks.shape[0] < n_stages \
            or codebooks.shape[2] != code_dim or in_bias.shape != (n_stages, code_dim) \
            or out_bias.shape[1] != dim:
        raise ValueError("rvq_encode: inconsistent parameter shapes")
    device = latent.device
    codes = _check_out(out, (n_rows, n_stages), torch.long, device, "out")
    quantized = None
    if return_quantized:
        quantized = _check_out(quantized_out, (n_rows, dim), torch.float32, device, "quantized_out")
    if n_rows and n_stages:
        grid = (triton.cdiv(n_rows, block_n),)
        _rvq_encode_kernel[grid](
            latent, in_weight, in_bias, codebooks, out_weight, out_bias, codes,
            quantized if return_quantized else latent,
            n_rows, dim, size, code_dim, n_stages, NORM_EPS,
            RETURN_Q=return_quantized, BLOCK_N=block_n, BLOCK_D=_pow2(dim, 16),
            BLOCK_C=_pow2(code_dim, _CODE_DIM_FLOOR), BLOCK_K=block_k, num_warps=num_warps,
        )
    elif return_quantized:
        quantized.zero_()  # no stages: latent - latent
    if return_quantized:
        return codes, quantized
    return codes


# ----------------------------------------------------------------------------------------------------
# Residual VQ decode
# ----------------------------------------------------------------------------------------------------

@triton.jit
def _rvq_decode_kernel(
    codes_ptr, cb_ptr, out_w_ptr, out_b_ptr, out_ptr,
    N, D, K, d, n_stages, code_stride_n, code_stride_s,
    BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_C: tl.constexpr,
):
    # codes (N, n) any integer dtype and strides; cb (>=n, K, d); out_w (>=n, D, d); out_b (>=n, D); out (N, D).
    rows64, row_ok, cols, col_ok, dims, dim_ok = _tile(N, D, d, BLOCK_N, BLOCK_D, BLOCK_C)
    q_mask = row_ok[:, None] & dim_ok[None, :]
    w_out_mask = dim_ok[:, None] & col_ok[None, :]

    acc = tl.zeros((BLOCK_N, BLOCK_D), tl.float32)
    for i in range(n_stages):
        idx = tl.load(codes_ptr + rows64 * code_stride_n + i * code_stride_s, mask=row_ok, other=0).to(tl.int64)
        acc = acc + _stage_output(cb_ptr, out_w_ptr, out_b_ptr, i, idx, K, d, D, dims, cols, q_mask, w_out_mask, col_ok)
    tl.store(out_ptr + rows64[:, None] * D + cols[None, :], acc, mask=row_ok[:, None] & col_ok[None, :])



def rvq_decode(
    codes: torch.Tensor,
    codebooks: torch.Tensor,
    out_weight: torch.Tensor,
    out_bias: torch.Tensor,
    *,
    out: torch.Tensor | None = None,
    block_n: int = 32,
    num_warps: int = 4,
    check_codes: bool = True,
) -> torch.Tensor:
    """See `reference.rvq_decode`. `check_codes` raises IndexError on a code outside [0, K) (one host sync)."""
    codebooks, out_weight, out_bias = _params(codebooks, out_weight, out_bias)
    n_rows, n_stages = codes.shape
    size, code_dim = codebooks.shape[1:]
    dim = out_weight.shape[1]
    if n_stages > min(codebooks.shape[0], out_weight.shape[0], out_bias.shape[0]):
        raise ValueError(f"rvq_decode: {n_stages} stages of codes but fewer stages of parameters")
    if codes.is_floating_point() or codes.is_complex():
        raise TypeError("rvq_decode: codes must be integers")
    if codes.device != codebooks.device:
        codes = codes.to(codebooks.device)
    result = _check_out(out, (n_rows, dim), torch.float32, codebooks.device, "out")
    if codes.numel() and check_codes:
        low, high = torch.aminmax(codes)
        if int(low) < 0 or int(high) >= size:
            raise IndexError(f"rvq_decode: codes must lie in [0, {size}), got [{int(low)}, {int(high)}]")
    if n_rows:
        grid = (triton.cdiv(n_rows, block_n),)
        _rvq_decode_kernel[grid](
            codes, codebooks, out_weight, out_bias, result,
            n_rows, dim, size, code_dim, n_stages, codes.stride(0), codes.stride(1),
            BLOCK_N=block_n, BLOCK_D=_pow2(dim, 16), BLOCK_C=_pow2(code_dim, _CODE_DIM_FLOOR), num_warps=num_warps,
        )
    return result


# ----------------------------------------------------------------------------------------------------
# Overlap-add
# ----------------------------------------------------------------------------------------------------

@triton.jit
def _overlap_add_kernel(
    frames_ptr, window_ptr, tail_ptr, tail_env_ptr, out_ptr, new_tail_ptr, new_tail_env_ptr,
    n_frames, W, H, L, n_out, n_tail,
    f_stride_b, f_stride_f, f_stride_w, t_stride_b, eps,
    STREAM: tl.constexpr, MAX_OVERLAP: tl.constexpr, BLOCK_T: tl.constexpr,
):
    # frames (B, F, W) any strides; window (W,); output sample t in [0, L), L = (F - 1) * H + W.
    # Samples t < n_out are normalized into out (B, n_out); with STREAM, samples n_out <= t < L go
    # un-normalized into new_tail (B, L - n_out) and their envelope into new_tail_env, and the carried
    # tail (B, n_tail) / tail_env (n_tail,) is added to the first n_tail samples.
    pid = tl.program_id(0)
    b = tl.program_id(1).to(tl.int64)
    t = pid * BLOCK_T + tl.arange(0, BLOCK_T)
    in_range = t < L
    # Frames covering t: f * H <= t < f * H + W  <=>  ceil((t - W + 1) / H) <= f <= t // H.
    f_lo = tl.maximum(t - W + H, 0) // H
    f_hi = tl.minimum(t // H, n_frames - 1)
    signal = tl.zeros((BLOCK_T,), tl.float32)
    env = tl.zeros((BLOCK_T,), tl.float32)
    for j in tl.static_range(MAX_OVERLAP):
        f = f_lo + j
        ok = in_range & (f <= f_hi)
        pos = t - f * H
        w = tl.load(window_ptr + pos, mask=ok, other=0.0)
        x = tl.load(frames_ptr + b * f_stride_b + f.to(tl.int64) * f_stride_f + pos * f_stride_w, mask=ok, other=0.0)
        signal += x.to(tl.float32) * w
        env += w * w
    if STREAM:
        carried = in_range & (t < n_tail)
        signal += tl.load(tail_ptr + b * t_stride_b + t, mask=carried, other=0.0)
        env += tl.load(tail_env_ptr + t, mask=carried, other=0.0)
    y = tl.where(env > eps, tl.div_rn(signal, tl.maximum(env, eps)), 0.0)
    tl.store(out_ptr + b * n_out + t, y, mask=in_range & (t < n_out))
    if STREAM:
        rest = in_range & (t >= n_out)
        tl.store(new_tail_ptr + b * (L - n_out) + (t - n_out), signal, mask=rest)
        first = (tl.zeros((BLOCK_T,), tl.int64) + b) == 0  # one batch item writes the shared envelope
        tl.store(new_tail_env_ptr + (t - n_out), env, mask=rest & first)



def _ola_launch(frames, hop, window, eps, out, tail, tail_env, new_tail, new_tail_env, n_out, block_t, num_warps):
    batch, n_frames, width = frames.shape
    length = (n_frames - 1) * hop + width
    stream = tail is not None
    if stream:
        t_stride_b = tail.stride(0)
    else:
        tail = tail_env = new_tail = new_tail_env = window  # never read or written
        t_stride_b = 0
    if length:
        grid = (triton.cdiv(length, block_t), batch)
        _overlap_add_kernel[grid](
            frames, window, tail, tail_env, out, new_tail, new_tail_env,
            n_frames, width, hop, length, n_out, width - hop if stream else 0,
            frames.stride(0), frames.stride(1), frames.stride(2), t_stride_b, float(eps),
            STREAM=stream, MAX_OVERLAP=-(-width // hop), BLOCK_T=block_t, num_warps=num_warps,
        )


def _ola_inputs(frames, hop, window):
    if frames.dim() != 3:
        raise ValueError(f"frames must be (B, F, W), got shape {tuple(frames.shape)}")
    hop = int(hop)
    if hop <= 0:
        raise ValueError(f"hop must be positive, got {hop}")
    window = window.detach().to(device=frames.device, dtype=torch.float32).contiguous()
    if window.shape != (frames.shape[2],):
        raise ValueError(f"window must be ({frames.shape[2]},), got {tuple(window.shape)}")
    if frames.dtype not in (torch.float32, torch.float16, torch.bfloat16):
        frames = frames.float()
    return frames, hop, window


def overlap_add(
    frames: torch.Tensor,
    hop: int,
    window: torch.Tensor,
    eps: float = 1e-8,
    *,
    out: torch.Tensor | None = None,
    block_t: int = 1024,
    num_warps: int = 4,
) -> torch.Tensor:
    """See `reference.overlap_add`. frames (B, F, W) -> (B, (F - 1) * hop + W), one launch."""
    frames, hop, window = _ola_inputs(frames, hop, window)
    batch, n_frames, width = frames.shape
    if n_frames == 0:
        raise ValueError("overlap_add needs at least one frame")
    length = (n_frames - 1) * hop + width
    result = _check_out(out, (batch, length), torch.float32, frames.device, "out")
    if batch:
        _ola_launch(frames, hop, window, eps, result, None, None, None, None, length, block_t, num_warps)
    return result


def overlap_add_stream(
    frames: torch.Tensor,
    hop: int,
    window: torch.Tensor,
    tail: torch.Tensor,
    tail_env: torch.Tensor,
    eps: float = 1e-8,
    *,
    out: torch.Tensor | None = None,
    tail_out: torch.Tensor | None = None,
    tail_env_out: torch.Tensor | None = None,
    block_t: int = 1024,
    num_warps: int = 4,
):
    """See `reference.overlap_add_stream`: (signal (B, F * hop), new tail (B, W - hop), new tail_env)."""
    if frames.shape[1] == 0:
        return frames.new_zeros(frames.shape[0], 0), tail, tail_env
    frames, hop, window = _ola_inputs(frames, hop, window)
    batch, n_frames, width = frames.shape
    if batch == 0:  # nothing to launch over; the envelope alone still defines the new tail_env
        return reference.overlap_add_stream(frames, hop, window, tail, tail_env, eps)
    overlap = width - hop
    if overlap < 0:
        raise ValueError(f"overlap_add_stream needs hop <= window length, got hop {hop} > {width}")
    device = frames.device
    tail = tail.detach().to(device=device, dtype=torch.float32).expand(batch, overlap)
    if tail.stride(1) != 1:
        tail = tail.contiguous()
    tail_env = tail_env.detach().to(device=device, dtype=torch.float32).expand(overlap).contiguous()
    done = n_frames * hop
    signal = _check_out(out, (batch, done), torch.float32, device, "out")
    new_tail = _check_out(tail_out, (batch, overlap), torch.float32, device, "tail_out")
    new_env = _check_out(tail_env_out, (overlap,), torch.float32, device, "tail_env_out")
    _ola_launch(frames, hop, window, eps, signal, tail, tail_env, new_tail, new_env, done, block_t, num_warps)
    return signal, new_tail, new_env


__all__ = ["rvq_encode", "rvq_decode", "overlap_add", "overlap_add_stream"]
