"""`codec bench kernels`: each hot-path kernel at the size of one hour of audio, against its floors.

Sizes (codec/config.py defaults): the RVQ kernels see 12.5 frames/s -> 45,000 rows for an hour, 35 latent
stages, D = 256 latent channels, K = 1024 entries of d = 8 dims; overlap-add sees 200 hops/s -> 720,000
frames of W = 720 samples (hann) at hop H = 120, 86.4 M output samples.

For every kernel: the time of Triton and of the PyTorch reference, the bytes it must move at least and the
FLOPs it must do at least, the floor time max(bytes / bandwidth, FLOPs / FLOP rate) and measured / floor.
Peaks: on a CPU they are measured in the same run (a large copy, a large fp32 matmul); on known CUDA GPUs
they are the nominal figures of NOMINAL_PEAKS. On a CPU only the reference is timed: Triton needs a CUDA GPU,
and its interpreter (TRITON_INTERPRET=1) says nothing about speed.
"""
from __future__ import annotations

import argparse
import os
import platform
import time
from dataclasses import dataclass
from typing import Callable

import torch

from ..config import PITCH_CODEBOOKS, CodecConfig
from . import reference

_CONFIG = CodecConfig()  # the default model's sizes
SAMPLE_RATE = _CONFIG.sample_rate
FRAME_RATE = _CONFIG.frame_rate  # codec frames per second: rows of the RVQ kernels
HOP, WINDOW = _CONFIG.synthesis_hop, _CONFIG.synthesis_fft  # 200 overlap-add frames per second
STAGES = _CONFIG.n_codebooks - PITCH_CODEBOOKS  # the latent stages (codebooks 2-36)
DIM, SIZE, CODE_DIM = _CONFIG.latent_dim, _CONFIG.codebook_size, _CONFIG.codebook_dim
CPU_ROWS = 4500  # default RVQ rows timed on a CPU: the full hour of the reference takes ~25 s a call there

# Nominal peaks (bytes/s, fp32 FLOP/s without tensor cores: the kernels use IEEE fp32, no TF32).
# Matched against torch.cuda.get_device_name(); the first key that occurs in the name wins.
NOMINAL_PEAKS = {
    "H200 NVL": (4.8e12, 60e12),
    "H200": (4.8e12, 67e12),  # same GH100 compute as H100 SXM, faster HBM3e
    "H100 NVL": (3.9e12, 60e12),
    "H100 PCIe": (2.0e12, 51e12),
    "H100": (3.35e12, 67e12),  # SXM5 ("NVIDIA H100 80GB HBM3")
    "A100 80GB PCIe": (1.935e12, 19.5e12),
    "A100-SXM4-80GB": (2.039e12, 19.5e12),
    "A100": (1.555e12, 19.5e12),  # 40 GB, SXM4 or PCIe
}


@dataclass
class Case:
    """One kernel at one size: how to run it both ways and what it must cost at least."""

    name: str
    size: str  # the full (reported) size, in words
    scale: float  # full size / timed size: timed seconds are multiplied by this
    bytes_floor: float  # of the full size
    flops_floor: float  # of the full size
    reference: Callable[[], object]
    triton: Callable[[], object] | None


def rvq_floors(rows: int, stages: int = STAGES, dim: int = DIM, size: int = SIZE, code_dim: int = CODE_DIM):
    """(bytes, FLOPs) floors of rvq_encode and rvq_decode over `rows` rows, fp32 data and int64 codes.

    encode bytes: read latent 4*N*D, write codes 8*N*n, read every parameter once 4*n*(2dD + d + Kd + D).
    encode FLOPs per row and stage: project 2dD, bias + normalize 4d, scores 2Kd, out-project 2dD, bias and
    subtract 2D; plus normalizing the codebooks once, 3nKd. Argmax compares are not counted.
    decode bytes: read codes 8*N*n, write latent 4*N*D, read the parameters 4*n*(Kd + dD + D).
    decode FLOPs per row and stage: out-project 2dD, bias and accumulate 2D.
    """
    n, d, D, K, N = stages, code_dim, dim, size, rows
    enc_bytes = 4 * N * D + 8 * N * n + 4 * n * (2 * d * D + d + K * d + D)
    enc_flops = N * n * (4 * d * D + 2 * K * d + 2 * D + 4 * d) + 3 * n * K * d
    dec_bytes = 8 * N * n + 4 * N * D + 4 * n * (K * d + d * D + D)
    dec_flops = N * n * (2 * d * D + 2 * D)
    return (enc_bytes, enc_flops), (dec_bytes, dec_flops)


