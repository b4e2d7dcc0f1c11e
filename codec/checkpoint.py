"""Checkpoints: safetensors weights + JSON config + SHA-256, checked on load. Never pickles."""
from __future__ import annotations

import copy
import hashlib
from pathlib import Path

from safetensors.torch import load as safetensors_load

from .config import CodecConfig
from .errors import WeightsError
from .io.atomic import atomic_path
from .model import Codec

WEIGHTS_FILE, CONFIG_FILE, CHECKSUM_FILE = "model.safetensors", "config.json", "model.sha256"
PACKAGE_WEIGHTS = Path(__file__).parent / "weights"
DEFAULT_NAME = "default"


def available() -> list[str]:
    """Names of the checkpoints shipped inside the package."""
    if not PACKAGE_WEIGHTS.is_dir():
        return []
    return sorted(p.name for p in PACKAGE_WEIGHTS.iterdir() if (p / WEIGHTS_FILE).is_file())


def save_pretrained(model: Codec, directory: str | Path, name: str | None = None) -> Path:
    """Write weights, config and checksum into `directory` (each file atomically).

    name: the model name to record (default: the model's). A loaded checkpoint's name and training summary
    describe its weights. If the weights have changed since (fine-tuned, edited) and the summary was not
    updated, the saved config does not pass them off as the original: its summary says what the weights
    derive from, and the name, unless changed or given, gets "-derived".
    """
    directory = Path(directory)
    data = model.weights_bytes()
    digest = hashlib.sha256(data).hexdigest()
    config = _config_for(model, digest, name)
    directory.mkdir(parents=True, exist_ok=True)
    with atomic_path(directory / WEIGHTS_FILE) as tmp:
        tmp.write_bytes(data)
    with atomic_path(directory / CONFIG_FILE) as tmp:
        config.save(tmp)
    with atomic_path(directory / CHECKSUM_FILE) as tmp:
        tmp.write_text(f"{digest}  {WEIGHTS_FILE}\n")
    return directory


def _config_for(model: Codec, digest: str, name: str | None) -> CodecConfig:
    """The config to save beside weights of SHA-256 `digest`."""
    config = copy.deepcopy(model.config)
    origin = model._loaded_as
    if origin is not None and digest != origin[0] and config.training == origin[2]:
        checksum, old_name, _ = origin
        config.training = {"derived_from": f"{old_name} ({checksum[:12]})",
                           "changes": "the weights were changed after loading; how is not recorded"}
        if config.name == old_name:
            config.name = f"{old_name}-derived"
    if name is not None:
        if not isinstance(name, str) or not name.isprintable() or not 0 < len(name) <= 256:
            raise ValueError(f"name must be 1 to 256 printable characters (codes files record it), got {name!r}")
        config.name = name
    return config


def resolve(name_or_dir: str | Path | None) -> Path:
    if name_or_dir is None:
        name_or_dir = DEFAULT_NAME
    path = Path(name_or_dir)
    if (path / WEIGHTS_FILE).is_file() or path.is_dir():
        return path
    if str(name_or_dir) in available():
        return PACKAGE_WEIGHTS / str(name_or_dir)
    shipped = ", ".join(available()) or "none"
    raise WeightsError(f"{name_or_dir}: not a checkpoint folder nor a shipped model name (shipped: {shipped})")


def _verified_weights(path: Path) -> tuple[bytes, str]:
    """The weights file's bytes and SHA-256, checked against the checksum file."""
    files = {name: path / name for name in (WEIGHTS_FILE, CONFIG_FILE, CHECKSUM_FILE)}
    missing = [name for name, f in files.items() if not f.is_file()]
    if missing:
        raise WeightsError(f"{path}: checkpoint is missing {', '.join(missing)}")
    data = files[WEIGHTS_FILE].read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    expected = files[CHECKSUM_FILE].read_text().split()[0].strip().lower()
    if digest != expected:
        raise WeightsError(f"{files[WEIGHTS_FILE]}: SHA-256 {digest[:16]}... does not match "
                           f"{CHECKSUM_FILE} ({expected[:16]}...): the file is damaged or was replaced")
    return data, digest


def stored_tensors(name_or_dir: str | Path | None = None) -> dict:
    """A checkpoint's stored tensors by name (checksum verified), whatever model they fit: what a training
    run starting from them copies."""
    return safetensors_load(_verified_weights(resolve(name_or_dir))[0])


def load(name_or_dir: str | Path | None = None, device: str = "cpu") -> Codec:
    """Load a checkpoint: the shipped default, a shipped name, or a folder written by save_pretrained."""
    path = resolve(name_or_dir)
    data, digest = _verified_weights(path)
    try:
        config = CodecConfig.load(path / CONFIG_FILE)
    except (ValueError, TypeError) as err:
        raise WeightsError(f"{path / CONFIG_FILE}: invalid config ({err})") from None
    model = Codec(config)
    state = safetensors_load(data)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise WeightsError(f"{path / WEIGHTS_FILE}: weights do not fit the config ({err})") from None
    model._checksum = digest
    model._loaded_as = (digest, config.name, copy.deepcopy(config.training))
    return model.eval().to(device)


def describe(model) -> str:
    """A human summary of a model: shape, bitrates, checksum, and how it was trained."""
    cfg = model.config
    params = sum(p.numel() for p in model.parameters())
    lines = [
        f"model       {cfg.name}",
        f"checksum    {model.checksum}",
        f"parameters  {params / 1e6:.2f} M",
        f"audio       {cfg.sample_rate} Hz mono, frames of {cfg.frame_size} samples ({cfg.frame_rate:g} frames/s)",
        f"latency     {cfg.latency_ms:g} ms algorithmic (one frame + {cfg.lookahead} samples lookahead + "
        f"{cfg.synthesis_delay} samples of synthesis overlap)",
        f"codebooks   {cfg.n_codebooks} x {cfg.codebook_size} entries ({cfg.bits_per_code} bits each)",
        "bitrates    " + ", ".join(f"{n}: {cfg.bitrate(n) / 1000:.3g} kbit/s"
                              for n in (1, 8, 17, 37) if n <= cfg.n_codebooks),
        f"synthesis   hann {cfg.synthesis_fft} / hop {cfg.synthesis_hop}, RTPGHI phases and {cfg.phase_iterations} "
        f"Griffin-Lim passes per frame, harmonic locking {'on' if cfg.harmonic_locking else 'off'}, "
        f"harmonic contrast {cfg.harmonic_contrast:g}" + (" (off)" if cfg.harmonic_contrast == 1 else ""),
    ]
    if cfg.training:
        lines.append("training")
        lines += [f"  {k:<22} {v}" for k, v in cfg.training.items()]
    else:
        lines.append("training    none recorded: these weights are untrained or of unknown origin")
    return "\n".join(lines)
