"""File-to-file coding in bounded memory: audio is read, resampled and coded chunk by chunk with the
causal state carried across chunks, so a 1-hour file costs the memory of one chunk and gives the codes
that one pass over the whole file would give. Decoding likewise: the codes stay in the file's small integer
type and each chunk of frames is decoded and written before the next. Chunks are 10 s by default: a
chunk's working memory grows with its length (about 0.6 MB per decoded frame), and longer ones save no time
(docs/performance.md)."""
from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import torch

from ..errors import CodesFileError, InputError
from ..progress import progress_bar
from ..signal import resample_stream
from ..threads import STREAM_THREADS, torch_threads
from .audio import audio_output, open_audio, output_format
from .codes_file import header_for, read_codes, write_codes


def encode_stream(model, path: str | Path, n_codebooks: int | None = None, mono: bool = True,
                  chunk_seconds: float = 10.0, bf16: bool = False, progress: bool = False) -> tuple[torch.Tensor, int]:
    """Encode an audio file chunk by chunk -> (codes (B, n, F), samples at the model rate).

    B is 1 (downmixed) or the file's channel count (mono=False). Raises InputError for unusable input.
    """
    if not 0 < chunk_seconds < math.inf:
        raise ValueError(f"chunk_seconds must be a positive number of seconds, got {chunk_seconds}")
    path = Path(path)
    with open_audio(path) as f:
        rate, channels = f.samplerate, f.channels
        items = 1 if mono else channels
        resampler = None
        if rate != model.sample_rate:
            resampler = resample_stream(rate, model.sample_rate, items)
        block = max(1, int(chunk_seconds * rate))
        parts, samples, heard, seconds = [], 0, False, 0.0
        bar = progress_bar(progress and f.frames > 10 * rate, total=f.frames, desc=path.name, unit="sample")
        with model.streaming(batch_size=items, n_codebooks=n_codebooks, bf16=bf16) as stream:
            for chunk in f.blocks(blocksize=block, dtype="float32", always_2d=True):
                if not np.isfinite(chunk).all():
                    bad = int(np.argmax(~np.isfinite(chunk).all(axis=1)))
                    raise InputError(f"{path}: holds NaN or infinite samples (first at {seconds + bad / rate:.2f} s)")
                heard = heard or bool(np.any(chunk))
                seconds += len(chunk) / rate
                x = chunk.mean(axis=1, keepdims=True) if mono else chunk  # (T, items)
                last = f.tell() >= f.frames
                if resampler is not None:
                    x = resampler.resample_chunk(x, last=last)
                samples += len(x)
                parts.append(stream.encode(torch.from_numpy(np.ascontiguousarray(x.T))[:, None, :]))
                bar.update(len(chunk))
            parts.append(stream.flush())
        bar.close()
    if samples == 0:
        raise InputError(f"{path}: empty audio (0 samples)")
    if not heard:
        raise InputError(f"{path}: all samples are silent (exact zeros): nothing to code")
    codes = torch.cat(parts, dim=-1)
    assert codes.shape[-1] == math.ceil(samples / model.frame_size)
    return codes, samples


def encode_file(model, src: str | Path, dst: str | Path, n_codebooks: int | None = None, mono: bool = True,
                chunk_seconds: float = 10.0, bf16: bool = False, progress: bool = False) -> None:
    """Audio file -> .codes file, written atomically."""
    codes, samples = encode_stream(model, src, n_codebooks, mono, chunk_seconds, bf16, progress)
    write_codes(dst, codes.cpu().numpy(), header_for(model, codes, samples, meta={"source": Path(src).name}))


def _read_for(model, path: Path):
    codes, header = read_codes(path, expect_checksum=model.checksum)
    if header.sample_rate != model.sample_rate or header.codebook_size != model.config.codebook_size:
        raise CodesFileError(f"{path}: coded at {header.sample_rate} Hz with {header.codebook_size}-entry codebooks; "
                             f"this model is {model.sample_rate} Hz with {model.config.codebook_size}")
    if header.n_codebooks > model.n_codebooks:
        raise CodesFileError(f"{path}: has {header.n_codebooks} codebooks; this model decodes at most "
                             f"{model.n_codebooks}")
    return codes, header  # uint16 for 1024-entry codebooks: widened a chunk at a time (`_frames`)


def _frames(codes: np.ndarray, start: int, stop: int) -> torch.Tensor:
    return torch.from_numpy(codes[:, :, start:stop].astype(np.int64))


def decode_file(model, src: str | Path, dst: str | Path, chunk_frames: int = 125, bf16: bool = False,
                progress: bool = False) -> None:
    """.codes file -> audio file (format from the suffix: `codec.io.audio.output_format`), `chunk_frames` at a
    time, written atomically."""
    if chunk_frames < 1:
        raise ValueError(f"chunk_frames must be at least 1, got {chunk_frames}")
    src, dst = Path(src), Path(dst)
    output_format(dst)  # an output that is not audio is refused before the codes are read
    if not src.is_file():
        raise CodesFileError(f"{src}: no such file")
    codes, header = _read_for(model, src)
    remaining = header.samples
    bar = progress_bar(progress and header.frames > 2 * chunk_frames, total=header.frames, desc=src.name, unit="frame")
    with audio_output(dst, model.sample_rate, header.channels) as out, \
            model.streaming(batch_size=header.channels, bf16=bf16) as stream:
        for start in range(0, header.frames, chunk_frames):
            wav = stream.decode(_frames(codes, start, start + chunk_frames))[:, 0, :remaining]
            remaining -= wav.shape[-1]
            out.write(np.clip(wav.T.cpu().numpy(), -1.0, 1.0))
            bar.update(min(chunk_frames, header.frames - start))
        out.write(np.clip(stream.flush_decode()[:, 0, :remaining].T.cpu().numpy(), -1.0, 1.0))
    bar.close()


def decode_to_stdout(model, src: str | Path, bf16: bool = False, threads: int | None = STREAM_THREADS) -> None:
    """Decode frame by frame to raw 16-bit little-endian PCM on standard output (channels interleaved),
    flushing after each 80 ms frame so playback can start before decoding ends. The first frame gives
    frame_size - synthesis_delay samples, the closing call the last synthesis_delay. threads: torch's
    intra-op threads meanwhile (`codec.threads`; None leaves torch's setting)."""
    src = Path(src)
    if not src.is_file():
        raise CodesFileError(f"{src}: no such file")
    codes, header = _read_for(model, src)
    out, remaining = sys.stdout.buffer, header.samples
    with torch_threads(threads), model.streaming(batch_size=header.channels, bf16=bf16) as stream:
        for f in range(header.frames + 1):
            wav = stream.decode(_frames(codes, f, f + 1)) if f < header.frames else stream.flush_decode()
            wav = wav[:, 0, :remaining]
            remaining -= wav.shape[-1]
            pcm = (np.clip(wav.T.cpu().numpy(), -1.0, 1.0) * 32767).round().astype("<i2")
            out.write(pcm.tobytes())
            out.flush()
