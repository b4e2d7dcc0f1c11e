"""Are the clips that `codec data prepare` drops as "clipped" really clipped? A check of the rule.

    python recipes/debian-speech/clipping.py SOURCES_DIR SOURCE [SOURCE ...]

The rule (codec.train.prepare.PrepareOptions.clip_share) drops a file when more than 1 % of its samples sit at full
scale (|x| >= 0.999). A clipped recording shows it in one of two ways: a lossless file holds flat runs at
full scale (3 or more equal samples at |x| >= 0.99; an 8-bit file's positive limit is 127/128), and a lossy
one (Ogg, MP3) rings over its flattened tops, so decoded samples exceed full scale. Prints per source: the
files, those the rule drops and how many of them show either sign, and the files the rule keeps although
more than 0.1 % of their samples lie in flat runs at full scale.
"""
from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

import numpy as np

from codec.io.audio import open_audio
from codec.train.prepare import PrepareOptions, find_audio

SIGN_SHARE = 0.001  # a sign counts when it covers more than 0.1 % of the samples


def flat_share(data: np.ndarray) -> float:
    """The largest share, over channels, of samples in runs of 3 or more equal values at |x| >= 0.99."""
    share = 0.0
    for ch in data.T:
        if len(ch) == 0:
            continue
        starts = np.r_[0, np.nonzero(np.diff(ch))[0] + 1]
        lengths = np.diff(np.r_[starts, len(ch)])
        flat = (lengths >= 3) & (np.abs(ch[starts]) >= 0.99)
        share = max(share, lengths[flat].sum() / len(ch))
    return float(share)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("sources_dir", type=Path, help="the folder holding one folder per source")
    ap.add_argument("sources", nargs="+")
    args = ap.parse_args()
    limit = PrepareOptions.clip_share
    print("| source | files | dropped as clipped | of those: flat tops | of those: over full scale | neither "
          "| kept with flat tops |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for source in args.sources:
        counts = Counter()
        for _, path in find_audio(args.sources_dir / source):
            try:
                with open_audio(path) as f:
                    data = f.read(dtype="float32", always_2d=True)
            except Exception:  # noqa: BLE001, S112 - unreadable files are prepare's to count
                continue
            counts["files"] += 1
            flat = flat_share(data) > SIGN_SHARE
            if np.mean(np.abs(data) >= 0.999) > limit:
                counts["dropped"] += 1
                if flat:
                    counts["flat"] += 1
                elif np.mean(np.abs(data) > 1.0001) > SIGN_SHARE:
                    counts["over"] += 1
                else:
                    counts["neither"] += 1
            elif flat:
                counts["kept flat"] += 1
        print(f"| {source} | {counts['files']} | {counts['dropped']} | {counts['flat']} | {counts['over']} "
              f"| {counts['neither']} | {counts['kept flat']} |")


if __name__ == "__main__":
    main()
