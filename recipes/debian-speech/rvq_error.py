"""How much of the latent the residual VQ keeps at each depth: the quantizer's health check.

    python recipes/debian-speech/rvq_error.py CORPUS [--weights DIR] [--split test] [--clips 16]

Prints, for 1 to 35 latent stages (code slots 2 to 36; slots 0 and 1 hold the pitch), ||latent - quantized|| /
||latent|| over the first clips of a split. A healthy RVQ falls with every stage.
"""
from __future__ import annotations

import torch
from diagnostics import parse  # beside this file


DEPTHS = (1, 2, 4, 6, 15, 35)  # latent stages: with the pitch slots, 3, 4, 6, 8, 17 and 37 codebooks


def main() -> None:
    args, model, corpus = parse(__doc__, clips=16)
    errors, power = torch.zeros(len(DEPTHS)), 0.0
    with torch.no_grad():
        for i in range(min(args.clips, len(corpus))):
            wav = model.prepare(torch.from_numpy(corpus.audio(i)), model.sample_rate)
            latent = model.encoder(model._pad_to_frames(wav))
            power += float(latent.pow(2).sum())
            for j, n in enumerate(DEPTHS):
                quantized = model.quantizer.decode(model.quantizer.encode(latent, n))
                errors[j] += float((latent - quantized).pow(2).sum())
    print("| latent stages | " + " | ".join(str(n) for n in DEPTHS) + " |")
    print("|---" * (len(DEPTHS) + 1) + "|")
    print("| relative latent error | " + " | ".join(f"{(e / power) ** 0.5:.3f}" for e in errors) + " |")


if __name__ == "__main__":
    main()
