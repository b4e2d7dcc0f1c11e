"""Classic speech codecs through their command-line tools, behind the SpeechCodec protocol.

Each writes the signal as 16-bit PCM, runs the encoder, keeps the encoded file's bytes (so the measured
bitrate is what the tool really produced, container included), and decodes them with the matching decoder.
A missing tool raises CodecUnavailable naming the Debian package to install.

| spec | tool | rate | note |
|---|---|---|---|
| opus:6, opus:8, opus:12 | opusenc/opusdec (opus-tools) | 24 kHz | VBR; below 9 kbit/s libopus codes only 4 kHz |
| codec2:3200, 1600, 700C | c2enc/c2dec (codec2) | 8 kHz | headerless bit stream, so bytes = payload |
| speex:N | speexenc/speexdec (speex) | 16 kHz | wideband, --bitrate N kbit/s (the encoder takes the mode at or below) |
| amrwb:6.6, 8.85, 12.65 ... | ffmpeg with libvo_amrwbenc (libavcodec-extra) | 16 kHz | .amr storage format |
"""
from __future__ import annotations

import shutil
import subprocess
import tempfile
from functools import lru_cache
from pathlib import Path

import numpy as np
import soundfile as sf

from .protocol import CodecUnavailable


def _need(*tools: str, package: str) -> None:
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        raise CodecUnavailable(f"{' and '.join(missing)} not found: install it with `apt-get install {package}`")


def _run(cmd: list[str], what: str) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no message"])[-1]
        raise RuntimeError(f"{what}: {cmd[0]} failed with exit code {proc.returncode}: {last}")


def _pcm16(wav: np.ndarray) -> np.ndarray:
    # Tools take 16-bit PCM: clip first so an over-range sample saturates instead of wrapping around.
    return np.round(np.clip(np.asarray(wav, np.float64), -1.0, 1.0) * 32767).astype("<i2")


def ogg_payload_bytes(data: bytes, header_packets: int = 2) -> int:
    """Bytes of the Ogg packets after the first `header_packets` (Opus: OpusHead, OpusTags; Speex: header,
    comments): the codec's frames without page headers and stream headers. Layout: RFC 3533."""
    pos, packet, total = 0, 0, 0
    while pos + 27 <= len(data):
        if data[pos: pos + 4] != b"OggS":
            raise ValueError("not an Ogg stream (bad page capture pattern)")
        n_segments = data[pos + 26]
        lacing = data[pos + 27: pos + 27 + n_segments]
        for size in lacing:
            if packet >= header_packets:
                total += size
            if size < 255:  # a lacing value under 255 ends the packet
                packet += 1
        pos += 27 + n_segments + sum(lacing)
    return total


class _ToolCodec:
    """Shared plumbing: a temp folder per call, wav in, bytes out, wav back."""

    name: str
    sample_rate: int
    nominal: float

    def bitrate(self) -> float:
        return self.nominal

    def _encode_files(self, src: Path, dst: Path) -> None:
        raise NotImplementedError

    def _decode_files(self, src: Path, dst: Path) -> None:
        raise NotImplementedError

    in_suffix, code_suffix, out_suffix = ".wav", ".bin", ".wav"

    def encode(self, wav: np.ndarray) -> bytes:
        with tempfile.TemporaryDirectory(prefix="codec-eval-") as tmp:
            src, dst = Path(tmp) / f"in{self.in_suffix}", Path(tmp) / f"coded{self.code_suffix}"
            if self.in_suffix == ".wav":
                sf.write(src, _pcm16(wav), self.sample_rate, subtype="PCM_16")
            else:
                src.write_bytes(_pcm16(wav).tobytes())
            self._encode_files(src, dst)
            return dst.read_bytes()

    def decode(self, data: bytes, length: int) -> np.ndarray:
        with tempfile.TemporaryDirectory(prefix="codec-eval-") as tmp:
            src, dst = Path(tmp) / f"coded{self.code_suffix}", Path(tmp) / f"out{self.out_suffix}"
            src.write_bytes(data)
            self._decode_files(src, dst)
            if self.out_suffix == ".wav":
                out, rate = sf.read(dst, dtype="float64", always_2d=True)
                if rate != self.sample_rate:
                    raise RuntimeError(f"{self.name}: decoder wrote {rate} Hz, expected {self.sample_rate}")
                return out.mean(axis=1)
            return np.frombuffer(dst.read_bytes(), dtype="<i2").astype(np.float64) / 32767


