"""codec eval's listening report (OUT/report.html): what it links, --max-listen, and the page in headless Chromium."""
from __future__ import annotations

import json
import re
import shutil
import textwrap

import pytest
import soundfile as sf
import soxr

from codec.cli import main as cli_main


def main(args: list[str]) -> int:
    """`codec eval ARGS`."""
    return cli_main(["eval", *args])

RATE = 24000
SECONDS = {"a": 1.5, "b": 2.0}  # two clips of different lengths: each player must show its own

# Two codec families with known quality: lossless 16-bit PCM (PESQ-WB at its ceiling) and 4-bit PCM (poor).
PLUGIN = textwrap.dedent('''
    import numpy as np
    from codec.eval import register

    class Pcm:
        sample_rate = 24000

        def __init__(self, setting):
            self.bits = int(setting)
            self.name = f"{'pcm' if self.bits == 16 else 'bits'}:{setting}"

        def encode(self, wav):
            q = 2 ** (self.bits - 1)
            return (np.clip(np.round(wav * q), -q, q - 1)).astype("<i2").tobytes()

        def decode(self, data, length):
            return np.frombuffer(data, "<i2") / 2 ** (self.bits - 1)

        def bitrate(self):
            return float(self.bits * self.sample_rate)

    register("pcm", Pcm)
    register("bits", Pcm)
''')
SPECS = ["pcm:16", "bits:4"]


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """A finished run: two short speech clips, two codecs. Returns (its output folder, the run's arguments)."""
    root = tmp_path_factory.mktemp("page")
    x, rate = sf.read("tests/data/speech.flac", dtype="float64")
    x = soxr.resample(x, rate, RATE)
    (root / "clips").mkdir()
    sf.write(root / "clips" / "a.wav", x[: int(SECONDS["a"] * RATE)], RATE)
    sf.write(root / "clips" / "b.flac", x[RATE: RATE + int(SECONDS["b"] * RATE)], RATE)
    (root / "plugin.py").write_text(PLUGIN)
    args = [str(root / "clips"), "--plugin", str(root / "plugin.py"), "-q"]
    for spec in SPECS:
        args += ["--codec", spec]
    assert main(args + ["--out", str(root / "out")]) == 0
    return root / "out", args


def _audio_sources(page: str) -> list[str]:
    return re.findall(r'<audio [^>]*src="([^"]+)"', page)


def test_page_links_audio_and_spectrograms_of_every_clip_and_codec(report):
    out, _ = report
    page = (out / "report.html").read_text()
    sources = _audio_sources(page)
    assert sorted(sources) == sorted(f"audio/{name}/{clip}.flac" for clip in SECONDS
                                     for name in ("reference", "pcm_16", "bits_4"))
    for src in sources:
        info = sf.info(out / src)
        assert (info.format, info.subtype, info.samplerate) == ("FLAC", "PCM_16", RATE)
        assert info.frames == int(SECONDS[src.split("/")[-1][:-5]] * RATE)  # aligned: the reference's length
    images = re.findall(r'<img src="([^"]+)"', page)
    assert "rate_quality.png" in images and len(images) == 1 + len(sources)
    assert all((out / src).stat().st_size > 0 for src in images)
    assert "http" not in page  # nothing from the network
    assert re.findall(r'<tr data-family="(\w+)">', page) == ["pcm", "bits"]


def test_max_listen_caps_the_clips_with_players(report, tmp_path):
    out, args = report
    shutil.copytree(out, tmp_path / "out")  # reruns reuse the finished results: only the page changes
    assert main(args + ["--out", str(tmp_path / "out"), "--max-listen", "1"]) == 0
    sources = _audio_sources((tmp_path / "out" / "report.html").read_text())
    assert {s.split("/")[-1] for s in sources} == {"a.flac"}  # one clip, the first of the set
    assert main(args + ["--out", str(tmp_path / "out"), "--max-listen", "0"]) == 0
    page = (tmp_path / "out" / "report.html").read_text()
    assert _audio_sources(page) == [] and "--max-listen 0" in page
    assert "<td>pcm:16</td>" in page  # the table is still there
    assert main(args + ["--out", str(tmp_path / "out"), "--max-listen", "-1"]) == 2