def ola_floors(frames: int, batch: int = 1, width: int = WINDOW, hop: int = HOP):
    """(bytes, FLOPs) floors of overlap_add and of one overlap_add_stream call over `frames` frames.

    offline: read frames 4*B*F*W and the window 4W, write 4*B*L samples, L = (F - 1) * H + W; FLOPs: a
    window multiply and an add per frame sample 2*B*F*W, one divide per output sample B*L. The envelope
    depends on the window only, so it is not counted (it could be a precomputed table).
    stream: the same reads, writes B*F*H samples, and reads and writes the tail (B, W - H) and its envelope.
    """
    B, F_, W, H = batch, frames, width, hop
    length = (F_ - 1) * H + W
    ola = (4 * B * F_ * W + 4 * W + 4 * B * length, 2 * B * F_ * W + B * length)
    tail = 2 * 4 * (B + 1) * (W - H)
    stream = (4 * B * F_ * W + 4 * W + 4 * B * F_ * H + tail, 2 * B * F_ * W + B * F_ * H + B * (W - H))
    return ola, stream


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_best(fn: Callable[[], object], repeats: int, device: torch.device) -> float:
    """Best wall seconds of `repeats` calls after one warm-up (compilation, allocator, autotuning)."""
    fn()
    _sync(device)
    best = float("inf")
    for _ in range(max(1, repeats)):
        tic = time.perf_counter()
        fn()
        _sync(device)
        best = min(best, time.perf_counter() - tic)
    return best


