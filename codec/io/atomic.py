"""Files written whole or not at all: a temporary file beside the target, renamed over it on success."""
from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager, suppress
from pathlib import Path

from ..errors import OutputError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(target: str | Path):
    """Yield a temporary path beside `target` for the block to write; rename it over `target` only if the
    block succeeds.

    A failure leaves no partial file and keeps whatever `target` held before. The block only writes, so an
    OS error in it, or in making the folder, the temporary file or the rename, is the output's fault: it
    becomes OutputError naming `target` and the reason (permission denied, no space left, ...).
    """
    target = Path(target)
    tmp = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
        os.close(fd)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; the result should look like any new file
        yield Path(tmp)
        os.replace(tmp, target)
    except OSError as err:
        raise OutputError(f"{target}: cannot write ({_reason(err)})") from None
    finally:
        if tmp is not None and os.path.exists(tmp):
            with suppress(OSError):
                os.unlink(tmp)


def _reason(err: OSError) -> str:
    if isinstance(err, FileExistsError):  # from mkdir: a file stands where a folder of the path should be
        return f"{err.filename} is a file, not a folder"
    return err.strerror or str(err)
