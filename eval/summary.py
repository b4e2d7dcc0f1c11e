"""The report's numbers: per-codec means over the clips' results, and the table as Markdown and CSV."""
from __future__ import annotations

import csv
import io
import json
from collections import Counter
from pathlib import Path

import numpy as np

from .bitrate import codebook_stats
from .clips import RATE, Clip
from .run import result_path, slug


HEADERS = {"pesq_wb": "PESQ-WB", "pesq_nb": "PESQ-NB", "stoi": "STOI", "estoi": "ESTOI", "si_sdr": "SI-SDR dB",
           "mel_distance": "mel dist", "stft_distance": "STFT dist", "speaker_sim": "spk sim",
           "dnsmos_ovrl": "DNSMOS", "dnsmos_sig": "DNSMOS sig", "dnsmos_bak": "DNSMOS bak", "visqol": "ViSQOL",
           "wer": "WER"}


def summarize(out: Path, specs: list[str], clips: list[Clip], columns: list[str]) -> dict[str, dict]:
    """Per codec: bitrates (pooled over clips: total bits / total seconds), the mean of each metric over
    the clips where it was computable (with that count, the standard error, and why the others were not),
    delay, and codebook statistics for token codecs."""
    summary: dict[str, dict] = {}
    for spec in specs:
        rows = []
        for clip in clips:
            path = result_path(out, spec, clip.id)
            if path.is_file():
                rows.append(json.loads(path.read_text()))
        if not rows:
            continue
        seconds = sum(r["seconds"] for r in rows)
        row: dict = {
            "files": len(rows), "seconds": round(seconds, 3),
            "nominal_kbps": rows[0]["nominal_bps"] / 1000,
            "measured_kbps": 8 * sum(r["bytes"] for r in rows) / seconds / 1000,
            "payload_kbps": 8 * sum(r["payload_bytes"] for r in rows) / seconds / 1000,
            "median_delay_ms": float(np.median([r["delay_samples"] for r in rows])) / RATE * 1000,
        }
        for col in columns:
            values = [r["metrics"][col] for r in rows if isinstance(r["metrics"].get(col), (int, float))]
            row[col] = float(np.mean(values)) if values else None
            row[f"{col}_n"] = len(values)
            row[f"{col}_sem"] = float(np.std(values, ddof=1) / np.sqrt(len(values))) if len(values) > 1 else None
            reasons = Counter(str(r["metrics"].get(col, "n/a: not computed"))[5:] for r in rows
                              if not isinstance(r["metrics"].get(col), (int, float)))
            if reasons:
                row[f"{col}_not_computable"] = dict(reasons)
        if "codebook_size" in rows[0]:
            tokens = [np.load(out / "tokens" / slug(spec) / f"{r['clip']}.npy") for r in rows]
            stats = codebook_stats(tokens, rows[0]["codebook_size"], rows[0]["frame_rate"])
            row["entropy_kbps"] = stats["entropy_bitrate"] / 1000
            row["codebooks"] = stats
        summary[spec] = row
    return summary


def _cell(row: dict, col: str, digits: int = 3) -> str:
    v = row.get(col)
    if v is None:
        return "n/a"
    text = f"{v:.{digits}f}"
    n = row.get(f"{col}_n")
    return text if n is None or n == row["files"] else f"{text} ({n})"


def table_rows(summary: dict[str, dict], columns: list[str]) -> tuple[list[str], list[list[str]]]:
    head = ["codec", "nominal kbit/s", "measured kbit/s", "payload kbit/s", "entropy kbit/s", "delay ms"]
    head += [HEADERS.get(c, c) for c in columns] + ["files"]
    body = []
    for spec, row in summary.items():
        body.append([spec, f"{row['nominal_kbps']:g}", f"{row['measured_kbps']:.3f}", f"{row['payload_kbps']:.3f}",
                     f"{row['entropy_kbps']:.3f}" if "entropy_kbps" in row else "",
                     f"{row['median_delay_ms']:.1f}"] + [_cell(row, c, 2 if c == "si_sdr" else 3) for c in columns]
                    + [str(row["files"])])
    return head, body


LEGEND = ("Means over files; (n) after a value: the number of files where it was computable, when fewer than all. "
          "measured = whole file or stream, payload = codec frames without container or header, entropy = what an "
          "ideal per-codebook entropy coder would reach (docs/metrics.md).")


def not_computable(summary: dict[str, dict], columns: list[str]) -> list[str]:
    """One line per (codec, metric, reason) whose files were left out of the mean."""
    return [f"{spec} {HEADERS.get(col, col)}: {n} file(s) not computable: {reason}"
            for spec, row in summary.items() for col in columns
            for reason, n in row.get(f"{col}_not_computable", {}).items()]


def markdown(summary: dict[str, dict], columns: list[str], title: str) -> str:
    head, body = table_rows(summary, columns)
    lines = [f"**{title}**", "", "| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    lines += ["| " + " | ".join(r) + " |" for r in body]
    lines += ["", LEGEND]
    notes = not_computable(summary, columns)
    if notes:
        lines += ["", "Not computable (never averaged in):", *[f"- {n}" for n in notes]]
    return "\n".join(lines) + "\n"


def to_csv(summary: dict[str, dict], columns: list[str]) -> str:
    fields = ["codec", "files", "seconds", "nominal_kbps", "measured_kbps", "payload_kbps", "entropy_kbps",
              "median_delay_ms"] + [f"{c}{s}" for c in columns for s in ("", "_n", "_sem")]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fields, extrasaction="ignore")
    writer.writeheader()
    for spec, row in summary.items():
        writer.writerow({"codec": spec, **{k: v for k, v in row.items() if not isinstance(v, dict)}})
    return buf.getvalue()
