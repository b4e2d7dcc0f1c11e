"""How far frame-by-frame decoding drifts from offline decoding on real speech.

    python recipes/debian-speech/stream_drift.py CORPUS [--weights DIR] [--split test] [--seconds 60]

Concatenates clips of the split up to `--seconds`, decodes the codes offline and one 80 ms frame at a time,
and prints the largest difference (relative to the peak) and the SNR of the streamed output against the
offline one, for the first 10 s and for the whole span.
"""
from __future__ import annotations

import numpy as np
import torch

from diagnostics import parse  # beside this file


def main() -> None:
    args, model, corpus = parse(__doc__, seconds=60.0)
    rate = model.sample_rate
    parts, total, i = [], 0, 0
    while total < args.seconds * rate and i < len(corpus):
        parts.append(corpus.audio(i))
        total += len(parts[-1])
        i += 1
    wav = torch.from_numpy(np.concatenate(parts)[: int(args.seconds * rate)])
    codes = model.encode(wav, rate)
    offline = model.decode(codes)[0, 0]
    with model.streaming(batch_size=1) as stream:
        streamed = torch.cat([stream.decode(codes[..., f: f + 1]) for f in range(codes.shape[-1])]
                             + [stream.flush_decode()], -1)[0, 0]
    print("| span | max difference / peak | SNR of streamed vs offline, dB |\n|---|---:|---:|")
    for name, n in (("first 10 s", 10 * rate), (f"all {len(offline) / rate:.0f} s", len(offline))):
        diff, ref = (streamed[:n] - offline[:n]).double(), offline[:n].double()
        snr = 10 * np.log10(float(ref.square().sum()) / max(float(diff.square().sum()), 1e-30))
        print(f"| {name} | {float(diff.abs().max() / ref.abs().max()):.1e} | {snr:.1f} |")


if __name__ == "__main__":
    main()
