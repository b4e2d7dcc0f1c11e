"""Inputs and comparisons of the kernel tests: random RVQ parameters, latent rows without near-ties,
windows, a call spy, and the tolerance every float comparison uses."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from codec.kernels import reference

TIE_MARGIN = 1e-5
RTOL, ATOL = 1e-5, 1e-5


def close(actual, expected):
    torch.testing.assert_close(actual, expected, rtol=RTOL, atol=ATOL)


def nan_like(shape):
    return torch.full(shape, float("nan"))


def rvq_params(n, size, code_dim, dim, seed):
    """Random parameters at the model's initial scales, with non-zero biases."""
    g = torch.Generator().manual_seed(seed)
    return (
        torch.randn(n, code_dim, dim, generator=g) * dim ** -0.5,
        0.1 * torch.randn(n, code_dim, generator=g),
        torch.randn(n, size, code_dim, generator=g),
        torch.randn(n, dim, code_dim, generator=g) * code_dim ** -0.5,
        0.1 * torch.randn(n, dim, generator=g),
    )


def reference_margins(latent, params, classes=None, exact_stages=()):
    """Replays reference.rvq_encode; returns its codes and each row's smallest gap between the best score
    and the best score of a different entry. With `classes` (K,), entries of the winner's class (exact
    duplicates) do not count as different; stages in `exact_stages` (exact ties by construction) are skipped.
    """
    in_w, in_b, cb, out_w, out_b = params
    residual = latent.clone()
    normed = F.normalize(cb, dim=-1, eps=reference.NORM_EPS)
    codes, gaps = [], []
    for i in range(in_w.shape[0]):
        z = F.normalize(residual @ in_w[i].T + in_b[i], dim=-1, eps=reference.NORM_EPS)
        scores = z @ normed[i].T
        idx = scores.argmax(dim=-1)
        best = scores.gather(1, idx[:, None])[:, 0]
        if classes is None:
            same = F.one_hot(idx, scores.shape[1]).bool()
        else:
            same = classes[None, :] == classes[idx][:, None]
        if i not in exact_stages:
            gaps.append(best - scores.masked_fill(same, float("-inf")).max(dim=1).values)
        codes.append(idx)
        residual = residual - (cb[i][idx] @ out_w[i].T + out_b[i])
    return torch.stack(codes, 1), torch.stack(gaps, 1).min(dim=1).values


def separated_rows(n_rows, dim, params, seed, **margin_args):
    """n_rows random latent rows with no near-tie (gap < TIE_MARGIN) at any stage of the reference."""
    g = torch.Generator().manual_seed(seed)
    candidates = torch.randn(2 * n_rows + 16, dim, generator=g)
    codes, margin = reference_margins(candidates, params, **margin_args)
    assert torch.equal(codes, reference.rvq_encode(candidates, *params)), "replay drifted from the reference"
    keep = candidates[margin >= TIE_MARGIN][:n_rows]
    assert len(keep) == n_rows
    return keep


def sqrt_hann(width):
    return torch.hann_window(width, periodic=True).sqrt()


def spy(monkeypatch, module, name):
    calls = []
    real = getattr(module, name)

    def wrapper(*args, **kwargs):
        calls.append(name)
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, wrapper)
    return calls
