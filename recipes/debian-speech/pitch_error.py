"""How well is the pitch coded, and does the decoded speech carry it? Cents and voicing on a split.

    python recipes/debian-speech/pitch_error.py CORPUS [--weights DIR] [--split test] [--clips 16]

For the first seconds of clips spread over a split: the encoder's pitch estimate (codec.pitch.causal_yin
on the input), the contour the two pitch codes decode to (at the same hops), and the same estimator run
on the decoded audio. Prints the coding error (decoded contour vs the estimate) and the end-to-end error
(the decoded audio's pitch vs the input's) in cents on hops both call voiced (median and 95th
percentile), the share of those within 50 cents, and voicing disagreement (share of hops voiced in one
and not the other).
"""
from __future__ import annotations

import numpy as np
import torch

from codec.pitch import analysis_centres, causal_yin
from diagnostics import parse  # beside this file


def _row(name: str, a: torch.Tensor, va: torch.Tensor, b: torch.Tensor, vb: torch.Tensor) -> str:
    both = va & vb
    cents = (1200 * torch.log2(a[both] / b[both])).abs()
    return (f"| {name} | {int(both.sum())} | {float(cents.median()):.1f} | {float(torch.quantile(cents, 0.95)):.1f} | "
            f"{float((cents < 50).float().mean()):.1%} | {float((va != vb).float().mean()):.1%} |")


def main() -> None:
    args, model, corpus = parse(__doc__, clips=16, seconds=6.0)
    cfg, rate = model.config, model.sample_rate
    offsets = analysis_centres(cfg.hop_length, cfg.frame_size, 960)
    found, coded, heard = [], [], []
    for i in np.linspace(0, len(corpus) - 1, min(args.clips, len(corpus))).astype(int):
        wav = model._pad_to_frames(torch.from_numpy(corpus.audio(int(i))[: int(args.seconds * rate)])[None, None])
        with torch.no_grad():
            codes = model.encode_prepared(wav)
            decoded = model.decode(codes)
        found.append(causal_yin(wav, cfg.hop_length, cfg.frame_size, rate))
        f0 = model.pitch.decode(codes[:, :2], offsets)
        coded.append((f0, f0 > 0))
        heard.append(causal_yin(decoded, cfg.hop_length, cfg.frame_size, rate))
    cat = lambda pairs, j: torch.cat([p[j].flatten() for p in pairs])
    print("| comparison | voiced hops (both) | median error, cents | 95th percentile, cents | within 50 cents "
          "| voicing disagreement |")
    print("|---|---:|---:|---:|---:|---:|")
    print(_row("coded contour vs the input's estimate", cat(coded, 0), cat(coded, 1), cat(found, 0), cat(found, 1)))
    print(_row("decoded audio vs the input", cat(heard, 0), cat(heard, 1), cat(found, 0), cat(found, 1)))


if __name__ == "__main__":
    main()
