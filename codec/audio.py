"""Audio in and out: reading files, resampling (soxr), channel handling, atomic writes."""
from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager, suppress
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr
import torch

from .errors import InputError, OutputError, UsageError

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


def audio_files(folder: str | Path, suffixes=AUDIO_SUFFIXES) -> list[Path]:
    """The files below `folder` (recursive) whose suffix is in `suffixes`, sorted: one listing rule for the
    CLI, `codec tokenize` and `codec eval`."""
    return sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in suffixes and p.is_file())


def as_batch(wav) -> torch.Tensor:
    """[T], [C, T] or [B, C, T] (tensor or array) -> float32 tensor [B, C, T].

    A 2-D input longer in its first dimension is refused: that is soundfile's (samples, channels) layout,
    which read as [C, T] would turn every sample into a channel.
    """
    wav = torch.as_tensor(np.asarray(wav) if not isinstance(wav, torch.Tensor) else wav)
    if not wav.is_floating_point():
        raise TypeError(f"audio must be floating point in [-1, 1], got {wav.dtype}")
    if wav.dim() == 1:
        wav = wav[None, None]
    elif wav.dim() == 2:
        rows, cols = wav.shape
        if rows > cols > 0:  # [C, 0] is an empty chunk, not a layout question
            raise ValueError(f"audio of shape {tuple(wav.shape)} looks like (samples, channels), as soundfile reads "
                             f"it; pass its transpose (wav.T), shaped [channels, samples]")
        wav = wav[None]
    elif wav.dim() != 3:
        raise ValueError(f"audio must be [T], [C, T] or [B, C, T], got shape {tuple(wav.shape)}")
    return wav.float()


def resample(wav: torch.Tensor, from_rate: int, to_rate: int) -> torch.Tensor:
    """[B, C, T] -> [B, C, T'] with soxr's high-quality filter; exact length round(T * to / from)."""
    if from_rate == to_rate:
        return wav
    if from_rate <= 0:
        raise ValueError(f"sample rate must be positive, got {from_rate}")
    b, c, t = wav.shape
    flat = wav.reshape(b * c, t).T.detach().cpu().double().numpy()  # soxr wants (T, channels)
    out = soxr.resample(flat, from_rate, to_rate, quality="HQ")
    return torch.from_numpy(out.T.astype(np.float32)).reshape(b, c, -1).to(wav.device)


def read_audio(path: str | Path) -> tuple[np.ndarray, int]:
    """Read a file as float32 [C, T]. Raises InputError naming the file for anything unusable."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        raise InputError(f"{path}: is a folder, not an audio file")
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except PermissionError:
        raise InputError(f"{path}: permission denied") from None
    except (sf.LibsndfileError, RuntimeError, TypeError) as err:
        raise InputError(f"{path}: not a readable audio file ({err})") from None
    if data.shape[0] == 0:
        raise InputError(f"{path}: empty audio (0 samples)")
    if not np.isfinite(data).all():
        raise InputError(f"{path}: holds NaN or infinite samples")
    if not np.any(data):
        raise InputError(f"{path}: all samples are silent (exact zeros)")
    return np.ascontiguousarray(data.T), rate


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
    except (OSError, sf.LibsndfileError) as err:
        raise OutputError(f"{target}: cannot write ({_reason(err)})") from None
    finally:
        if tmp is not None and os.path.exists(tmp):
            with suppress(OSError):
                os.unlink(tmp)


def _reason(err: Exception) -> str:
    if isinstance(err, FileExistsError):  # from mkdir: a file stands where a folder of the path should be
        return f"{err.filename} is a file, not a folder"
    if isinstance(err, OSError):
        return err.strerror or str(err)
    # libsndfile reports a failed write(2) as a bare "System error."; cffi keeps the errno that call set
    code = getattr(getattr(sf, "_ffi", None), "errno", 0)
    return os.strerror(code) if err.code == 2 and code else err.error_string


def write_audio(path: str | Path, wav: np.ndarray, rate: int) -> None:
    """Write float [C, T] or [T] atomically; the format follows the suffix (`output_format`)."""
    path = Path(path)
    kind, subtype = output_format(path)
    data = np.asarray(wav, dtype=np.float32)
    data = data.T if data.ndim == 2 else data
    with atomic_path(path) as tmp:
        sf.write(str(tmp), np.clip(data, -1.0, 1.0), rate, format=kind, subtype=subtype)
