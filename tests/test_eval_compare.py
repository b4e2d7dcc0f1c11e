"""`codec compare`: two eval reports, clip by clip."""
from __future__ import annotations

import json
import math

from codec.cli import main
from codec.eval.run import result_path


def _report(out, spec: str, scores: dict[str, dict]) -> None:
    """A report folder as `codec eval` leaves it: one result JSON per (codec, clip)."""
    for clip, metrics in scores.items():
        path = result_path(out, spec, clip)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"clip": clip, "codec": spec, "version": "v", "metrics": metrics}))


def test_paired_difference_and_its_standard_error_known_answer(tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    _report(a, "codec:8", {"c1": {"pesq_wb": 2.0}, "c2": {"pesq_wb": 3.0}, "c3": {"pesq_wb": 2.5},
                           "only-a": {"pesq_wb": 1.0}})
    _report(b, "codec:8", {"c1": {"pesq_wb": 2.1}, "c2": {"pesq_wb": 3.2}, "c3": {"pesq_wb": 2.5},
                           "only-b": {"pesq_wb": 4.0}})
    _report(a, "codec:17", {"c1": {"pesq_wb": 2.0, "stoi": float("nan")}, "c2": {"pesq_wb": 2.0, "stoi": 0.9}})
    _report(b, "codec:17", {"c1": {"pesq_wb": 2.0, "stoi": 0.8}, "c2": {"pesq_wb": 2.0, "stoi": 0.95}})
    _report(b, "opus:6", {"c1": {"pesq_wb": 2.2}})  # in B only: no row
    assert main(["compare", str(a), str(b), "--metric", "pesq_wb", "--metric", "stoi"]) == 0
    rows = [line.split("|")[1:-1] for line in capsys.readouterr().out.splitlines()[2:]]
    cells = [[c.strip() for c in row] for row in rows]
    assert [row[:3] for row in cells] == [["codec:8", "pesq_wb", "3"], ["codec:17", "pesq_wb", "2"],
                                          ["codec:17", "stoi", "1"]]
    # differences 0.1, 0.2, 0.0: mean 0.1, standard deviation 0.1, standard error 0.1 / sqrt(3)
    assert [float(x) for x in cells[0][3:6]] == [2.5, 2.6, 0.1]
    assert math.isclose(float(cells[0][6]), 0.1 / math.sqrt(3), abs_tol=5e-4)
    assert float(cells[1][5]) == 0.0 and float(cells[1][6]) == 0.0
    assert cells[2][5] == "+0.050" and cells[2][6] == "nan"  # the nan clip is left out; one pair has no error


def test_a_folder_that_is_no_report_is_named(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["compare", str(tmp_path / "empty"), str(tmp_path / "empty")]) == 3
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "empty: not a `codec eval` output folder" in err
    a = tmp_path / "a"
    _report(a, "codec:8", {"c1": {"pesq_wb": 2.0}})
    result_path(a, "codec:8", "broken").write_text("{")
    assert main(["compare", str(a), str(a)]) == 3
    assert "broken.json: not a `codec eval` result" in capsys.readouterr().err


def test_two_codecs_of_one_report(tmp_path, capsys):
    a = tmp_path / "a"
    _report(a, "opus:6", {"c1": {"pesq_wb": 2.0}, "c2": {"pesq_wb": 2.5}})
    _report(a, "codec:37", {"c1": {"pesq_wb": 2.4}, "c2": {"pesq_wb": 2.7}})
    assert main(["compare", str(a), str(a), "--codecs", "opus:6", "codec:37", "--metric", "pesq_wb"]) == 0
    row = [c.strip() for c in capsys.readouterr().out.splitlines()[2].split("|")[1:-1]]
    assert row[:6] == ["opus:6 vs codec:37", "pesq_wb", "2", "2.250", "2.550", "+0.300"]
    assert math.isclose(float(row[6]), 0.1, abs_tol=5e-4)  # differences 0.4 and 0.2
    assert main(["compare", str(a), str(a), "--codecs", "opus:8", "codec:37"]) == 3
    assert "no results of opus:8 (it has codec:37, opus:6)" in capsys.readouterr().err