class Opus(_ToolCodec):
    sample_rate = 24000  # a native Opus rate: no resampling inside the tools

    def __init__(self, setting: str):
        kbps = float(setting)
        if not 6 <= kbps <= 256:
            raise ValueError(f"opus:{setting}: opusenc takes 6 to 256 kbit/s")
        _need("opusenc", "opusdec", package="opus-tools")
        self.name, self.kbps, self.nominal = f"opus:{setting}", kbps, kbps * 1000
        self.code_suffix = ".opus"

    def payload_bytes(self, data: bytes) -> int:
        return ogg_payload_bytes(data)

    def _encode_files(self, src: Path, dst: Path) -> None:
        _run(["opusenc", "--quiet", "--bitrate", f"{self.kbps:g}", str(src), str(dst)], self.name)

    def _decode_files(self, src: Path, dst: Path) -> None:
        # opusdec drops the encoder's pre-skip itself, so its output starts where the input did.
        _run(["opusdec", "--quiet", "--rate", str(self.sample_rate), str(src), str(dst)], self.name)


class Codec2(_ToolCodec):
    sample_rate = 8000
    MODES = ("3200", "2400", "1600", "1400", "1300", "1200", "700C", "450")
    in_suffix, code_suffix, out_suffix = ".raw", ".bit", ".raw"  # headerless: the file is the payload

    def __init__(self, setting: str):
        mode = setting.upper()
        if mode not in self.MODES:
            raise ValueError(f"codec2:{setting}: modes are {', '.join(self.MODES)}")
        _need("c2enc", "c2dec", package="codec2")
        self.name, self.mode = f"codec2:{mode}", mode
        self.nominal = float(mode.rstrip("C"))

    def _encode_files(self, src: Path, dst: Path) -> None:
        _run(["c2enc", self.mode, str(src), str(dst)], self.name)

    def _decode_files(self, src: Path, dst: Path) -> None:
        _run(["c2dec", self.mode, str(src), str(dst)], self.name)


class Speex(_ToolCodec):
    sample_rate = 16000  # wideband mode
    code_suffix = ".spx"

    def __init__(self, setting: str):
        kbps = float(setting)
        if not 2 <= kbps <= 44:
            raise ValueError(f"speex:{setting}: wideband Speex spans about 4 to 42 kbit/s")
        _need("speexenc", "speexdec", package="speex")
        self.name, self.kbps, self.nominal = f"speex:{setting}", kbps, kbps * 1000

    def payload_bytes(self, data: bytes) -> int:
        return ogg_payload_bytes(data)

    def _encode_files(self, src: Path, dst: Path) -> None:
        _run(["speexenc", "-w", "--bitrate", str(int(self.kbps * 1000)), str(src), str(dst)], self.name)

    def _decode_files(self, src: Path, dst: Path) -> None:
        _run(["speexdec", "--rate", str(self.sample_rate), "--mono", str(src), str(dst)], self.name)


@lru_cache(maxsize=1)
def _ffmpeg_has(encoder: str) -> bool:
    proc = subprocess.run(["ffmpeg", "-hide_banner", "-encoders"], capture_output=True, text=True)
    return any(line.split()[1:2] == [encoder] for line in proc.stdout.splitlines() if line.strip())


class AmrWb(_ToolCodec):
    sample_rate = 16000
    MODES = ("6.6", "8.85", "12.65", "14.25", "15.85", "18.25", "19.85", "23.05", "23.85")
    code_suffix = ".amr"

    def __init__(self, setting: str):
        if setting not in self.MODES:
            raise ValueError(f"amrwb:{setting}: modes are {', '.join(self.MODES)} kbit/s")
        _need("ffmpeg", package="ffmpeg libavcodec-extra")
        if not _ffmpeg_has("libvo_amrwbenc"):
            raise CodecUnavailable("ffmpeg lacks the AMR-WB encoder libvo_amrwbenc: "
                                   "install it with `apt-get install libavcodec-extra`")
        self.name, self.nominal = f"amrwb:{setting}", float(setting) * 1000

    def payload_bytes(self, data: bytes) -> int:
        # The storage format (RFC 4867, section 5) opens with this magic; each frame keeps its 1-byte TOC.
        magic = b"#!AMR-WB\n"
        return len(data) - len(magic) if data.startswith(magic) else len(data)

    def _ffmpeg(self, *args: str) -> list[str]:
        return ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *args]

    def _encode_files(self, src: Path, dst: Path) -> None:
        _run(self._ffmpeg("-i", str(src), "-c:a", "libvo_amrwbenc", "-b:a", str(int(self.nominal)), str(dst)),
             self.name)

    def _decode_files(self, src: Path, dst: Path) -> None:
        _run(self._ffmpeg("-i", str(src), "-ar", str(self.sample_rate), "-ac", "1", str(dst)), self.name)


BASELINES = {"opus": Opus, "codec2": Codec2, "speex": Speex, "amrwb": AmrWb}  # family -> factory(setting)

# What `codec eval` runs when no --codec is given: ours at three depths and the baselines near their rates.
DEFAULT_SPECS = ("codec:8", "codec:17", "codec:37", "opus:6", "opus:8", "opus:12", "codec2:3200", "codec2:1600",
                 "codec2:700C", "speex:8", "amrwb:6.6", "amrwb:12.65")
