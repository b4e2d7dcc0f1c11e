"""Plain PyTorch references for the hot paths. They define the correct answer and run on any device.

Shapes: N rows (batch x frames), D latent channels, n stages, K entries per codebook, d code dims.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

# Below this norm a projected residual is treated as zero: F.normalize would divide by ~0.
NORM_EPS = 1e-12


def rvq_encode(
    latent: torch.Tensor,
    in_weight: torch.Tensor,
    in_bias: torch.Tensor,
    codebooks: torch.Tensor,
    out_weight: torch.Tensor,
    out_bias: torch.Tensor,
    return_quantized: bool = False,
):
    """Residual VQ search, stage by stage.

    latent (N, D); in_weight (n, d, D); in_bias (n, d); codebooks (n, K, d) raw entries;
    out_weight (n, D, d); out_bias (n, D). Per stage: project the residual to d dims, L2-normalize,
    pick the entry of highest cosine similarity (lowest index on ties), out-project the raw entry and
    subtract it from the residual. Returns codes (N, n) int64, and the quantized latent (N, D) if asked.
    """
    latent = latent.float()
    residual = latent.clone()
    n_stages = in_weight.shape[0]
    codes = torch.empty(latent.shape[0], n_stages, dtype=torch.long, device=latent.device)
    normed = F.normalize(codebooks.float(), dim=-1, eps=NORM_EPS)
    for i in range(n_stages):
        z = F.normalize(residual @ in_weight[i].T + in_bias[i], dim=-1, eps=NORM_EPS)
        idx = (z @ normed[i].T).argmax(dim=-1)
        codes[:, i] = idx
        residual = residual - (codebooks[i][idx] @ out_weight[i].T + out_bias[i])
    if return_quantized:
        return codes, latent - residual
    return codes


def rvq_decode(
    codes: torch.Tensor, codebooks: torch.Tensor, out_weight: torch.Tensor, out_bias: torch.Tensor
) -> torch.Tensor:
    """Sum over stages of the out-projected codebook entries: codes (N, n) -> latent (N, D).

    Uses the first n stages of the parameters, so any prefix of the codebooks decodes. One gather and one
    contraction over (stage, code dim) rather than a loop over stages: a streamed frame is one row, and
    per-stage calls would cost more than the arithmetic.
    """
    n_stages = codes.shape[1]
    stages = torch.arange(n_stages, device=codes.device)
    entries = codebooks[:n_stages].float()[stages, codes]  # (N, n, d)
    return torch.einsum("nqd,qjd->nj", entries, out_weight[:n_stages].float()) + out_bias[:n_stages].float().sum(0)


def _fold(frames: torch.Tensor, hop: int, window: torch.Tensor):
    """Un-normalized overlap-add of windowed frames (B, F, W) and of the squared window, both summed."""
    batch, n_frames, width = frames.shape
    length = (n_frames - 1) * hop + width
    fold = dict(output_size=(1, length), kernel_size=(1, width), stride=(1, hop))
    weighted = (frames.float() * window).transpose(1, 2)  # (B, W, F): F.fold wants one column a frame
    signal = F.fold(weighted, **fold).reshape(batch, length)
    squared = (window.float() ** 2).reshape(1, width, 1).expand(1, width, n_frames)
    env = F.fold(squared, **fold).reshape(length)
    return signal, env


def _normalize(signal: torch.Tensor, env: torch.Tensor, eps: float) -> torch.Tensor:
    # Where the envelope is ~0 (the outer edge of a tapered window) emit 0, not signal / ~0.
    return torch.where(env > eps, signal / env.clamp_min(eps), torch.zeros_like(signal))


def overlap_add(frames: torch.Tensor, hop: int, window: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Windowed overlap-add normalized by the summed squared window.

    frames (B, F, W) -> signal (B, (F - 1) * hop + W). Frame f starts at sample f * hop and is multiplied
    by the window; the sum is divided by sum_f window^2, the exact inverse of windowed analysis framing.
    """
    signal, env = _fold(frames, hop, window)
    return _normalize(signal, env, eps)


def overlap_add_stream(
    frames: torch.Tensor,
    hop: int,
    window: torch.Tensor,
    tail: torch.Tensor,
    tail_env: torch.Tensor,
    eps: float = 1e-8,
):
    """Streaming overlap-add: emits the F * hop samples that no later frame can change.

    tail (B, W - hop) and tail_env (W - hop,) carry the un-normalized overlap of earlier frames (zeros at
    the start of a stream, or a virtual zero frame's envelope to match an offline call that prepends one).
    Returns (signal (B, F * hop), new tail, new tail_env). Concatenating the outputs of any split of the
    frames equals the offline result over the same frames, truncated to F * hop.
    """
    if frames.shape[1] == 0:
        return frames.new_zeros(frames.shape[0], 0), tail, tail_env
    signal, env = _fold(frames, hop, window)
    overlap = frames.shape[2] - hop
    signal[:, :overlap] += tail
    env[:overlap] += tail_env
    done = frames.shape[1] * hop
    return _normalize(signal[:, :done], env[:done], eps), signal[:, done:], env[done:]
