"""How many intra-op threads torch uses for a command.

The per-frame streaming paths (`codec decode -o -`, `codec bench stream`) run one 80 ms frame per call:
operations that small gain nothing from splitting across cores, and the threads wait for each other at
every operation, which on a machine busy with other work means waiting for a core each time (measured:
docs/performance.md). They default to one thread; the whole-file paths keep torch's default.
"""
from __future__ import annotations

from contextlib import contextmanager

import torch

STREAM_THREADS = 1


@contextmanager
def torch_threads(n: int | None):
    """Run the body with `n` intra-op threads (None: leave torch's setting), then restore the setting."""
    if n is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
