"""The one protocol every evaluated codec implements, our model behind it, and the registry of codec names.

A codec is named by a spec `family:setting`: `codec:17` (ours, 17 codebooks), `opus:6` (Opus at 6 kbit/s),
`codec2:700C`, ... A user's codec plugs in by implementing `SpeechCodec` and registering a factory (docs/eval.md):

    from codec.eval import register
    register("mine", lambda setting: MyCodec(int(setting)))   # then: codec eval DIR --plugin my_module --codec mine:3
"""
from __future__ import annotations

from pathlib import Path
from collections.abc import Callable
from typing import Protocol, runtime_checkable

import numpy as np


class CodecUnavailable(RuntimeError):
    """A codec cannot run here (a missing tool or package); the message says what to install."""


@runtime_checkable
class SpeechCodec(Protocol):
    """What `codec eval` needs from a codec. Audio is mono float in [-1, 1] at `sample_rate`.

    Optional, for discrete-token codecs: `tokens(data) -> int array [K, F]`, `codebook_size: int` and
    `frame_rate: float`; with them the report adds per-codebook entropy and codebook use.
    """

    name: str  # the spec it was made from, e.g. "opus:6"
    sample_rate: int  # the rate encode takes and decode returns

    def encode(self, wav: np.ndarray) -> bytes:
        """wav [T] float -> the bytes the codec would store or send (their size is the measured bitrate)."""

    def decode(self, data: bytes, length: int) -> np.ndarray:
        """bytes -> wav [T'] float; `length` is the input's T, a hint (T' may differ; the report aligns)."""

    def bitrate(self) -> float:
        """Nominal bit/s: what the codec is configured for."""


class OurCodec:
    """Our model at a prefix of its codebooks. The bytes are a complete .codes file (header and CRC included)."""

    def __init__(self, model, n_codebooks: int):
        if not 1 <= n_codebooks <= model.n_codebooks:
            raise ValueError(f"codec:{n_codebooks}: this model has 1 to {model.n_codebooks} codebooks")
        self.model, self.n = model, n_codebooks
        self.name = f"codec:{n_codebooks}"
        self.sample_rate = model.sample_rate
        self.codebook_size = model.config.codebook_size
        self.frame_rate = model.frame_rate

    def encode(self, wav: np.ndarray) -> bytes:
        import torch

        from codec.codes_file import encode_bytes, header_for

        codes = self.model.encode(torch.as_tensor(np.asarray(wav, np.float32)), self.sample_rate, n_codebooks=self.n)
        return encode_bytes(codes[0:1].cpu().numpy(), header_for(self.model, codes[0:1], len(wav)))

    def decode(self, data: bytes, length: int) -> np.ndarray:
        import torch

        from codec.codes_file import decode_bytes

        codes, header = decode_bytes(data, self.name)
        wav = self.model.decode(torch.from_numpy(codes), length=header.samples)
        return wav[0, 0].cpu().numpy().astype(np.float64)

    def payload_bytes(self, data: bytes) -> int:
        """The bit-packed indices alone, without the header (about 300 bytes) and CRC."""
        from codec.codes_file import decode_bytes

        return decode_bytes(data, self.name)[1].payload_bytes

    def tokens(self, data: bytes) -> np.ndarray:
        """[n_codebooks, frames] of one file."""
        from codec.codes_file import decode_bytes

        return decode_bytes(data, self.name)[0][0]

    def bitrate(self) -> float:
        return float(self.model.config.bitrate(self.n))


_MODELS: dict[str, object] = {}


def _our_model(model_dir: str | None):
    key = str(model_dir)
    if key not in _MODELS:
        from codec.weights import load

        _MODELS[key] = load(model_dir)
    return _MODELS[key]


def _ours(setting: str, model_dir: str | None = None) -> OurCodec:
    if not setting.isdigit():
        raise ValueError(f"codec:{setting}: give the number of codebooks, e.g. codec:17")
    return OurCodec(_our_model(model_dir), int(setting))


# family -> factory(setting, model_dir=None) -> SpeechCodec; baselines register themselves on import
FAMILIES: dict[str, Callable[..., SpeechCodec]] = {"codec": _ours}


def register(family: str, factory: Callable[[str], SpeechCodec]) -> None:
    """Make `family:setting` specs build codecs with factory(setting). The factory raises CodecUnavailable
    (skipped with its message) when the codec cannot run here, ValueError for a bad setting."""
    if not family.isidentifier():
        raise ValueError(f"codec family must be a plain name, got {family!r}")
    FAMILIES[family] = lambda setting, model_dir=None: factory(setting)


def load_plugin(module: str) -> None:
    """Import a module (a dotted name or a .py file path) that calls `register`."""
    import importlib
    import importlib.util

    path = Path(module)
    if path.suffix == ".py":
        if not path.is_file():
            raise ValueError(f"{module}: plugin file not found")
        spec = importlib.util.spec_from_file_location(path.stem, path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
    else:
        importlib.import_module(module)


def make_codec(spec: str, model_dir: str | None = None) -> SpeechCodec:
    """Build the codec a spec names. Raises ValueError for an unknown or malformed spec, CodecUnavailable when
    its tool or package is missing here."""
    from . import baselines  # noqa: F401  (registers opus, codec2, speex, amrwb)

    family, sep, setting = spec.partition(":")
    if not sep or not setting:
        raise ValueError(f"codec spec {spec!r}: expected family:setting, e.g. codec:17 or opus:6")
    if family not in FAMILIES:
        raise ValueError(f"codec spec {spec!r}: unknown family {family!r} (known: {', '.join(sorted(FAMILIES))}; "
                         "add your own with --plugin)")
    codec = FAMILIES[family](setting, model_dir=model_dir)
    if not isinstance(codec, SpeechCodec):
        raise ValueError(f"codec spec {spec!r}: the factory returned {type(codec).__name__}, which lacks "
                         "name / sample_rate / encode / decode / bitrate")
    return codec
