"""Evaluate codecs on one clip: resample, encode, decode, align, measure, write one JSON per (clip, codec).

This is what each worker process runs. Results land in OUT/files/<codec>/<clip>.json, written atomically, so an
interrupted run resumes where it stopped: a result is reused when its codec version (ours: the weights
checksum) and its columns match what is asked for.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from codec.io.atomic import atomic_path
from codec.io.audio import open_audio, write_audio

from .align import MAX_DELAY_S, align
from .clips import RATE, Clip
from .codecs import SpeechCodec, load_plugin, make_codec
from .metrics import NotComputable, all_metrics, to_rate

EXTRA_RATE = 16000


def slug(spec: str) -> str:
    """A codec spec as a folder name: codec:17 -> codec_17."""
    return spec.replace(":", "_").replace("/", "_")


def result_path(out: Path, spec: str, clip_id: str) -> Path:
    return Path(out) / "files" / slug(spec) / f"{clip_id}.json"


def audio_path(out: Path, name: str, clip_id: str) -> Path:
    """Kept audio of one clip: name is "reference" or a codec's slug. FLAC: lossless and about half the size."""
    return Path(out) / "audio" / name / f"{clip_id}.flac"


def write_flac(path: Path, wav: np.ndarray) -> None:
    """16-bit FLAC at 24 kHz, written atomically: a resumed run never takes half a file for a finished one."""
    write_audio(path, wav, RATE)


def read_flac(path: Path) -> np.ndarray:
    """A file `write_flac` wrote, as float32 [T]."""
    with open_audio(path) as f:
        return f.read(dtype="float32")


def version_of(codec: SpeechCodec) -> str:
    """What must match for a stored result to be reused: ours changes with its weights."""
    model = getattr(codec, "model", None)
    return getattr(codec, "version", None) or (model.checksum if model is not None else "")


def write_json(path: Path, data: dict) -> None:
    with atomic_path(path) as tmp:  # a killed run never leaves half a JSON that looks finished
        tmp.write_text(json.dumps(data, indent=1))


def is_done(path: Path, version: str, columns: list[str]) -> bool:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return data.get("version") == version and all(c in data.get("metrics", {}) for c in columns)


def payload_bytes(codec: SpeechCodec, data: bytes) -> int:
    """Bytes of the codec's own bit stream, without container or file header (when the codec can tell)."""
    fn = getattr(codec, "payload_bytes", None)
    return int(fn(data)) if fn is not None else len(data)


class Worker:
    """Codecs and extras built once per process; `evaluate` runs one clip."""

    def __init__(self, out: str | Path, model_dir: str | None = None, plugins: tuple[str, ...] = (),
                 extras: tuple[str, ...] = (), save_audio: tuple[str, ...] | bool = (),
                 max_delay_s: float = MAX_DELAY_S, threads: int | None = None):
        if threads:
            import torch

            torch.set_num_threads(threads)
        for plugin in plugins:
            load_plugin(plugin)
        from .extras import EXTRAS

        self.out, self.model_dir, self.save_audio, self.max_delay_s = Path(out), model_dir, save_audio, max_delay_s
        self.extras = [EXTRAS[name]() for name in extras]
        self._codecs: dict[str, SpeechCodec] = {}

    def codec(self, spec: str) -> SpeechCodec:
        if spec not in self._codecs:
            self._codecs[spec] = make_codec(spec, self.model_dir)
        return self._codecs[spec]

    def _reference_info(self, clip: Clip, ref16: np.ndarray) -> dict:
        """Per-clip values the extras need from the clean input (e.g. its transcript), cached on disk."""
        if not self.extras:
            return {}
        path = self.out / "reference" / f"{clip.id}.json"
        info = json.loads(path.read_text()) if path.is_file() else {}
        missing = [e for e in self.extras if e.name not in info]
        for extra in missing:
            try:
                info[extra.name] = extra.reference(ref16)
            except NotComputable as err:
                info[extra.name] = {"error": str(err)}
        if missing:
            write_json(path, info)
        return info

    def evaluate(self, clip: Clip, specs: list[str]) -> list[dict]:
        """Run every codec of `specs` on `clip`; returns the results it wrote (and error records)."""
        ref = clip.load()
        ref16 = to_rate(ref, RATE, EXTRA_RATE) if self.extras else None
        info = self._reference_info(clip, ref16) if self.extras else {}
        keep_audio = self.save_audio is True or clip.id in (self.save_audio or ())
        if keep_audio:
            write_flac(audio_path(self.out, "reference", clip.id), ref)
        results = []
        for spec in specs:
            try:
                results.append(self._one(clip, spec, ref, ref16, info, keep_audio))
            except (RuntimeError, ValueError, OSError) as err:
                results.append({"clip": clip.id, "codec": spec, "error": f"{type(err).__name__}: {err}"})
        return results

    def _one(self, clip: Clip, spec: str, ref: np.ndarray, ref16, info: dict, keep_audio: bool) -> dict:
        codec = self.codec(spec)
        x = to_rate(ref, RATE, codec.sample_rate)
        data = codec.encode(x)
        y = to_rate(np.asarray(codec.decode(data, len(x)), np.float64), codec.sample_rate, RATE)
        aligned, delay = align(ref, y, RATE, self.max_delay_s)
        seconds = len(ref) / RATE
        result = {
            "clip": clip.id, "codec": spec, "version": version_of(codec), "seconds": seconds,
            "sample_rate": codec.sample_rate, "bytes": len(data), "payload_bytes": payload_bytes(codec, data),
            "nominal_bps": float(codec.bitrate()), "delay_samples": int(delay),
            "metrics": all_metrics(ref, aligned, RATE),
        }
        if self.extras:
            deg16 = to_rate(aligned, RATE, EXTRA_RATE)
            for extra in self.extras:
                ref_info = info.get(extra.name, {})
                try:
                    if "error" in ref_info:
                        raise NotComputable(ref_info["error"])
                    scores = extra.score(ref16, deg16, ref_info)
                except NotComputable as err:
                    scores = {c: f"n/a: {err}" for c in extra.columns}
                for key, value in scores.items():
                    (result["metrics"] if key in extra.columns else result.setdefault("extra", {}))[key] = value
        tokens = getattr(codec, "tokens", None)
        if tokens is not None:
            t = np.asarray(tokens(data))
            path = self.out / "tokens" / slug(spec) / f"{clip.id}.npy"
            path.parent.mkdir(parents=True, exist_ok=True)
            np.save(path, t.astype(np.int16 if t.max(initial=0) < 2 ** 15 else np.int32))
            result.update(codebook_size=int(codec.codebook_size), frame_rate=float(codec.frame_rate))
        if keep_audio:
            write_flac(audio_path(self.out, slug(spec), clip.id), aligned)
        write_json(result_path(self.out, spec, clip.id), result)
        return result


_WORKER: Worker | None = None


def init_worker(kwargs: dict) -> None:
    """Process-pool initializer: one Worker per process, one torch thread each (the pool is the parallelism)."""
    global _WORKER
    _WORKER = Worker(**kwargs, threads=1)


def run_in_worker(clip: Clip, specs: list[str]) -> list[dict]:
    from codec.errors import InputError

    try:
        return _WORKER.evaluate(clip, specs)
    except InputError as err:
        return [{"clip": clip.id, "codec": None, "error": str(err), "input_error": True}]
