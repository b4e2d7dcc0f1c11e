"""Is it the magnitudes or the phase? Rebuild each clip with one half taken from the reference, score each.

    python recipes/debian-speech/phase_magnitude.py CORPUS [--weights DIR] [--split test] [--clips 8]

In the decoder's own STFT framing (codec.model.Codec.target_magnitudes): (a) the decoded audio, (b) the
same without the Griffin-Lim passes after RTPGHI (config.phase_iterations = 0), (c) the reference's
magnitudes with the phase the decoder computes (codec.phase: the phase's ceiling), (d) the decoded
magnitudes with the reference's phase (the magnitudes' ceiling). PESQ-WB and STOI, averaged.
"""
from __future__ import annotations

import numpy as np
import torch

from codec import kernels
from codec.eval.metrics import pesq, stoi
from diagnostics import parse  # beside this file


def _with_phase(model, magnitude: torch.Tensor, phase_of: torch.Tensor) -> torch.Tensor:
    """|S| (B, H, K) with the phase of phase_of's STFT in the same framing -> audio (B, H * hop)."""
    cfg = model.config
    frames = torch.fft.irfft(torch.polar(magnitude, torch.angle(model.analysis(phase_of))), n=cfg.synthesis_fft)
    silent = torch.zeros(frames.shape[0], cfg.synthesis_delay // cfg.synthesis_hop, cfg.synthesis_fft)
    frames = torch.cat([frames, silent], 1)  # closes the last samples with the full window envelope
    wav = kernels.overlap_add(frames, cfg.synthesis_hop, model.synthesis.window)
    return wav[:, cfg.synthesis_delay: cfg.synthesis_delay + magnitude.shape[1] * cfg.synthesis_hop]


def main() -> None:
    args, model, corpus = parse(__doc__, clips=8, seconds=6.0)
    rate = model.sample_rate
    rows = {"decoded": [], "decoded, RTPGHI alone": [], "reference magnitude, computed phase": [],
            "decoded magnitude, reference phase": []}
    iterations = model.synthesis.iterations
    for i in np.linspace(0, len(corpus) - 1, min(args.clips, len(corpus))).astype(int):
        ref = model._pad_to_frames(torch.from_numpy(corpus.audio(int(i))[: int(args.seconds * rate)])[None, None])
        with torch.no_grad():
            codes = model.encode_prepared(ref)
            decoded = model.decode(codes)[:, 0]
            model.synthesis.iterations = 0
            plain = model.decode(codes)[:, 0]
            model.synthesis.iterations = iterations
            computed = model.synthesis(torch.log(model.target_magnitudes(ref) + 1e-5))
            swapped = _with_phase(model, torch.exp(model.magnitudes(codes)), ref)
        r = ref[0, 0].numpy()
        for name, out in zip(rows, (decoded, plain, computed, swapped)):
            rows[name].append((pesq(r, out[0].numpy(), rate), stoi(r, out[0].numpy(), rate)))
    print("| audio | PESQ-WB | STOI |\n|---|---:|---:|")
    for name, scores in rows.items():
        p, s = np.nanmean(np.array(scores, dtype=float), axis=0)
        print(f"| {name} | {p:.2f} | {s:.3f} |")


if __name__ == "__main__":
    main()
