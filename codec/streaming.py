"""Streaming state that lives on the modules (the Moshi pattern).

A `Streamable` module keeps what it needs of the past in `self.stream_state` while streaming is on, and
pads with zeros (the same past a stream starts from) when it is off. So the concatenated outputs of a
stream equal one offline call on the concatenated input.
"""
from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import nn
import torch.nn.functional as F


class Streamable(nn.Module):
    """Mixin for modules with state across calls. `stream_state` is None until the first streamed call."""

    streaming: bool = False
    stream_state = None

    def reset_stream(self, on: bool) -> None:
        self.streaming = on
        self.stream_state = None


@contextmanager
def streaming(module: nn.Module):
    """Turn streaming on for every `Streamable` below `module`, fresh state, off again on exit."""
    parts = [m for m in module.modules() if isinstance(m, Streamable)]
    for m in parts:
        m.reset_stream(True)
    try:
        yield module
    finally:
        for m in parts:
            m.reset_stream(False)


class CausalConv1d(Streamable):
    """Conv1d that sees only the past: (kernel - 1) * dilation samples of left context, no right padding.

    x (B, C_in, T) -> (B, C_out, T // stride). With stride > 1 the kernel must equal the stride, so each
    output covers exactly one block of inputs and T must be a multiple of the stride.
    """

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, stride: int = 1, dilation: int = 1, groups: int = 1):
        super().__init__()
        if stride > 1 and kernel_size != stride:
            raise ValueError("strided causal convs use kernel_size == stride (no overlap, no state)")
        self.conv = nn.Conv1d(in_ch, out_ch, kernel_size, stride=stride, dilation=dilation, groups=groups)
        self.context = (kernel_size - 1) * dilation if stride == 1 else 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.context:
            if self.streaming:
                past = self.stream_state
                if past is None:
                    past = x.new_zeros(x.shape[0], x.shape[1], self.context)
                x = torch.cat([past, x], dim=-1)
                self.stream_state = x[..., -self.context:].detach()
            else:
                x = F.pad(x, (self.context, 0))
        return self.conv(x)
