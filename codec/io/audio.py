"""Audio files in and out: the one opener, reading whole files, writing by suffix (atomically)."""
from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import soundfile as sf

from ..errors import InputError, UsageError
from .atomic import atomic_path

AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aiff", ".aif", ".au", ".w64"}
# What each suffix is written as: (libsndfile format, subtype). 16-bit PCM where the format is PCM.
_OUTPUT_FORMATS = {".wav": ("WAV", "PCM_16"), ".flac": ("FLAC", "PCM_16"), ".ogg": ("OGG", "VORBIS"),
                   ".oga": ("OGG", "VORBIS"), ".opus": ("OGG", "OPUS"), ".mp3": ("MP3", "MPEG_LAYER_III"),
                   ".aiff": ("AIFF", "PCM_16"), ".aif": ("AIFF", "PCM_16"), ".au": ("AU", "PCM_16"),
                   ".w64": ("W64", "PCM_16")}


def output_format(path: str | Path) -> tuple[str, str]:
    """(format, subtype) for writing audio to `path`, from its suffix. A suffix that names no audio format
    this libsndfile writes is a UsageError: writing WAV bytes into `x.txt` would hide the mistake."""
    suffix = Path(path).suffix.lower()
    fmt = _OUTPUT_FORMATS.get(suffix)
    if fmt is None or not sf.check_format(*fmt):
        known = " ".join(s for s, f in _OUTPUT_FORMATS.items() if sf.check_format(*f))
        raise UsageError(f"{path}: {f'{suffix!r}' if suffix else 'no suffix'} is not an audio format; "
                         f"audio is written as one of: {known}")
    return fmt


def open_audio(path: str | Path) -> sf.SoundFile:
    """Open an audio file for reading. Raises InputError naming the file for anything unusable (missing, a
    folder, unreadable, no samples)."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        raise InputError(f"{path}: is a folder, not an audio file")
    try:
        handle = sf.SoundFile(str(path))
    except PermissionError:
        raise InputError(f"{path}: permission denied") from None
    except (sf.LibsndfileError, RuntimeError, TypeError) as err:
        raise InputError(f"{path}: not a readable audio file ({err})") from None
    if handle.frames == 0:
        handle.close()
        raise InputError(f"{path}: empty audio (0 samples)")
    return handle


def read_audio(path: str | Path) -> tuple[np.ndarray, int]:
    """Read a file as float32 [C, T]. Raises InputError naming the file for anything unusable."""
    with open_audio(path) as f:
        try:
            data = f.read(dtype="float32", always_2d=True)
        except (sf.LibsndfileError, RuntimeError) as err:
            raise InputError(f"{path}: not a readable audio file ({err})") from None
        rate = f.samplerate
    if not np.isfinite(data).all():
        raise InputError(f"{path}: holds NaN or infinite samples")
    if not np.any(data):
        raise InputError(f"{path}: all samples are silent (exact zeros)")
    return np.ascontiguousarray(data.T), rate


@contextmanager
def _as_os_errors():
    """libsndfile's errors as OSError, which `atomic_path` reports as the output's fault. libsndfile reports
    a failed write(2) as a bare "System error."; cffi keeps the errno that call set."""
    try:
        yield
    except sf.LibsndfileError as err:
        code = getattr(getattr(sf, "_ffi", None), "errno", 0)
        reason = os.strerror(code) if err.code == 2 and code else err.error_string
        raise OSError(code or 0, reason) from None


@contextmanager
def audio_output(path: str | Path, rate: int, channels: int):
    """An `sf.SoundFile` to write, in the format of `path`'s suffix (`output_format`), that appears at
    `path` only if the block succeeds."""
    kind, subtype = output_format(path)
    with atomic_path(path) as tmp, _as_os_errors(), \
            sf.SoundFile(str(tmp), "w", samplerate=rate, channels=channels, format=kind, subtype=subtype) as out:
        yield out


def write_audio(path: str | Path, wav: np.ndarray, rate: int) -> None:
    """Write float [C, T] or [T] atomically; the format follows the suffix (`output_format`)."""
    data = np.asarray(wav, dtype=np.float32)
    data = data.T if data.ndim == 2 else data[:, None]
    with audio_output(path, rate, data.shape[1]) as out:
        out.write(np.clip(data, -1.0, 1.0))
