"""The listening report: OUT/report.html, one self-contained page to hear and see every codec side by side.

The page holds the summary table (sortable by any column), the rate-quality plot, then one row per listened clip:
the reference and each codec as an <audio> player with its spectrogram and that clip's metrics, and a selector
that shows one codec family only. Audio stays in OUT/audio/ as FLAC and images in OUT/spectrograms/, linked by
relative paths, so the folder opens offline and a long run does not make one huge page. The page skeleton is
listening.html (string.Template); the sort and the selector are a few lines of plain JavaScript in it.
"""
from __future__ import annotations

import html
import json
from pathlib import Path
from string import Template
from urllib.parse import quote

from .clips import RATE, Clip, spread
from .summary import HEADERS, LEGEND, not_computable, table_rows
from .run import audio_path, read_flac, result_path, slug

TEMPLATE = Path(__file__).with_name("listening.html")
PAGE = "report.html"


def listen_clips(clips: list[Clip], max_listen: int) -> list[Clip]:
    """The clips that get players: at most max_listen, evenly spread over the set (0: none)."""
    return spread(clips, max_listen) if max_listen > 0 else []


def _family(spec: str) -> str:
    return spec.partition(":")[0]


def _url(path: Path, out: Path) -> str:
    return quote(path.relative_to(out).as_posix())


def _number(text: str) -> str:
    """A table cell's value for sorting: its leading number, or "" (n/a and empty cells sort last)."""
    try:
        return repr(float(text.split()[0]))
    except (IndexError, ValueError):
        return ""


def _summary_table(summary: dict[str, dict], columns: list[str]) -> str:
    head, body = table_rows(summary, columns)
    ths = "".join(f'<th scope="col" title="sort">{html.escape(h)}</th>' for h in head)
    rows = []
    for spec, cells in zip(summary, body):
        tds = [f"<td>{html.escape(cells[0])}</td>"]  # the codec name: no data-v, so it sorts as text
        tds += [f'<td data-v="{_number(c)}">{html.escape(c)}</td>' for c in cells[1:]]
        rows.append(f'<tr data-family="{html.escape(_family(spec))}">{"".join(tds)}</tr>')
    return f'<table id="summary"><thead><tr>{ths}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def _metric_rows(result: dict, columns: list[str]) -> str:
    kbps = 8 * result["payload_bytes"] / result["seconds"] / 1000
    rows = [("payload kbit/s", f"{kbps:.3f}", ""), ("delay ms", f"{result['delay_samples'] / RATE * 1000:.1f}", "")]
    for col in columns:
        value = result["metrics"].get(col, "n/a: not computed")
        if isinstance(value, (int, float)):
            rows.append((HEADERS.get(col, col), f"{value:.{2 if col == 'si_sdr' else 3}f}", ""))
        else:  # "n/a: reason": the reason goes in a tooltip
            rows.append((HEADERS.get(col, col), "n/a", str(value).removeprefix("n/a: ")))
    return "".join(f'<tr><th scope="row">{html.escape(k)}</th><td title="{html.escape(why)}">{v}</td></tr>'
                   for k, v, why in rows)


def _card(out: Path, label: str, family: str | None, audio: Path, image: Path | None, body: str) -> str:
    attr = f' data-family="{html.escape(family)}"' if family else ""  # the reference shows under every family
    img = (f'<img src="{_url(image, out)}" width="360" height="160" alt="spectrogram: {html.escape(label)}">'
           if image is not None else "")
    player = (f'<audio controls preload="metadata" src="{_url(audio, out)}"></audio>' if audio.is_file()
              else '<p class="missing">no audio</p>')
    return f'<figure class="card"{attr}><figcaption>{html.escape(label)}</figcaption>{player}{img}{body}</figure>'


def _clip_row(out: Path, clip: Clip, specs: list[str], columns: list[str], images: bool) -> str:
    """One clip: the reference card, then a card per codec (its audio, spectrogram and metrics on this clip)."""
    ref_path = audio_path(out, "reference", clip.id)
    ref = read_flac(ref_path)
    pictures = {}
    if images:
        from .plots import log_spectrogram, spectrogram_image

        ref_db = log_spectrogram(ref)
        peak = float(ref_db.max())  # every image of the clip on the reference's colour scale
        for name, path in [("reference", ref_path)] + [(slug(s), audio_path(out, slug(s), clip.id)) for s in specs]:
            if path.is_file():
                db = ref_db if name == "reference" else log_spectrogram(read_flac(path))
                image = out / "spectrograms" / name / f"{clip.id}.jpg"
                image.parent.mkdir(parents=True, exist_ok=True)
                pictures[name] = spectrogram_image(db, peak, image)
    cards = [_card(out, "reference", None, ref_path, pictures.get("reference"), "")]
    for spec in specs:
        path = result_path(out, spec, clip.id)
        if path.is_file():
            body = f'<table class="metrics">{_metric_rows(json.loads(path.read_text()), columns)}</table>'
        else:
            body = '<p class="missing">no result for this clip (see the run\'s error messages)</p>'
        cards.append(_card(out, spec, _family(spec), audio_path(out, slug(spec), clip.id), pictures.get(slug(spec)),
                           body))
    seconds = len(ref) / RATE
    return (f'<section class="clip" id="clip-{html.escape(clip.id)}" data-clip="{html.escape(clip.id)}">'
            f'<h3>{html.escape(clip.id)}</h3><p class="source">{html.escape(clip.source or clip.id)}, '
            f'{seconds:.2f} s</p><div class="cards">{"".join(cards)}</div></section>')


def write_page(out: Path, summary: dict[str, dict], clips: list[Clip], listen: list[Clip], columns: list[str],
               title: str, images: bool = True) -> Path:
    """Write OUT/report.html from the finished results; with `images`, also the spectrograms it shows, and it
    links OUT/rate_quality.png (without, a stale plot of an earlier run is not shown)."""
    out = Path(out)
    specs = list(summary)
    families = list(dict.fromkeys(_family(s) for s in specs))
    notes = not_computable(summary, columns)
    notes_html = f"<p>{html.escape(LEGEND)}</p>"
    if notes:
        notes_html += ("<p>Not computable (never averaged in):</p><ul>"
                       + "".join(f"<li>{html.escape(n)}</li>" for n in notes) + "</ul>")
    plot = out / "rate_quality.png"
    plots = (f'<img src="{_url(plot, out)}" alt="PESQ-WB and ESTOI against payload kbit/s" class="plot">'
             if images and plot.is_file() else "<p>No plot in this run (--no-plots, or no matplotlib).</p>")
    heard = [c for c in listen if audio_path(out, "reference", c.id).is_file()]  # unreadable clips drop out
    if heard:
        note = (f"{len(heard)} of {len(clips)} clips, chosen evenly through the set (--max-listen). "
                "Audio: 16-bit FLAC, decoded and aligned to the reference. ")
        note += ("Spectrograms: 0 to 12 kHz from bottom to top, 80 dB below the reference's peak, one colour scale "
                 "per clip." if images else "")
    elif listen:
        note = "None of the clips chosen to listen to could be read (see the run's error messages)."
    else:
        note = "No clip to listen to in this run (--max-listen 0)."
    page = Template(TEMPLATE.read_text()).substitute(
        title=html.escape(title),
        family_options="".join(f'<option value="{html.escape(f)}">{html.escape(f)}</option>' for f in families),
        summary=_summary_table(summary, columns), notes=notes_html, plots=plots, listen_note=html.escape(note),
        clips="\n".join(_clip_row(out, c, specs, columns, images) for c in heard))
    path = out / PAGE
    path.write_text(page)
    return path

