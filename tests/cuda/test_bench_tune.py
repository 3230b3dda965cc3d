"""The auto-rule data (`gpu-bptt bench --tune`) on the emulator backend at tiny sizes: every
variant is checked and timed, auto's pick is named, a variant past its limit is "not applicable"
rather than a failure, and a long run saves its finished sizes. No timing is asserted."""
from __future__ import annotations

import json

from cuda_helpers import require_emulator
from gpu_bptt.bench import Size, run_bench
from gpu_bptt.bench import tune
from gpu_bptt.bench.report import table, write_json

FAST = dict(warmup=1, repeats=2, budget_s=1.0, pause_s=0.0)
LABELS = ["step,v1", "step,v2", "step,v3", "step,v4", "persistent,v1", "persistent,v2", "auto"]


def _emulator():
    require_emulator()
    from gpu_bptt.backends.emulator import EmulatorBackend

    return EmulatorBackend


def test_tune_times_every_variant_and_names_autos_pick():
    Emu = _emulator()
    sizes = [Size(3, 1, 4, 8), Size(3, 5, 4, 40)]
    contenders = tune.tune_contenders(Emu, device="cpu")
    assert [c.name for c in contenders] == [f"cuda[{x}]" for x in LABELS]
    # each variant is built through the constructor: its backend runs the version it is named for
    built = [Emu(**c.options["backend_options"]) for c in contenders]
    assert [(b.gemm, b.step, b.persist) for b in built] == (
        [("cublas", v, "v2") for v in ("v1", "v2", "v3", "v4")]
        + [("cublas", "auto", v) for v in ("v1", "v2")] + [("cublas", "auto", "v2")])
    run = run_bench(sizes, contenders, name="tune", **FAST)
    rows = tune.summarize(run, Emu(step="auto"))
    assert [r["size"] for r in rows] == [s.as_dict() for s in sizes]
    for block, row in zip(run["sizes"], rows):
        for rec in block["results"]:
            assert rec["check"]["ok"], (rec["contender"], rec["check"])
        assert sorted(row["times_s"]) == sorted(LABELS)
        assert row["best"] in LABELS[:-1] and row["best_s"] == min(
            t for k, t in row["times_s"].items() if k != "auto")
        assert row["auto_picks"] in LABELS[:-1]
        assert row["auto_loss"] == row["times_s"]["auto"] / row["best_s"] - 1
    text = tune.grid(rows)
    assert text.splitlines()[1].split()[-2:] == ["1", "5"]  # the B columns
    assert tune.short("step,v3") == "s3" and tune.short("persistent,v2") == "p2"
    assert text.splitlines()[2].split()[1].lstrip("*")[:2] == tune.short(rows[0]["best"])
    assert "auto within 10% of the fastest at" in text


def test_auto_pick_follows_the_backend_rules():
    Emu = _emulator()
    bk = Emu(step="auto")
    # the emulated device fits the persistent kernels at B <= 32 and small H ...
    assert tune.auto_choice(bk, Size(4, 8, 4, 16), "float32") == f"persistent,{bk.persist}"
    # ... and above the batch limit auto steps, with the version the step rule gives
    big = Size(4, 64, 4, 16)
    assert tune.auto_choice(bk, big, "float32") == f"step,{bk.step_version(64, 16)}"


def test_a_variant_past_its_limit_is_not_applicable(tmp_path):
    Emu = _emulator()
    persistent = [c for c in tune.tune_contenders(Emu, device="cpu") if "persistent" in c.name]
    # H = 256 needs (64 + 1) * 256 * 4 bytes of shared memory per block on the 4 emulated
    # multiprocessors: past the 48 KB the emulated device gives
    run = run_bench([Size(2, 1, 2, 256)], persistent, **FAST)
    rec = run["sizes"][0]["results"][0]
    assert rec["not_applicable"] and "not applicable" in rec["error"] and "times" not in rec
    assert "ERROR" not in table(run) and "not applicable" in table(run)


def test_partial_runs_are_saved_after_each_size(tmp_path):
    from gpu_bptt.backends import get_backend
    from gpu_bptt.bench.contenders import Ours

    seen = []

    def save(partial):
        seen.append((len(partial["sizes"]), partial["complete"]))
        write_json(partial, tmp_path)

    sizes = [Size(2, 1, 2, 3), Size(2, 2, 2, 3), Size(3, 1, 2, 3)]
    run = run_bench(sizes, [Ours("numpy", lambda: get_backend("numpy"))], on_size=save, **FAST)
    assert seen == [(1, False), (2, False)] and run["complete"]
    (path,) = tmp_path.glob("*.json")  # one file, rewritten: the same run keeps its name
    assert len(json.loads(path.read_text())["sizes"]) == 2


def test_cli_tune_without_the_cuda_backend_says_why(monkeypatch, capsys):
    import gpu_bptt.backends as backends
    from gpu_bptt.bench import main

    monkeypatch.setattr(backends, "available_backends",
                        lambda: {"numpy": None, "cuda": "CuPy sees no CUDA device"})
    assert main(["--tune", "--quiet"]) == 2
    assert "--tune needs the cuda backend: CuPy sees no CUDA device" in capsys.readouterr().err
