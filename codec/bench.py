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


def train_rows(steps: int = 5, batch: int = 16, crop_frames: int = 16, discriminators=(False,)) -> list[dict]:
    """Training throughput of the default model on random audio (no data loading), fp32 and bf16."""
    from .config import CodecConfig
    from .losses import MultiScaleMelLoss
    from .model import Codec

    rows = []
    cfg = CodecConfig()
    wav = torch.randn(batch, 1, crop_frames * cfg.frame_size) * 0.1
    for precision in ("fp32", "bf16"):
        torch.manual_seed(0)
        model, mel = Codec(cfg).train(), MultiScaleMelLoss(cfg.sample_rate)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

        def step():
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
                recon, q = model(wav)
            loss = mel(recon.float(), wav) + q.commitment_loss + q.codebook_loss
            opt.zero_grad()
            loss.backward()
            opt.step()

        seconds = _time(lambda: [step() for _ in range(steps)], 1) / steps
        rows.append({"what": f"train step, batch {batch} x {crop_frames * 0.08:.2f} s, mel + VQ losses",
                     "precision": precision, "x_realtime": batch * crop_frames * 0.08 / seconds})
    return rows


def format_rows(rows: list[dict]) -> str:
    lines = ["| what | precision | x real time | ms per frame |", "|---|---|---|---|"]
    for r in rows:
        ms = f"{r['ms_per_frame']:.2f}" if "ms_per_frame" in r else ""
        lines.append(f"| {r['what']} | {r['precision']} | {r['x_realtime']:.1f} | {ms} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="codec bench", description=__doc__)
    p.add_argument("what", nargs="?", default="model", choices=["model", "train", "kernels"])
    p.add_argument("--model", default=None, help="shipped model name or checkpoint folder")
    p.add_argument("--seconds", type=float, default=10.0, help="audio length per call (model)")
    p.add_argument("--repeats", type=int, default=3)
    args, rest = p.parse_known_args(argv)
    if args.what == "kernels":
        from .kernels.bench import main as kernels_main

        return kernels_main(rest)
    print(f"machine: {machine()}")
    if args.what == "train":
        print(format_rows(train_rows()))
        return 0
    from .weights import load

    model = load(args.model)
    print(format_rows(model_rows(model, args.seconds, repeats=args.repeats)))
    return 0
