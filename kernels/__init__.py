"""Hot-path kernels behind one dispatcher: Triton on CUDA tensors when it imports, the reference elsewhere.

`backend` (argument) or the environment variable CODEC_KERNELS forces a choice:
"auto" (default), "reference" or "triton". Forcing "triton" where it cannot run raises.
"""
from __future__ import annotations

import os

import torch

from . import reference

BACKENDS = ("auto", "reference", "triton")


def _triton_module():
    try:
        from . import triton_backend
    except ImportError:  # Triton missing, or its kernels not built into this install
        return None
    return triton_backend


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET") == "1"


def choose_backend(tensor: torch.Tensor, backend: str | None = None) -> str:
    """The backend a call on `tensor` will use, after the argument and CODEC_KERNELS are applied."""
    backend = backend or os.environ.get("CODEC_KERNELS", "auto")
    if backend not in BACKENDS:
        raise ValueError(f"unknown kernel backend {backend!r}; expected one of {BACKENDS}")
    if backend == "reference":
        return "reference"
    runnable = _triton_module() is not None and (tensor.is_cuda or _interpreting())
    if backend == "triton":
        if not runnable:
            raise RuntimeError(
                "the Triton backend needs Triton installed and a CUDA tensor (or TRITON_INTERPRET=1)"
            )
        return "triton"
    return "triton" if runnable and tensor.is_cuda else "reference"


def _impl(name: str, tensor: torch.Tensor, backend: str | None):
    module = _triton_module() if choose_backend(tensor, backend) == "triton" else reference
    return getattr(module, name)


def rvq_encode(latent, in_weight, in_bias, codebooks, out_weight, out_bias, return_quantized=False, backend=None):
    """See `reference.rvq_encode`."""
    fn = _impl("rvq_encode", latent, backend)
    return fn(latent, in_weight, in_bias, codebooks, out_weight, out_bias, return_quantized=return_quantized)


def rvq_decode(codes, codebooks, out_weight, out_bias, backend=None):
    """See `reference.rvq_decode`."""
    return _impl("rvq_decode", codebooks, backend)(codes, codebooks, out_weight, out_bias)


def overlap_add(frames, hop, window, eps=1e-8, backend=None):
    """See `reference.overlap_add`."""
    return _impl("overlap_add", frames, backend)(frames, hop, window, eps=eps)


def overlap_add_stream(frames, hop, window, tail, tail_env, eps=1e-8, backend=None):
    """See `reference.overlap_add_stream`."""
    return _impl("overlap_add_stream", frames, backend)(frames, hop, window, tail, tail_env, eps=eps)


__all__ = ["choose_backend", "rvq_encode", "rvq_decode", "overlap_add", "overlap_add_stream", "reference"]
