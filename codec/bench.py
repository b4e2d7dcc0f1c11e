"""`codec bench [model|stream|train|kernels]`: speed tables. Speed = seconds of audio per second of wall time."""
from __future__ import annotations

import platform
import time

import torch

from .errors import UsageError
from .io.audio import read_audio
from .threads import STREAM_THREADS, torch_threads


def _time(fn, repeats: int) -> float:
    fn()  # warm-up: first calls allocate and pick algorithms
    best = float("inf")
    for _ in range(repeats):
        tic = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - tic)
    return best


def _once(fn) -> float:
    tic = time.perf_counter()
    fn()
    return time.perf_counter() - tic


def machine() -> str:
    return f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}"


def bench_audio(model, seconds: float, audio: torch.Tensor | None = None) -> torch.Tensor:
    """(1, 1, T) at the model rate, `seconds` long: `audio` (any shape `Codec.prepare` takes, at the model
    rate) repeated end to end and cut, or without it white noise at -20 dBFS. The decoder's phase work
    depends on the sound: noise keeps every bin loud; speech has pauses and harmonics."""
    n = int(seconds * model.sample_rate)
    if audio is None:
        return torch.randn(1, 1, n, generator=torch.Generator().manual_seed(0)) * 0.1
    audio = model.prepare(audio, model.sample_rate)[:1]
    return audio.repeat(1, 1, -(-n // audio.shape[-1]))[..., :n]


def model_rows(model, seconds: float = 10.0, batch: int = 8, repeats: int = 3,
               precisions=("fp32", "bf16"), audio: torch.Tensor | None = None) -> list[dict]:
    """Encode and decode speed at batch 1 and `batch`, plus streaming decode cost per 80 ms frame, on
    `bench_audio`."""
    rows = []
    one = bench_audio(model, seconds, audio)
    frame_s = 1 / model.frame_rate
    for precision in precisions:
        bf16 = precision == "bf16"
        for b in (1, batch):
            wav = one.expand(b, 1, -1).contiguous()
            codes = model.encode(wav, model.sample_rate)
            t_enc = _time(lambda: model.encode(wav, model.sample_rate, bf16=bf16), repeats)
            t_dec = _time(lambda: model.decode(codes, bf16=bf16), repeats)
            rows.append({"what": f"encode, batch {b}", "precision": precision, "x_realtime": b * seconds / t_enc})
            rows.append({"what": f"decode, batch {b}", "precision": precision, "x_realtime": b * seconds / t_dec})
        codes = model.encode(one, model.sample_rate)

        def stream_decode():
            with model.streaming(1, bf16=bf16) as s:
                for f in range(codes.shape[-1]):
                    s.decode(codes[..., f: f + 1])

        per_frame = _time(stream_decode, repeats) / codes.shape[-1]
        rows.append({"what": "streaming decode, per 80 ms frame", "precision": precision,
                     "x_realtime": frame_s / per_frame, "ms_per_frame": 1000 * per_frame})
    return rows


def stream_rows(model, seconds: float = 10.0, repeats: int = 3, precisions=("fp32", "bf16"),
                audio: torch.Tensor | None = None) -> list[dict]:
    """Streaming cost at batch 1, fed one 80 ms frame at a time as a live source would feed it.

    Rows: encode, decode and encode + decode per frame (ms; x real time = 80 ms / that), and time to
    first audio: from the first frame's last sample arriving to its 1920 decoded samples, on a fresh
    stream (state set-up included). A listener hears it `latency_ms` (one frame + lookahead + synthesis overlap)
    plus this.
    """
    rows = []
    fs, frame_s = model.frame_size, 1 / model.frame_rate
    n_frames = max(1, int(round(seconds * model.frame_rate)))
    wav = bench_audio(model, n_frames * fs / model.sample_rate, audio)
    codes = model.encode(wav, model.sample_rate)
    for precision in precisions:
        bf16 = precision == "bf16"

        def enc():
            with model.streaming(1, bf16=bf16) as s:
                for f in range(n_frames):
                    s.encode(wav[..., f * fs: (f + 1) * fs])

        def dec():
            with model.streaming(1, bf16=bf16) as s:
                for f in range(n_frames):
                    s.decode(codes[..., f: f + 1])

        def first_audio():
            with model.streaming(1, bf16=bf16) as s:
                s.decode(s.encode(wav[..., :fs]))

        t_enc = _time(enc, repeats) / n_frames
        t_dec = _time(dec, repeats) / n_frames
        # time to first audio is a one-off cost: take the median of several fresh streams, not the best
        firsts = sorted(_once(first_audio) for _ in range(max(3, repeats)))
        t_first = firsts[len(firsts) // 2]
        for what, t in (("stream encode, per 80 ms frame", t_enc), ("stream decode, per 80 ms frame", t_dec),
                        ("stream encode + decode, per 80 ms frame", t_enc + t_dec)):
            rows.append({"what": what, "precision": precision, "x_realtime": frame_s / t, "ms_per_frame": 1000 * t})
        rows.append({"what": f"time to first audio (+ {model.config.latency_ms:g} ms algorithmic latency)",
                     "precision": precision, "x_realtime": frame_s / t_first, "ms_per_frame": 1000 * t_first})
    return rows


def train_rows(steps: int = 3, batch: int = 16, crop_frames: int = 16, precisions=("fp32", "bf16"),
               model: dict | None = None, train: dict | None = None) -> list[dict]:
    """Training throughput of the default model on random audio (no data loading): one real
    `codec.train.Trainer` step (pitch estimate, magnitude and VQ losses, backward, clipping, AdamW) per
    call, in fp32 and bf16. `train`: a recipe's train section (its loss weights, quantizer dropout, ...);
    where it starts from and its precision do not apply."""
    from .train import Recipe, Trainer

    base = {k: v for k, v in (train or {}).items() if k not in ("init", "reinit", "bf16", "device", "batch_size")}
    rows = []
    for precision in precisions:
        recipe = Recipe.from_dict({"model": model or {},
                                   "train": {**base, "batch_size": batch, "bf16": precision == "bf16"}})
        torch.manual_seed(0)
        trainer = Trainer(recipe, torch.device("cpu"))
        wav = torch.randn(batch, 1, crop_frames * trainer.model.frame_size) * 0.1
        counter = iter(range(10**9))
        seconds = _time(lambda: [trainer.step(wav, next(counter)) for _ in range(steps)], 1) / steps
        crop_s = crop_frames / trainer.model.frame_rate
        rows.append({"what": f"train step, batch {batch} x {crop_s:.2f} s, magnitude + VQ losses",
                     "precision": precision, "x_realtime": batch * crop_s / seconds})
    return rows


def format_rows(rows: list[dict]) -> str:
    lines = ["| what | precision | x real time | ms per frame |", "|---|---|---|---|"]
    for r in rows:
        ms = f"{r['ms_per_frame']:.2f}" if "ms_per_frame" in r else ""
        lines.append(f"| {r['what']} | {r['precision']} | {r['x_realtime']:.1f} | {ms} |")
    return "\n".join(lines)


def add_arguments(p) -> None:
    p.add_argument("what", nargs="?", default="model", choices=["model", "stream", "train", "kernels"],
                   help="kernels: the kernel benchmark, which takes its own options (codec bench kernels --help)")
    p.add_argument("--model", default=None, help="shipped model name or checkpoint folder")
    p.add_argument("--seconds", type=float, default=10.0, help="audio length per call (model)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--audio", default=None, metavar="FILE",
                   help="model, stream: time on this recording, repeated to --seconds (default: white noise)")
    p.add_argument("--recipe", default=None, metavar="YAML",
                   help="train: time a step of this training recipe (its model, losses, batch and crop) "
                        "instead of the default recipe's on the --model architecture")
    p.add_argument("--threads", type=int, default=None,
                   help=f"torch intra-op threads (default: {STREAM_THREADS} for stream, which codes one 80 ms frame "
                        "per call, as codec decode -o - does; torch's default otherwise)")


def run(args) -> int:
    if args.what == "kernels":  # `codec bench kernels ...` goes straight to it (codec.cli); this is the bare form
        from .kernels.bench import main as kernels_main

        return kernels_main([])
    if args.threads is not None and args.threads < 1:
        raise UsageError(f"--threads must be at least 1, got {args.threads}")
    threads = args.threads or (STREAM_THREADS if args.what == "stream" else None)
    with torch_threads(threads):
        return _run(args)


def _run(args) -> int:
    print(f"machine: {machine()}")
    from .checkpoint import load

    if args.what == "train":  # the architecture of the shipped (or --model) checkpoint, trained afresh
        arch = {k: v for k, v in load(args.model).config.to_dict().items() if k not in ("training", "name")}
        if args.recipe is None:
            print(format_rows(train_rows(steps=max(1, args.repeats), model=arch)))
            return 0
        from .train.recipe import load_recipe

        recipe = load_recipe(args.recipe)
        print(f"recipe: {args.recipe} (its model, losses and batch; random audio, fresh weights)")
        print(format_rows(train_rows(steps=max(1, args.repeats), batch=recipe.train.batch_size,
                                     crop_frames=recipe.data.crop_frames, model={**arch, **recipe.model},
                                     train=recipe.to_dict()["train"])))
        return 0

    model = load(args.model)
    audio = None
    if args.audio:
        samples, rate = read_audio(args.audio)
        audio = model.prepare(torch.from_numpy(samples), rate)
    print(f"audio: {args.audio or 'white noise'}")
    if args.what == "stream":
        print(f"model: {model.config.name} ({model.checksum[:12]}), batch 1, one frame per call")
        print(format_rows(stream_rows(model, args.seconds, repeats=args.repeats, audio=audio)))
        return 0
    print(format_rows(model_rows(model, args.seconds, repeats=args.repeats, audio=audio)))
    return 0
