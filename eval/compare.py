"""`codec compare A B`: two `codec eval` reports on the same clips, clip by clip.

    codec eval ../data/corpus-v2 --codec codec:37 --model runs/x/best --out eval-x
    codec eval ../data/corpus-v2 --codec codec:37 --out eval-shipped
    codec compare eval-shipped eval-x
    codec compare eval-x eval-x --codecs opus:6 codec:37     # two codecs of one report

For each codec both reports scored and each metric: the clips both have, the means in A and in B, B - A and
the standard error of the per-clip differences. Two weights scored on the same clips differ far less from
clip to clip than the clips differ from each other, so the paired error is the one that says whether B is
better; the summary's standard error of each mean is larger (about twice, on 64 clips).
"""
from __future__ import annotations

import json
import math
from pathlib import Path

from codec.errors import InputError

from .run import result_path

DEFAULT_METRICS = ("pesq_wb", "stoi", "mel_distance")


def add_arguments(p) -> None:
    p.add_argument("a", help="a `codec eval` output folder (the baseline)")
    p.add_argument("b", help="another, on the same clips (the candidate)")
    p.add_argument("--metric", action="append", metavar="NAME",
                   help=f"metric to compare (repeatable; default {', '.join(DEFAULT_METRICS)}; names: docs/metrics.md)")
    p.add_argument("--codecs", nargs=2, metavar=("SPEC_A", "SPEC_B"),
                   help="compare A's SPEC_A with B's SPEC_B (A and B may be one report: codec:37 against opus:6)")


def _results(out: Path) -> dict[str, dict[str, dict]]:
    """codec spec -> clip id -> metrics, from OUT/files/<codec>/<clip>.json."""
    folder = Path(out) / "files"
    if not folder.is_dir():
        raise InputError(f"{out}: not a `codec eval` output folder (no files/ in it)")
    found: dict[str, dict[str, dict]] = {}
    for path in sorted(folder.glob("*/*.json")):
        try:
            data = json.loads(path.read_text())
            spec, clip, metrics = data["codec"], data["clip"], data["metrics"]
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise InputError(f"{path}: not a `codec eval` result ({err})") from None
        if result_path(out, spec, clip) == path:  # a stray file under another codec's folder is not its result
            found.setdefault(spec, {})[clip] = metrics
    return found


def paired(a: list[float], b: list[float]) -> tuple[float, float, float, float]:
    """Means of a and b, the mean of b - a and its standard error (nan with fewer than two pairs)."""
    n = len(a)
    diffs = [y - x for x, y in zip(a, b)]
    mean = sum(diffs) / n
    sem = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (n - 1) / n) if n > 1 else math.nan
    return sum(a) / n, sum(b) / n, mean, sem


def compare(out_a: Path, out_b: Path, metrics: tuple[str, ...] = DEFAULT_METRICS,
            codecs: tuple[str, str] | None = None) -> str:
    """The Markdown table `codec compare` prints: every codec both reports scored, or with `codecs` A's
    first against B's second (one row label, "SPEC_A vs SPEC_B")."""
    a, b = _results(out_a), _results(out_b)
    if codecs:
        for out, found, spec in ((out_a, a, codecs[0]), (out_b, b, codecs[1])):
            if spec not in found:
                raise InputError(f"{out}: no results of {spec} (it has {', '.join(sorted(found)) or 'none'})")
        label = f"{codecs[0]} vs {codecs[1]}"
        a, b = {label: a[codecs[0]]}, {label: b[codecs[1]]}
    lines = ["| codec | metric | clips | A | B | B - A | paired standard error |", "|---|---|---:|---:|---:|---:|---:|"]
    for spec in sorted(set(a) & set(b), key=_spec_order):
        for metric in metrics:
            pairs = [(a[spec][clip][metric], b[spec][clip][metric]) for clip in sorted(set(a[spec]) & set(b[spec]))
                     if _finite(a[spec][clip].get(metric)) and _finite(b[spec][clip].get(metric))]
            if not pairs:
                continue
            mean_a, mean_b, diff, sem = paired([p[0] for p in pairs], [p[1] for p in pairs])
            cells = [spec, metric, str(len(pairs)), f"{mean_a:.3f}", f"{mean_b:.3f}", f"{diff:+.3f}", f"{sem:.3f}"]
            lines.append("| " + " | ".join(cells) + " |")
    if len(lines) == 2:
        raise InputError(f"{out_a} and {out_b} share no scored clip of one codec and metric")
    return "\n".join(lines)


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def _spec_order(spec: str):
    """codec:8 before codec:17: by name, then by the number after the colon."""
    name, _, setting = spec.partition(":")
    return (name, float(setting)) if setting.replace(".", "", 1).isdigit() else (name, math.inf, setting)


def run(args) -> int:
    print(compare(Path(args.a), Path(args.b), tuple(args.metric or DEFAULT_METRICS), args.codecs))
    return 0
