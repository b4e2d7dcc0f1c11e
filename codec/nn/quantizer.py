"""Residual vector quantizer with factorized, L2-normalized code lookup (as in DAC).

Each stage projects the residual to `codebook_dim` dims, finds the entry of highest cosine similarity,
and out-projects the raw entry back. Parameters are stacked over stages so the kernels take them as is.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
import torch.nn.functional as F

from .. import kernels


@dataclass
class QuantizerOutput:
    quantized: torch.Tensor  # (B, D, F), straight-through gradient to the encoder
    codes: torch.Tensor  # (B, n, F)
    commitment_loss: torch.Tensor  # pulls encoder outputs towards their codes
    codebook_loss: torch.Tensor  # pulls codes towards encoder outputs
    residual_loss: torch.Tensor  # each stage's output fits the residual it codes, relative to the latent power
    perplexity: torch.Tensor  # (n,) per-stage codebook perplexity in this batch


class ResidualVQ(nn.Module):
    """Residual vector quantizer: `n_codebooks` stages, each projecting the residual it is given to
    `codebook_dim` dimensions, picking the nearest entry by cosine, and projecting it back.

    How it learns (forward): the encoder gets the straight-through identity (quantized = latent +
    sg(q - latent)) and a commitment pull towards its quantization. Each stage sees a detached residual,
    so no gradient runs down the residual chain (through it, gradients grew ~1e7-fold at initialization).
    Stage projections learn from the decoder through per-stage straight-through estimates, and from
    `residual_loss`: each stage's out-projected code must fit the residual it was given; without that term
    nothing ties the sum of the stages to the latent, and later stages stop coding anything.

    With `decoder_grad` off, the decoder's gradient stops at the quantizer's output: the stages then learn
    only from `residual_loss`, the commitment and codebook terms and the k-means steps, and keep coding the
    latent. With it on, the decoder's far larger loss also moves the stage projections, and on the
    source-filter decoder that pulls the stages off their residuals.

    Entries move towards the mean of the projected residuals they were picked for, by `codebook_rate` per
    step (online k-means, as SoundStream's EMA codebooks), besides any gradient: Adam moves a parameter by
    about lr per step whatever its scale, far too slowly for entries that must follow a latent whose scale
    changes by 10x while training. Every loss is relative to the latent's power, so that scale is neither
    rewarded nor punished.
    """

    def __init__(self, dim: int, n_codebooks: int, codebook_size: int, codebook_dim: int,
                 dropout_prob: float = 0.5, reseed_every: int = 100, reseed_threshold: float = 0.05,
                 codebook_rate: float = 0.1, decoder_grad: bool = True):
        super().__init__()
        self.n_codebooks, self.codebook_size = n_codebooks, codebook_size
        self.dropout_prob, self.codebook_rate, self.decoder_grad = dropout_prob, codebook_rate, decoder_grad
        self.reseed_every, self.reseed_threshold = reseed_every, reseed_threshold
        # Each stage starts as an orthogonal projection onto a random codebook_dim-dimensional subspace
        # (out_weight @ in_weight = P): coding the residual's coordinates there can only shrink it, so no
        # stage starts out adding error that a later one must undo.
        basis = torch.linalg.qr(torch.randn(n_codebooks, dim, codebook_dim)).Q  # (n, D, d), orthonormal columns
        self.in_weight = nn.Parameter(basis.transpose(1, 2).contiguous())
        self.in_bias = nn.Parameter(torch.zeros(n_codebooks, codebook_dim))
        self.codebooks = nn.Parameter(torch.randn(n_codebooks, codebook_size, codebook_dim))
        self.out_weight = nn.Parameter(basis.contiguous())
        self.out_bias = nn.Parameter(torch.zeros(n_codebooks, dim))
        # Training statistics: an EMA of how often each entry is picked, and calls since the last re-seed.
        self.register_buffer("usage", torch.ones(n_codebooks, codebook_size))
        self.register_buffer("calls", torch.zeros((), dtype=torch.long))
        # Entries the last training forward re-seeded, None if it was not a re-seeding call (the centroid
        # updates move other entries in every call).
        self.reseeded: int | None = None

    def _check_depth(self, n: int | None) -> int:
        n = self.n_codebooks if n is None else int(n)
        if not 1 <= n <= self.n_codebooks:
            raise ValueError(f"n_codebooks must be in [1, {self.n_codebooks}], got {n}")
        return n

    @torch.no_grad()
    def encode(self, latent: torch.Tensor, n_codebooks: int | None = None, backend: str | None = None) -> torch.Tensor:
        """latent (B, D, F) -> codes (B, n, F), int64 in [0, codebook_size)."""
        n = self._check_depth(n_codebooks)
        batch, dim, frames = latent.shape
        rows = latent.transpose(1, 2).reshape(-1, dim).float()
        codes = kernels.rvq_encode(rows, self.in_weight[:n], self.in_bias[:n], self.codebooks[:n],
                                   self.out_weight[:n], self.out_bias[:n], backend=backend)
        return codes.reshape(batch, frames, n).transpose(1, 2)

    def decode(self, codes: torch.Tensor, backend: str | None = None) -> torch.Tensor:
        """codes (B, n, F), any n <= n_codebooks -> latent (B, D, F)."""
        batch, n, frames = codes.shape
        self._check_depth(n)
        rows = codes.transpose(1, 2).reshape(-1, n).long()
        latent = kernels.rvq_decode(rows, self.codebooks[:n], self.out_weight[:n], self.out_bias[:n], backend=backend)
        return latent.reshape(batch, frames, -1).transpose(1, 2)

    @torch.no_grad()
    def entry_vectors(self, n_codebooks: int | None = None) -> torch.Tensor:
        """Every entry of the first n stages out-projected to the latent: (n, codebook_size, D).

        Entry c of stage q is `codebooks[q, c] @ out_weight[q].T + out_bias[q]` (the stage's bias
        included), so for codes (n, F) the sum over stages of vectors[q, codes[q, f]] is exactly the
        latent that `decode` gives frame f.
        """
        n = self._check_depth(n_codebooks)
        return torch.einsum("qkc,qdc->qkd", self.codebooks[:n].float(), self.out_weight[:n].float()) \
            + self.out_bias[:n, None, :].float()

    def forward(self, latent: torch.Tensor, n_codebooks: int | None = None) -> QuantizerOutput:
        """Training path. In training mode, with probability `dropout_prob` an item keeps only a random
        prefix of the stages (quantizer dropout), so any prefix decodes; `n_codebooks` fixes the depth for
        every item instead (also in training mode). How each part learns: the class docstring.

        Always in float32, even under autocast: bf16 scores (8 significant bits) cannot tell apart the nearest
        entries of a deep stage, which encoding in float32 picks, and its argmax is slower."""
        with torch.autocast(latent.device.type, enabled=False):
            return self._forward(latent, n_codebooks)

    def _forward(self, latent: torch.Tensor, n_codebooks: int | None) -> QuantizerOutput:
        batch, dim, frames = latent.shape
        x = latent.transpose(1, 2).float()  # (B, F, D)
        n = self._check_depth(n_codebooks)
        depth = self._depths(batch, n, dropout=self.training and n_codebooks is None, device=x.device)
        residual, quantized = x.detach(), torch.zeros_like(x)
        stage_commitment = codebook_loss = residual_loss = x.new_zeros(())
        power = x.detach().pow(2).mean().clamp_min(1e-8)
        codes, perplexity, samples, centroids = [], [], [], []
        for i in range(n):
            active = (depth > i).float()  # (B,)
            weight = active / active.sum().clamp_min(1.0) / n  # mean over active items and stages
            z_e = residual @ self.in_weight[i].T + self.in_bias[i]  # (B, F, d)
            with torch.no_grad():
                scores = F.normalize(z_e, dim=-1) @ F.normalize(self.codebooks[i], dim=-1).T
                idx = scores.argmax(dim=-1)  # (B, F)
            z_q = self.codebooks[i][idx]
            stage_commitment = stage_commitment + ((z_e - z_q.detach()).pow(2).mean(dim=(1, 2)) * weight).sum()
            codebook_loss = codebook_loss + ((z_e.detach() - z_q).pow(2).mean(dim=(1, 2)) * weight).sum()
            out = (z_e + (z_q - z_e).detach()) @ self.out_weight[i].T + self.out_bias[i]  # straight-through
            residual_loss = residual_loss + ((residual - out).pow(2).mean(dim=(1, 2)) * weight).sum()
            quantized = quantized + out * active[:, None, None]
            residual = residual - out.detach()
            codes.append(idx)
            counts = torch.bincount(idx[active.bool()].flatten(), minlength=self.codebook_size).float()
            perplexity.append(self._perplexity(counts))
            if self.training:
                self._track_usage(i, counts)
                samples.append(z_e[active.bool()].reshape(-1, z_e.shape[-1]).detach())
                centroids.append((idx[active.bool()].flatten(), samples[-1]))
        if self.training:
            self._follow_centroids(centroids)
            self._maybe_reseed(samples)
        commitment = (stage_commitment + (x - quantized.detach()).pow(2).mean()) / power
        if not self.decoder_grad:  # the stages learn only from their own losses; the decoder's reaches the encoder
            quantized = quantized.detach()
        quantized = quantized + (x - x.detach())  # value unchanged; identity gradient to the encoder
        return QuantizerOutput(quantized=quantized.transpose(1, 2).to(latent.dtype), codes=torch.stack(codes, dim=1),
                               commitment_loss=commitment, codebook_loss=codebook_loss / power,
                               residual_loss=residual_loss / power, perplexity=torch.stack(perplexity))

    def _depths(self, batch: int, n: int, dropout: bool, device) -> torch.Tensor:
        """(batch,) stages each item keeps: n, or with quantizer dropout a random prefix for some items."""
        depth = torch.full((batch,), n, device=device)
        if dropout and self.dropout_prob > 0:
            drop = torch.rand(batch, device=device) < self.dropout_prob
            depth = torch.where(drop, torch.randint(1, n + 1, (batch,), device=device), depth)
        return depth

    @staticmethod
    def _perplexity(counts: torch.Tensor) -> torch.Tensor:
        p = counts / counts.sum().clamp_min(1.0)
        return torch.exp(-(p * torch.log(p.clamp_min(1e-12))).sum())

    @torch.no_grad()
    def _track_usage(self, stage: int, counts: torch.Tensor) -> None:
        # Usage in units of "a uniform share": 1.0 means picked as often as 1/K of the time.
        share = counts * self.codebook_size / counts.sum().clamp_min(1.0)
        self.usage[stage].mul_(0.99).add_(0.01 * share)

    @torch.no_grad()
    def _follow_centroids(self, picks: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        """Move each picked entry towards the mean of the projected residuals it was picked for."""
        if not self.codebook_rate:
            return
        sums = self.codebooks.new_zeros(len(picks), self.codebook_size, self.codebooks.shape[-1])
        counts = self.codebooks.new_zeros(len(picks), self.codebook_size)
        for stage, (idx, z) in enumerate(picks):
            sums[stage].index_add_(0, idx, z.to(sums.dtype))
            counts[stage].index_add_(0, idx, torch.ones_like(idx, dtype=counts.dtype))
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(sums)  # every replica applies the same update
            torch.distributed.all_reduce(counts)
        hit = counts > 0
        mean = sums / counts.clamp_min(1.0)[..., None]
        stages = self.codebooks.data[: len(picks)]
        stages[hit] = stages[hit].lerp(mean[hit], self.codebook_rate)

    @torch.no_grad()
    def _maybe_reseed(self, samples: list[torch.Tensor]) -> None:
        """Re-seed entries picked far less than a uniform share with recent encoder outputs."""
        self.calls += 1
        if int(self.calls) % self.reseed_every:
            self.reseeded = None
            return
        self.reseeded = 0
        for stage, z in enumerate(samples):
            dead = (self.usage[stage] < self.reseed_threshold).nonzero().flatten()
            if len(dead) == 0 or len(z) == 0:
                continue
            self.reseeded += len(dead)
            pick = torch.randint(0, len(z), (len(dead),), device=z.device)
            self.codebooks.data[stage, dead] = z[pick].to(self.codebooks.dtype)
            self.usage[stage, dead] = 1.0

    def dead_codes(self) -> torch.Tensor:
        """(n,) entries per stage currently below the re-seed threshold."""
        return (self.usage < self.reseed_threshold).sum(dim=1)
