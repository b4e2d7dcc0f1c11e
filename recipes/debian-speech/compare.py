"""Compare model variants on equal terms: train each for the same steps and seed, score each on held-out clips.

    python recipes/debian-speech/compare.py --recipe A.yaml --recipe B.yaml --steps 600 --out RUNS
    python recipes/debian-speech/compare.py --weights RUN/checkpoint --out RUNS   # score one checkpoint

Each recipe trains into RUNS/<recipe name> (resumed if there) up to `--steps` (its learning-rate schedule
is kept as the recipe sets it, so variants cut at the same step saw the same schedule). Then the first
`--seconds` of `--clips` clips spread over the corpus's `--split` (test by default) are coded at each
depth of `--depths`, and PESQ-WB and STOI printed per variant, with the training speed (audio seconds per
wall second, from the run's metrics) and a spectrogram of the first clip beside its reference
(RUNS/<name>/spectrogram.png). Markdown, to paste into docs/training.md.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

import codec
from codec.io.corpus import Corpus
from codec.train.batches import loudness_normalize
from codec.eval.metrics import pesq, stoi
from codec.eval.plots import spectrograms
from codec.train import load_recipe, train
from codec.train.state import read_metrics


def score(model: codec.Codec, corpus: Corpus, clips: int, seconds: float, depths: list[int], figure: Path
          ) -> dict[int, tuple[float, float]]:
    """depth -> (mean PESQ-WB, mean STOI) over the clips; the first clip's spectrograms to `figure`."""
    rate = model.sample_rate
    results: dict[int, list] = {n: [] for n in depths}
    for j, i in enumerate(np.linspace(0, len(corpus) - 1, min(clips, len(corpus))).astype(int)):
        ref = loudness_normalize(corpus.audio(int(i))[: int(seconds * rate)], -23.0).astype(np.float32)
        decoded = {}
        with torch.no_grad():
            for n in depths:
                out = model.decode(model.encode(torch.from_numpy(ref), rate, n_codebooks=n), length=len(ref))
                decoded[n] = out[0, 0].numpy()
                results[n].append((pesq(ref, decoded[n], rate), stoi(ref, decoded[n], rate)))
        if j == 0:
            spectrograms([("reference", ref)] + [(f"{n} codebooks", decoded[n]) for n in depths], rate, figure)
    return {n: tuple(np.nanmean(np.array(v, dtype=float), axis=0)) for n, v in results.items()}


def speed(run: Path) -> float | None:
    values = [v for v in (record.get("audio_s_per_s") for record in read_metrics(run)) if v]
    return float(np.median(values)) if values else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--recipe", action="append", default=[], help="a training recipe (repeat for each variant)")
    ap.add_argument("--weights", action="append", default=[], help="a trained checkpoint folder to score as is")
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--out", required=True, help="folder of the runs")
    ap.add_argument("--corpus", default=None, help="default: each recipe's data.corpus")
    ap.add_argument("--split", default="test")
    ap.add_argument("--clips", type=int, default=12)
    ap.add_argument("--seconds", type=float, default=6.0)
    ap.add_argument("--depths", default="37", help="comma-separated codebook counts")
    args = ap.parse_args()
    out, depths = Path(args.out), [int(d) for d in args.depths.split(",")]
    out.mkdir(parents=True, exist_ok=True)
    variants = []  # (name, run folder or None, weights folder, corpus)
    for path in args.recipe:
        recipe = load_recipe(path)
        name = Path(path).stem
        run = out / name
        train(recipe, run, max_steps=max(0, args.steps - _done(run)), log=lambda s: None, recipe_path=path)
        variants.append((name, run, run / "checkpoint", args.corpus or recipe.data.corpus))
    for path in args.weights:
        if args.corpus is None:
            ap.error("--weights needs --corpus")
        variants.append((Path(path).resolve().parent.name, None, Path(path), args.corpus))
    head = " | ".join(f"PESQ-WB / STOI at {n}" for n in depths)
    print(f"| variant | steps | audio-s per s | {head} |\n|---|---:|---:|" + "---:|" * len(depths))
    for name, run, weights, corpus in variants:
        model = codec.load(weights).eval()
        steps = model.config.training.get("steps", "?") if run is None else _done(run)
        scores = score(model, Corpus(corpus, args.split), args.clips, args.seconds, depths,
                       out / f"{name}-spectrogram.png")
        rate = speed(run) if run is not None else None
        cells = " | ".join(f"{p:.2f} / {s:.3f}" for p, s in (scores[n] for n in depths))
        print(f"| {name} | {steps} | {rate:.1f} | {cells} |" if rate else f"| {name} | {steps} | | {cells} |")


def _done(run: Path) -> int:
    meta = run / "checkpoint" / "trainer.json"
    return int(json.loads(meta.read_text())["step"]) if meta.is_file() else 0


if __name__ == "__main__":
    main()
