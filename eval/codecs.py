"""Our model behind the `SpeechCodec` protocol (`codec.eval.protocol`), and the registry of codec names.

A codec is named by a spec `family:setting`: `codec:17` (ours, 17 codebooks), `opus:6` (Opus at 6 kbit/s),
`codec2:700C`, ... A user's codec plugs in by implementing `SpeechCodec` and registering a factory (docs/eval.md):

    from codec.eval import register
    register("mine", lambda setting: MyCodec(int(setting)))   # then: codec eval DIR --plugin my_module --codec mine:3
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from .baselines import BASELINES
from .protocol import SpeechCodec


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

        from codec.io.codes_file import encode_bytes, header_for

        codes = self.model.encode(torch.as_tensor(np.asarray(wav, np.float32)), self.sample_rate, n_codebooks=self.n)
        return encode_bytes(codes[0:1].cpu().numpy(), header_for(self.model, codes[0:1], len(wav)))

    def decode(self, data: bytes, length: int) -> np.ndarray:
        import torch

        from codec.io.codes_file import decode_bytes

        codes, header = decode_bytes(data, self.name)
        wav = self.model.decode(torch.from_numpy(codes), length=header.samples)
        return wav[0, 0].cpu().numpy().astype(np.float64)

    def payload_bytes(self, data: bytes) -> int:
        """The bit-packed indices alone, without the header (about 300 bytes) and CRC."""
        from codec.io.codes_file import decode_bytes

        return decode_bytes(data, self.name)[1].payload_bytes

    def tokens(self, data: bytes) -> np.ndarray:
        """[n_codebooks, frames] of one file."""
        from codec.io.codes_file import decode_bytes

        return decode_bytes(data, self.name)[0][0]

    def bitrate(self) -> float:
        return float(self.model.config.bitrate(self.n))


_MODELS: dict[str, object] = {}


def _our_model(model_dir: str | None):
    key = str(model_dir)
    if key not in _MODELS:
        from codec.checkpoint import load

        _MODELS[key] = load(model_dir)
    return _MODELS[key]


def _ours(setting: str, model_dir: str | None = None) -> OurCodec:
    if not setting.isdigit():
        raise ValueError(f"codec:{setting}: give the number of codebooks, e.g. codec:17")
    return OurCodec(_our_model(model_dir), int(setting))


def _plain(factory: Callable[[str], SpeechCodec]) -> Callable[..., SpeechCodec]:
    return lambda setting, model_dir=None: factory(setting)


# family -> factory(setting, model_dir=None) -> SpeechCodec
FAMILIES: dict[str, Callable[..., SpeechCodec]] = {"codec": _ours, **{k: _plain(v) for k, v in BASELINES.items()}}


def register(family: str, factory: Callable[[str], SpeechCodec]) -> None:
    """Make `family:setting` specs build codecs with factory(setting). The factory raises CodecUnavailable
    (skipped with its message) when the codec cannot run here, ValueError for a bad setting."""
    if not family.isidentifier():
        raise ValueError(f"codec family must be a plain name, got {family!r}")
    FAMILIES[family] = _plain(factory)


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
