"""Plots of a report (needs matplotlib): rate-quality curves, a spectrogram comparison of one clip, and the bare
spectrogram image of each clip and codec that the listening page shows."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise RuntimeError("plots need matplotlib: pip install 'codec[eval]'") from None
    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt

    return plt


def rate_quality(summary: dict[str, dict], path: Path, metrics=(("pesq_wb", "PESQ-WB (MOS-LQO)"),
                                                                ("estoi", "ESTOI"))) -> Path:
    """One panel per metric, against payload kbit/s: ours (codec:N) as one line over N, each baseline
    family as points with its own marker, every point labelled with its setting."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(metrics), figsize=(6 * len(metrics), 4.5), squeeze=False)
    families: dict[str, list[tuple[float, float, str]]] = {}
    for ax, (key, label) in zip(axes[0], metrics):
        families.clear()
        for spec, row in summary.items():
            value, rate = row.get(key), row.get("payload_kbps")
            if value is None or rate is None:
                continue
            family, _, setting = spec.partition(":")
            families.setdefault(family, []).append((rate, value, setting))
        rates = [p[0] for pts in families.values() for p in pts]
        xs_all = (min(rates), max(rates)) if rates else (1.0, 1.0)
        markers = iter("osD^vP*X<>")
        for family, points in sorted(families.items(), key=lambda kv: kv[0] != "codec"):
            points.sort()
            xs, ys, _ = zip(*points)
            if family == "codec":
                ax.plot(xs, ys, "-o", color="black", lw=2, label="codec (ours), N codebooks", zorder=3)
            else:
                ax.plot(xs, ys, linestyle="none", marker=next(markers), ms=8, label=family)
            for x, y, name in points:
                ax.annotate(name, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
        ax.set_xscale("log")
        ticks = [t for t in (0.125, 0.25, 0.5, 1, 2, 4, 8, 16, 32) if xs_all[0] / 1.5 <= t <= xs_all[1] * 1.5]
        ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
        ax.set_xticks([], minor=True)
        ax.set_xlabel("kbit/s (payload, measured)")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


DB_RANGE = 80  # dB shown below the reference's peak


def log_spectrogram(wav: np.ndarray) -> np.ndarray:
    """dB magnitude [bins, frames]: 1024-point FFT, hop 240 (10 ms at 24 kHz)."""
    import librosa

    spec = np.abs(librosa.stft(np.asarray(wav, np.float32), n_fft=1024, hop_length=240))
    return 20 * np.log10(np.maximum(spec, 1e-8))


def spectrograms(wavs: list[tuple[str, np.ndarray]], rate: int, path: Path, title: str = "") -> Path:
    """Log-magnitude spectrograms (0 to rate/2, 80 dB range) of the reference and each decoded version,
    stacked with a shared time axis. wavs: (label, [T]) pairs, the reference first."""
    plt = _pyplot()
    fig, axes = plt.subplots(len(wavs), 1, figsize=(10, 1.6 * len(wavs) + 0.6), sharex=True, squeeze=False)
    ref_peak = None
    for ax, (label, wav) in zip(axes[:, 0], wavs):
        db = log_spectrogram(wav)
        ref_peak = db.max() if ref_peak is None else ref_peak  # one colour scale, the reference's
        ax.imshow(db, origin="lower", aspect="auto", cmap="magma", vmin=ref_peak - DB_RANGE, vmax=ref_peak,
                  extent=(0, len(wav) / rate, 0, rate / 2000))
        ax.set_ylabel("kHz")
        ax.set_title(label, fontsize=9, loc="left")
    axes[-1, 0].set_xlabel("seconds")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def spectrogram_image(db: np.ndarray, peak: float, path: Path, size: tuple[int, int] = (360, 160)) -> Path:
    """One spectrogram as a bare JPEG of `size` pixels (no axes: the page that shows it says the scale), low
    frequencies at the bottom, `peak` - 80 dB to `peak` (pass the reference's, so images of one clip compare).
    JPEG at quality 85: a sixth of a PNG's size for this noisy texture, which matters with hundreds of them."""
    plt = _pyplot()
    fig = plt.figure(figsize=(size[0] / 100, size[1] / 100), dpi=100)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.imshow(db, origin="lower", aspect="auto", cmap="magma", vmin=peak - DB_RANGE, vmax=peak)
    ax.set_axis_off()
    fig.savefig(path, dpi=100, format="jpeg", pil_kwargs={"quality": 85})
    plt.close(fig)
    return path
