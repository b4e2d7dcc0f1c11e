"""Bitrate and codebook statistics of token streams (definitions in docs/metrics.md)."""
from __future__ import annotations

import numpy as np


def nominal_bitrate(n_codebooks: int, codebook_size: int, frame_rate: float) -> float:
    """bit/s of fixed-length codes: stages x ceil(log2(codebook_size)) x frames per second."""
    return n_codebooks * (codebook_size - 1).bit_length() * frame_rate


def entropy_bits(counts: np.ndarray) -> float:
    """Empirical (plug-in) Shannon entropy in bits of a histogram (K,)."""
    counts = np.asarray(counts, np.float64)
    total = counts.sum()
    if total <= 0:
        raise ValueError("entropy of an empty histogram")
    p = counts[counts > 0] / total
    return float(-(p * np.log2(p)).sum())


def codebook_stats(tokens: list[np.ndarray] | np.ndarray, codebook_size: int, frame_rate: float) -> dict:
    """Pooled statistics of codes (N, F) arrays (one per file, same N).

    Per codebook k: entropy H_k (bits/token), perplexity 2^H_k, share of the K entries used at least once.
    `entropy_bitrate` = frame_rate x sum_k H_k: what a zeroth-order entropy coder (one static table per
    codebook, no context) would spend; the plug-in estimate is biased low when tokens are few.
    """
    arrays = [np.asarray(t) for t in (tokens if isinstance(tokens, list) else [tokens])]
    n = arrays[0].shape[0]
    counts = np.zeros((n, codebook_size), np.int64)
    for a in arrays:
        if a.shape[0] != n:
            raise ValueError(f"codes with {a.shape[0]} codebooks pooled with {n}")
        for k in range(n):
            counts[k] += np.bincount(a[k], minlength=codebook_size)
    h = np.array([entropy_bits(c) for c in counts])
    return {
        "tokens_per_codebook": int(counts[0].sum()),
        "entropy_bits": h.round(4).tolist(),
        "perplexity": (2 ** h).round(2).tolist(),
        "used_share": (np.count_nonzero(counts, axis=1) / codebook_size).round(4).tolist(),
        "entropy_bitrate": float(h.sum() * frame_rate),
        "nominal_bitrate": nominal_bitrate(n, codebook_size, frame_rate),
    }
