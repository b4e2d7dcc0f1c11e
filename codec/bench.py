"""`codec bench [model|kernels]`: speed tables. Speed = seconds of audio per second of wall time."""
from __future__ import annotations

import argparse
import platform
import time

import torch


def _time(fn, repeats: int) -> float:
    fn()  # warm-up: first calls allocate and pick algorithms
    best = float("inf")
    for _ in range(repeats):
        tic = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - tic)
    return best


def machine() -> str:
    return f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}"


def model_rows(model, seconds: float = 10.0, batch: int = 8, repeats: int = 3, precisions=("fp32", "bf16")) -> list[dict]:
    """Encode and decode speed at batch 1 and `batch`, plus streaming decode cost per 80 ms frame."""
    rows = []
    n = int(seconds * model.sample_rate)
    for precision in precisions:
        bf16 = precision == "bf16"
        for b in (1, batch):
            wav = torch.randn(b, 1, n) * 0.1
            codes = model.encode(wav, model.sample_rate)
            t_enc = _time(lambda: model.encode(wav, model.sample_rate, bf16=bf16), repeats)
            t_dec = _time(lambda: model.decode(codes, bf16=bf16), repeats)
            rows.append({"what": f"encode, batch {b}", "precision": precision, "x_realtime": b * seconds / t_enc})
            rows.append({"what": f"decode, batch {b}", "precision": precision, "x_realtime": b * seconds / t_dec})
        codes = model.encode(torch.randn(1, 1, n) * 0.1, model.sample_rate)

        def stream_decode():
            with model.streaming(1, bf16=bf16) as s:
                for f in range(codes.shape[-1]):
                    s.decode(codes[..., f: f + 1])

        per_frame = _time(stream_decode, repeats) / codes.shape[-1]
        rows.append({"what": "streaming decode, per 80 ms frame", "precision": precision,
                     "x_realtime": 0.08 / per_frame, "ms_per_frame": 1000 * per_frame})
    return rows


def format_rows(rows: list[dict]) -> str:
    lines = ["| what | precision | x real time | ms per frame |", "|---|---|---|---|"]
    for r in rows:
        ms = f"{r['ms_per_frame']:.2f}" if "ms_per_frame" in r else ""
        lines.append(f"| {r['what']} | {r['precision']} | {r['x_realtime']:.1f} | {ms} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="codec bench", description=__doc__)
    p.add_argument("what", nargs="?", default="model", choices=["model", "kernels"])
    p.add_argument("--model", default=None, help="shipped model name or checkpoint folder")
    p.add_argument("--seconds", type=float, default=10.0, help="audio length per call (model)")
    p.add_argument("--repeats", type=int, default=3)
    args, rest = p.parse_known_args(argv)
    if args.what == "kernels":
        from .kernels.bench import main as kernels_main

        return kernels_main(rest)
    from .weights import load

    model = load(args.model)
    print(f"machine: {machine()}")
    print(format_rows(model_rows(model, args.seconds, repeats=args.repeats)))
    return 0
