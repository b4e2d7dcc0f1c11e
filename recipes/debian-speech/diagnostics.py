"""What the diagnostic scripts beside this file share: their command line and what it loads."""
from __future__ import annotations

import argparse

import codec
from codec.data import Corpus


def parse(doc: str, clips: int | None = None, seconds: float | None = None
          ) -> tuple[argparse.Namespace, codec.Codec, Corpus]:
    """CORPUS [--weights DIR] [--split test] [--clips N] [--seconds S] -> (args, model in eval mode, corpus split)."""
    ap = argparse.ArgumentParser(description=doc.split("\n")[0])
    ap.add_argument("corpus", help="a folder written by `codec data prepare`")
    ap.add_argument("--weights", default=None, help="a weights folder; default: the shipped model")
    ap.add_argument("--split", default="test")
    if clips is not None:
        ap.add_argument("--clips", type=int, default=clips)
    if seconds is not None:
        ap.add_argument("--seconds", type=float, default=seconds, help="audio per clip (or in all)")
    args = ap.parse_args()
    return args, codec.load(args.weights).eval(), Corpus(args.corpus, args.split)
