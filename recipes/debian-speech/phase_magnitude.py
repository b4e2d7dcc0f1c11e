"""Is it the magnitudes or the phase? Swap them between the reference and the decoded audio and score each.

    python recipes/debian-speech/phase_magnitude.py CORPUS [--weights DIR] [--split test] [--clips 8]

For each clip: decode at full depth, then rebuild (a) the decoded magnitudes with the reference phase and
(b) the reference magnitudes with the decoded phase (STFT 512 / hop 128). PESQ-WB and STOI of the three,
averaged. Whichever swap scores higher shows which half of the decoder's output costs more.
"""
from __future__ import annotations

import numpy as np
import torch
from scipy.signal import istft, stft

from codec.eval.metrics import pesq, stoi
from diagnostics import parse  # beside this file

NPERSEG, NOVERLAP = 512, 384


def _swap(magnitude_of: np.ndarray, phase_of: np.ndarray, rate: int) -> np.ndarray:
    _, _, mag = stft(magnitude_of, rate, nperseg=NPERSEG, noverlap=NOVERLAP)
    _, _, ph = stft(phase_of, rate, nperseg=NPERSEG, noverlap=NOVERLAP)
    return istft(np.abs(mag) * np.exp(1j * np.angle(ph)), rate, nperseg=NPERSEG, noverlap=NOVERLAP)[1][: len(phase_of)]


def main() -> None:
    args, model, corpus = parse(__doc__, clips=8, seconds=6.0)
    rate = model.sample_rate
    rows = {"decoded": [], "decoded magnitude, reference phase": [], "reference magnitude, decoded phase": []}
    for i in range(min(args.clips, len(corpus))):
        ref = corpus.audio(i)[: int(args.seconds * rate)]
        with torch.no_grad():
            dec = model.decode(model.encode(torch.from_numpy(ref), rate)).squeeze().numpy()[: len(ref)]
        for name, out in zip(rows, (dec, _swap(dec, ref, rate), _swap(ref, dec, rate))):
            rows[name].append((pesq(ref, out, rate), stoi(ref, out, rate)))
    print("| audio | PESQ-WB | STOI |\n|---|---:|---:|")
    for name, scores in rows.items():
        p, s = np.nanmean(np.array(scores, dtype=float), axis=0)
        print(f"| {name} | {p:.2f} | {s:.3f} |")


if __name__ == "__main__":
    main()
