"""One progress-bar style for every long command: transient, resizes with the terminal, off when asked."""
from __future__ import annotations


def progress_bar(enabled: bool, **kw):
    """A tqdm bar (imported lazily: the library itself never needs it) or a disabled one."""
    from tqdm import tqdm

    return tqdm(disable=not enabled, leave=False, dynamic_ncols=True, **kw)