def measure_peaks(device: torch.device, repeats: int) -> tuple[float, float, str]:
    """(bytes/s, FLOP/s, where they come from): nominal for known GPUs, else measured here and now."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        for key, (bandwidth, flops) in NOMINAL_PEAKS.items():
            if key in name:
                return bandwidth, flops, f"nominal {name}: {bandwidth / 1e12:.2f} TB/s, {flops / 1e12:.1f} TFLOP/s fp32"
    # Copy: reads and writes 256 MB, far beyond any cache. Matmul: 2 n^3 FLOPs, fp32, no TF32.
    src = torch.empty(64 * 2**20, device=device).uniform_()
    dst = torch.empty_like(src)
    t_copy = time_best(lambda: dst.copy_(src), repeats, device)
    bandwidth = 2 * src.numel() * 4 / t_copy
    src = dst = None  # free the 512 MB before the matmul
    n = 2048
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        flops = 2 * n ** 3 / time_best(lambda: a @ b, repeats, device)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = tf32
    return bandwidth, flops, (f"measured in this run: copy of 256 MB {bandwidth / 1e9:.1f} GB/s, "
                              f"fp32 matmul {n}^3 {flops / 1e9:.1f} GFLOP/s")


def build_cases(seconds: float, rows: int | None, device: torch.device, triton_ok: bool) -> list[Case]:
    """The four kernels at `seconds` of audio; `rows` RVQ rows (and the same fraction of overlap-add) timed."""
    total_rows = max(1, round(seconds * FRAME_RATE))
    total_frames = max(1, round(seconds * SAMPLE_RATE / HOP))
    timed_rows = total_rows if rows is None else max(1, min(rows, total_rows))
    fraction = timed_rows / total_rows
    timed_frames = max(1, round(total_frames * fraction))
    g = torch.Generator(device="cpu").manual_seed(0)

    def rand(*shape, scale=1.0):
        return (torch.randn(*shape, generator=g) * scale).to(device)

    # The model's initial scales, as in tests/test_kernels.py: realistic score spreads for the argmax.
    params = (rand(STAGES, CODE_DIM, DIM, scale=DIM ** -0.5), rand(STAGES, CODE_DIM, scale=0.1),
              rand(STAGES, SIZE, CODE_DIM), rand(STAGES, DIM, CODE_DIM, scale=CODE_DIM ** -0.5),
              rand(STAGES, DIM, scale=0.1))
    latent = rand(timed_rows, DIM)
    codes = reference.rvq_encode(latent[: min(timed_rows, 4096)], *params)
    codes = codes.repeat((timed_rows + len(codes) - 1) // len(codes), 1)[:timed_rows].contiguous()
    frames = rand(1, timed_frames, WINDOW, scale=0.1)
    window = torch.hann_window(WINDOW, periodic=True, device=device)
    tail, tail_env = torch.zeros(1, WINDOW - HOP, device=device), torch.zeros(WINDOW - HOP, device=device)

    tb = None
    if triton_ok:
        from . import triton_backend as tb

    (enc, dec), (ola, stream) = rvq_floors(total_rows), ola_floors(total_frames)
    rvq_size = f"{total_rows:,} rows x {STAGES} stages, D {DIM}, K {SIZE}, d {CODE_DIM}"
    ola_size = f"{total_frames:,} frames, W {WINDOW}, H {HOP}"
    row_scale, frame_scale = total_rows / timed_rows, total_frames / timed_frames
    return [
        Case("rvq_encode", rvq_size, row_scale, *enc,
             lambda: reference.rvq_encode(latent, *params),
             tb and (lambda: tb.rvq_encode(latent, *params))),
        Case("rvq_decode", rvq_size, row_scale, *dec,
             lambda: reference.rvq_decode(codes, *params[2:]),
             tb and (lambda: tb.rvq_decode(codes, *params[2:], check_codes=False))),
        Case("overlap_add", ola_size, frame_scale, *ola,
             lambda: reference.overlap_add(frames, HOP, window),
             tb and (lambda: tb.overlap_add(frames, HOP, window))),
        Case("overlap_add_stream (one call)", ola_size, frame_scale, *stream,
             lambda: reference.overlap_add_stream(frames, HOP, window, tail, tail_env),
             tb and (lambda: tb.overlap_add_stream(frames, HOP, window, tail, tail_env))),
    ]


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:,.3f}" if seconds < 1e-2 else f"{seconds * 1e3:,.1f}"


def agreement(name: str, got, want) -> str:
    """How closely a Triton output matches the reference's on the benchmark inputs: the only check of the
    compiled kernels at full size (the test suite runs them interpreted)."""
    if name == "rvq_encode":  # scores a few ulp apart may rank differently (docs/kernels.md): count rows
        return f"{100 * (got == want).all(dim=1).float().mean().item():.3f} % rows equal"
    got, want = (got, want) if isinstance(got, torch.Tensor) else (got[0], want[0])  # stream: the signal
    err = (got.float() - want.float()).abs().max() / want.float().abs().max().clamp_min(1e-30)
    return f"max error {err.item():.1e} of max"


def run(seconds: float = 3600.0, rows: int | None = None, repeats: int = 3, device: str | None = None,
        backend: str = "all") -> str:
    """Time every case and return the report (markdown table plus the notes it needs).

    backend: "all" (Triton where it can run, and the reference), "reference" or "triton" alone.
    """
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if dev.type != "cuda":
        rows = CPU_ROWS if rows is None else rows
    triton_ok = False
    if dev.type == "cuda":
        # The interpreter would time numpy, not the GPU: Triton reads this when the kernels are first imported.
        os.environ.pop("TRITON_INTERPRET", None)
        try:
            from . import triton_backend  # noqa: F401

            triton_ok = True
        except ImportError:
            pass
    bandwidth, flop_rate, peak_note = measure_peaks(dev, repeats)
    cases = build_cases(seconds, rows, dev, triton_ok)

    lines = ["| kernel | size (full) | backend | timed | time ms | bytes floor MB | GFLOP floor | floor ms | "
             "bound | measured / floor | vs reference |", "|---|---|---|---|---:|---:|---:|---:|---|---:|---|"]
    for case in cases:
        t_bytes, t_flops = case.bytes_floor / bandwidth, case.flops_floor / flop_rate
        floor = max(t_bytes, t_flops)
        bound = "memory" if t_bytes >= t_flops else "compute"
        timed = "full" if case.scale == 1 else f"1/{case.scale:.4g}, x{case.scale:.4g}"
        common = f"| {case.name} | {case.size} | {{}} | {timed} | {{}} | {case.bytes_floor / 1e6:,.1f} | " \
                 f"{case.flops_floor / 1e9:,.3f} | {_ms(floor)} | {bound} | {{}} | {{}} |"
        for name, fn in (("triton", case.triton), ("reference", case.reference)):
            if backend not in ("all", name):
                continue
            if fn is None:
                why = "needs a CUDA GPU" if dev.type != "cuda" else "Triton not importable"
                lines.append(common.format(name, f"— ({why})", "—", ""))
                continue
            t = time_best(fn, repeats, dev) * case.scale
            agrees = ""
            if name == "triton" and backend == "all":
                agrees = agreement(case.name.split()[0], fn(), case.reference())
            lines.append(common.format(name, _ms(t), f"{t / floor:,.1f}", agrees))

    torch_threads = f", {torch.get_num_threads()} threads" if dev.type == "cpu" else ""
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else (platform.processor() or platform.machine())
    notes = [
        f"device: {dev.type} ({name}{torch_threads}), torch {torch.__version__}; {seconds:g} s of audio; "
        f"best of {repeats} after a warm-up",
        f"peaks: {peak_note}",
        "floor = max(bytes floor / bandwidth, FLOP floor / FLOP rate); "
        "formulas in kernels/bench.py and docs/kernels.md",
    ]
    if any(c.scale != 1 for c in cases):
        notes.append("timed 1/x of the size (--rows RVQ rows, the same fraction of the overlap-add frames) and "
                     "scaled linearly by x to the full size")
    if dev.type != "cuda":
        notes.append("Triton not timed: it needs a CUDA GPU; the interpreter (TRITON_INTERPRET=1) is no speed measure")
    return "\n".join(lines + [""] + [f"- {n}" for n in notes])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="codec bench kernels", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=3600.0, help="audio length the sizes stand for (default: an hour)")
    p.add_argument("--rows", type=int, default=None,
                   help=f"RVQ rows actually timed (overlap-add: the same fraction of its frames), times scaled "
                        f"linearly; default all on CUDA, {CPU_ROWS} on a CPU")
    p.add_argument("--repeats", type=int, default=3, help="timed calls per measurement, best kept (default 3)")
    p.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    p.add_argument("--backend", choices=("all", "reference", "triton"), default="all",
                   help="time both (default; Triton only where it runs) or one of them")
    args = p.parse_args(argv)
    if args.seconds <= 0 or args.repeats < 1 or (args.rows is not None and args.rows < 1):
        p.error("--seconds, --rows and --repeats must be positive")
    on_cuda = (args.device or ("cuda" if torch.cuda.is_available() else "cpu")).startswith("cuda")
    if args.backend == "triton" and not on_cuda:
        print("codec bench kernels: Triton needs a CUDA GPU; on a CPU only its interpreter runs, which is no "
              "speed measure (use --backend reference)")
        return 2
    print(run(args.seconds, args.rows, args.repeats, args.device, args.backend))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
