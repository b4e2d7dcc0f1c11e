"""Streaming state that belongs to a stream, not to the modules.

A `Streamable` module reads and writes what it needs of the past through `self.stream_state`, which looks
the module up in the states of the stream that is active on this thread (`active(states)`); with none
active it is offline and pads with zeros (the same past a stream starts from). So the concatenated outputs
of a stream equal one offline call on the concatenated input, and any number of streams and offline calls
can interleave on one model: each stream activates only its own states, only while it runs.
"""
from __future__ import annotations

import threading
from contextlib import contextmanager

import torch
from torch import nn
import torch.nn.functional as F

_local = threading.local()


def _states() -> dict | None:
    return getattr(_local, "states", None)


@contextmanager
def active(states: dict):
    """Run the body with `states` (a dict the stream owns, module -> state) as this thread's stream."""
    before = _states()
    _local.states = states
    try:
        yield
    finally:
        _local.states = before


class Streamable(nn.Module):
    """Mixin for modules with state across calls. `stream_state` is None until the first streamed call."""

    @property
    def streaming(self) -> bool:
        return _states() is not None

    @property
    def stream_state(self):
        states = _states()
        return None if states is None else states.get(id(self))

    @stream_state.setter
    def stream_state(self, value) -> None:
        states = _states()
        if states is None:
            raise RuntimeError("stream state written outside a stream")
        states[id(self)] = value


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
