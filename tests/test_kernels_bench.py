"""`codec bench kernels` end to end on a tiny size, through the command line.

Timing itself is not asserted (the machine may be busy); the options reaching the kernels bench and the
table's own arithmetic are. The floor formulas are checked in tests/test_kernels.py.
"""
from __future__ import annotations

import re

from codec.cli import main as cli_main
from codec.kernels import bench


def test_codec_bench_kernels_prints_its_table_on_a_cpu(capsys):
    # The options must reach the kernels bench untouched.
    assert cli_main(["bench", "kernels", "--seconds", "2", "--repeats", "1", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "2 s of audio" in out and "best of 1" in out  # --seconds and --repeats were not swallowed
    assert "Triton not timed" in out and "CUDA GPU" in out
    rows = [line.split("|")[1:-1] for line in out.splitlines() if line.startswith("| ") and "---" not in line]
    header, rows = [c.strip() for c in rows[0]], [[c.strip() for c in r] for r in rows[1:]]
    col = {name: i for i, name in enumerate(header)}
    timed = [r for r in rows if r[col["backend"]] == "reference"]
    assert {r[col["kernel"]] for r in timed} >= {"rvq_encode", "rvq_decode", "overlap_add"}
    for r in timed:
        ms, floor_ms, ratio = (float(re.sub(",", "", r[col[k]])) for k in ("time ms", "floor ms", "measured / floor"))
        assert ms > 0 and floor_ms > 0
        assert abs(ratio - ms / floor_ms) <= 0.06 * ratio + 0.1  # printed values are rounded
    assert all(r[col["time ms"]].startswith("—") for r in rows if r[col["backend"]] == "triton")


def test_forcing_triton_on_a_cpu_says_why_and_fails(capsys):
    assert cli_main(["bench", "kernels", "--backend", "triton", "--device", "cpu"]) == 2
    assert "needs a CUDA GPU" in capsys.readouterr().out


def test_agreement_reports_code_rows_and_relative_error():
    import torch

    codes = torch.zeros(4, 3, dtype=torch.long)
    other = codes.clone()
    other[1, 2] = 5
    assert bench.agreement("rvq_encode", other, codes) == "75.000 % rows equal"
    want = torch.tensor([[2.0, -4.0]])
    assert bench.agreement("overlap_add", want + torch.tensor([[0.0, 0.004]]), want) == "max error 1.0e-03 of max"
    assert bench.agreement("overlap_add_stream", (want, want), (want, want)) == "max error 0.0e+00 of max"
