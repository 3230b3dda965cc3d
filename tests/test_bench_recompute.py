"""`gpu-bptt bench --recompute` on a tiny size: it runs, writes what it promises, and its memory
columns show recomputation holding less. No timing is asserted."""
import json

from gpu_bptt.bench import main


def test_recompute_bench_writes_both_modes_and_ratios(tmp_path, capsys):
    md = tmp_path / "table.md"
    rc = main(["--recompute", "--cell", "gru", "--size", "400,2,3,8", "--repeats", "1",
               "--out", str(tmp_path), "--markdown", str(md), "--quiet"])
    assert rc == 0
    data = json.loads((tmp_path / "recompute-gru-numpy.json").read_text())
    (row,) = data["rows"]
    assert row["recompute"]["checkpoint_every"] == 256 and row["full"]["checkpoint_every"] == 400
    assert row["full"]["held"] > 5 * row["recompute"]["held"]
    assert row["ratios"]["held"] == row["full"]["held"] / row["recompute"]["held"]
    assert "full / recompute" in md.read_text() and "| gru | 400, 2, 3, 8 | recompute |" in \
        capsys.readouterr().out
