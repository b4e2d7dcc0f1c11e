import math
import os

import numpy as np
import pytest
import torch

from codec import Codec, CodecConfig

torch.set_num_threads(2)
# Without a GPU, Triton's kernels run under its interpreter (tests/test_kernels.py). Triton reads this once,
# when it is first imported, and nothing has imported it yet.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


def tiny_config(**overrides) -> CodecConfig:
    """A small random model with the real frame arithmetic and 37 x 1024 codebooks: fast to run."""
    base = dict(encoder_dims=(32, 48), encoder_depths=(1, 1), decoder_dims=(48, 32), decoder_depths=(1, 2),
                latent_dim=32, name="tiny-test")
    base.update(overrides)
    return CodecConfig(**base)


@pytest.fixture(scope="session")
def tiny_model() -> Codec:
    torch.manual_seed(1234)
    return Codec(tiny_config()).eval()


def speech_like(seconds: float, rate: int = 24000, f0: float = 140.0, seed: int = 0) -> np.ndarray:
    """A voiced, speech-like test signal: harmonics of a gliding f0 under two formant peaks, with
    syllable-rate amplitude modulation. Its answer is known: what goes in."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    pitch = f0 * (1 + 0.1 * np.sin(2 * np.pi * 0.7 * t))
    phase = 2 * np.pi * np.cumsum(pitch) / rate
    x = np.zeros_like(t)
    for k in range(1, int(4000 / f0)):
        freq = k * f0
        gain = np.exp(-((freq - 700) / 300) ** 2) + 0.5 * np.exp(-((freq - 1800) / 400) ** 2) + 0.02
        x += gain * np.sin(k * phase + rng.uniform(0, 2 * np.pi))
    envelope = 0.55 + 0.45 * np.sin(2 * np.pi * 4.0 * t) ** 2
    x *= envelope
    return (0.1 * x / np.sqrt(np.mean(x ** 2))).astype(np.float32)


def frames_for(n: int) -> int:
    return math.ceil(n / 1920)