def _browser():
    """Headless Chromium through chromedriver, with the console log kept; skips when either is missing."""
    webdriver = pytest.importorskip("selenium.webdriver", reason="the browser test needs selenium: "
                                    "pip install -e '.[test]'")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not chromium or not driver:
        pytest.skip("no headless browser here: apt-get install chromium chromium-driver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1280,1400"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(driver), options=options)  # an explicit driver: nothing downloaded


# Resolves with every <audio>'s clip, duration and error once its metadata has loaded (or failed to).
AUDIO_STATE = """
const done = arguments[arguments.length - 1];
Promise.all(Array.from(document.querySelectorAll("audio"), (a) => new Promise((resolve) => {
  const report = () => resolve({clip: a.closest("[data-clip]").dataset.clip, src: a.getAttribute("src"),
                                duration: a.duration, error: a.error ? a.error.code : null});
  if (a.readyState >= 1 || a.error) report();
  else { a.addEventListener("loadedmetadata", report); a.addEventListener("error", report); }
}))).then(done);
"""


def test_report_in_headless_chromium(report, tmp_path):
    out, _ = report
    browser = _browser()
    try:
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support.ui import Select

        browser.set_script_timeout(30)
        browser.get((out / "report.html").resolve().as_uri())
        errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
        assert errors == []  # no script error and no missing file (a failed load is logged as SEVERE)

        audio = browser.execute_async_script(AUDIO_STATE)
        assert len(audio) == len(SECONDS) * (1 + len(SPECS))
        for a in audio:
            assert a["error"] is None, a
            assert a["duration"] == pytest.approx(SECONDS[a["clip"]], abs=1e-3), a
        assert browser.execute_script(
            "return Array.from(document.images, (i) => i.complete && i.naturalWidth > 0)") == [True] * (1 + len(audio))

        # Sorting by PESQ-WB: ascending (4-bit first), then descending, as summary.json orders them.
        pesq = {spec: row["pesq_wb"] for spec, row in json.loads((out / "summary.json").read_text())["codecs"].items()}
        header = next(th for th in browser.find_elements(By.CSS_SELECTOR, "#summary th") if th.text == "PESQ-WB")

        def codecs_in_table() -> list[str]:
            return [td.text for td in browser.find_elements(By.CSS_SELECTOR, "#summary tbody td:first-child")]

        assert codecs_in_table() == SPECS
        header.click()
        assert codecs_in_table() == sorted(pesq, key=pesq.get) == ["bits:4", "pcm:16"]
        header.click()
        assert codecs_in_table() == sorted(pesq, key=pesq.get, reverse=True)

        # One family: its cards and table row stay, the reference stays, the other family hides.
        Select(browser.find_element(By.ID, "family")).select_by_value("bits")
        shown = [f.find_element(By.TAG_NAME, "figcaption").text
                 for f in browser.find_elements(By.CSS_SELECTOR, "figure") if f.is_displayed()]
        assert shown == ["reference", "bits:4"] * len(SECONDS)
        assert [r.text.split()[0] for r in browser.find_elements(By.CSS_SELECTOR, "#summary tbody tr")
                if r.is_displayed()] == ["bits:4"]

        shot = tmp_path / "report.png"
        assert browser.save_screenshot(str(shot))
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000

        browser.execute_script("console.error('probe')")  # the console check above can see errors at all
        assert any("probe" in e["message"] for e in browser.get_log("browser"))
    finally:
        browser.quit()


def test_sort_key_of_table_cells():
    from codec.eval.listening import _number

    # a value with its count sorts by the value; n/a and empty cells get no value (they sort last)
    assert [_number(c) for c in ("4.644", "3.100 (2)", "n/a", "", "0.0")] == ["4.644", "3.1", "", "", "0.0"]
