"""Does the decoder's f0 follow the input's? The harmonic head's health check.

    python recipes/debian-speech/pitch_error.py CORPUS [--weights DIR] [--split test] [--clips 8]

Codes the first seconds of clips spread over a split at full depth and compares the harmonic head's f0
with the YIN pitch of the input (codec.pitch) on the hops YIN calls voiced: mean error in octaves, the
share of hops within 5 % (0.07 octaves), and the median f0 of each.
"""
from __future__ import annotations

import numpy as np
import torch

from codec.pitch import yin_f0
from diagnostics import parse  # beside this file


def main() -> None:
    args, model, corpus = parse(__doc__, clips=8, seconds=4.0)
    head = model.decoder.harmonic
    if head is None:
        raise SystemExit(f"{args.weights or 'the shipped model'}: no harmonic head (config harmonics = 0)")
    rate = model.sample_rate
    errors, predicted, target = [], [], []
    for i in np.linspace(0, len(corpus) - 1, min(args.clips, len(corpus))).astype(int):
        wav = model._pad_to_frames(torch.from_numpy(corpus.audio(int(i))[: int(args.seconds * rate)])[None, None])
        with torch.no_grad():
            model.decode(model.encode_prepared(wav))
            f0, voiced = yin_f0(wav, head.hop, rate)
        mine = head.last_f0[0, : f0.shape[1]][voiced[0]]
        errors.append((torch.log2(mine) - torch.log2(f0[0][voiced[0]])).abs())
        predicted.append(mine)
        target.append(f0[0][voiced[0]])
    err = torch.cat(errors)
    print("| voiced hops | mean error, octaves | within 5 % | median f0, decoder | median f0, input (YIN) |")
    print("|---:|---:|---:|---:|---:|")
    print(f"| {len(err)} | {float(err.mean()):.3f} | {float((err < np.log2(1.05)).float().mean()):.1%} | "
          f"{float(torch.cat(predicted).median()):.0f} Hz | {float(torch.cat(target).median()):.0f} Hz |")


if __name__ == "__main__":
    main()
