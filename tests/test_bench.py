"""Smoke test of the benchmark machinery on tiny sizes: it runs, records what it promises, and
refuses to time a contender whose results are wrong. No timing is asserted."""
import json

import numpy as np
import pytest

from gpu_bptt.bench import PRESETS, Size, main, parse_size, run_bench
from gpu_bptt.bench.contenders import Ours, XpLoop, discover
from gpu_bptt.bench.report import markdown, table, write_json
from gpu_bptt.backends import get_backend

TINY = PRESETS["tiny"][1]
FAST = dict(warmup=1, repeats=2, budget_s=1.0, pause_s=0.0)


class WrongDV(XpLoop):
    """The naive loop with dV transposed (a classic slip): the check must reject it."""

    def __init__(self):
        super().__init__("numpy")
        self.name = "wrong-dV"

    def outputs(self):
        out = super().outputs()
        out["dV"] = out["dV"].T.copy()
        return out


def numpy_contender():
    return Ours("numpy", lambda: get_backend("numpy"))


def test_run_records_times_ratios_and_check(tmp_path):
    run = run_bench(TINY, [numpy_contender(), XpLoop("numpy")], name="tiny", **FAST)
    path = write_json(run, tmp_path)
    data = json.loads(path.read_text())
    m = data["machine"]
    for key in ("date", "commit", "cpu", "cpu_count", "blas", "versions", "env"):
        assert key in m, key
    assert m["versions"]["numpy"] == np.__version__
    assert data["dtype"] == "float32" and set(data["flop_count"]) == {"fwd", "bwd", "fwdbwd"}
    assert [b["size"] for b in data["sizes"]] == [s.as_dict() for s in TINY]
    for block in data["sizes"]:
        assert block["machine"]["gemm_gflops"] > 0
        assert [r["contender"] for r in block["results"]] == ["numpy", "numpy-loop"]
        for rec in block["results"]:
            assert rec["check"]["ok"], rec["check"]
            assert set(rec["check"]["errors"]) == {"h", "dx", "dW", "dV", "db", "dh0"}
            for phase in ("fwd", "bwd", "fwdbwd"):
                t = rec["times"][phase]
                assert t["repeats"] >= 2 and t["median_s"] > 0 and len(t["samples_s"]) == t["repeats"]
                assert rec["gflops"][phase] > 0 and rec["ratios"][f"gemm_{phase}"] > 0
            assert "speedup_fwdbwd" not in rec["ratios"]  # no torch-cpu baseline in this run
            assert rec["peak_bytes"] > 0  # tracemalloc sees NumPy's buffers
    assert "numpy-loop" in table(run) and "numpy-loop" in markdown(run)


def test_rounds_pool_their_samples():
    run = run_bench(TINY[:1], [numpy_contender()], rounds=2, **FAST)
    assert run["rounds"] == 2
    t = run["sizes"][0]["results"][0]["times"]["fwd"]
    assert t["repeats"] == len(t["samples_s"]) >= 4


def test_wrong_contender_is_rejected_and_not_timed():
    run = run_bench(TINY[:1], [numpy_contender(), WrongDV()], **FAST)
    good, bad = run["sizes"][0]["results"]
    assert good["check"]["ok"] and "times" in good
    assert not bad["check"]["ok"] and bad["check"]["worst"] == "dV"
    assert bad["check"]["errors"]["dV"] > bad["check"]["tolerance"]
    assert "times" not in bad
    assert "REJECTED: dV" in table(run)


def test_a_contender_that_raises_is_reported_not_fatal():
    class Broken(XpLoop):
        def setup(self, problem):
            raise ValueError("too large for this algorithm")

    c = Broken("numpy")
    run = run_bench(TINY[:1], [c], **FAST)
    rec = run["sizes"][0]["results"][0]
    assert "too large" in rec["error"] and not rec["check"]["ok"]
    assert "ERROR" in table(run)


def test_cli_writes_json_and_lists_contenders(tmp_path, capsys):
    assert main(["--preset", "tiny", "--contenders", "numpy", "--repeats", "2", "--warmup", "1",
                 "--pause", "0", "--no-plot", "--quiet", "--out", str(tmp_path),
                 "--markdown", str(tmp_path / "t.md")]) == 0
    out = capsys.readouterr().out
    assert "T=5 B=3 I=4 H=6" in out and "numpy" in out
    (path,) = tmp_path.glob("elman-tiny-*.json")
    assert json.loads(path.read_text())["contenders"] == ["numpy"]
    assert "| T=5 B=3 I=4 H=6 | numpy |" in (tmp_path / "t.md").read_text()
    assert main(["--list"]) == 0
    assert "numpy" in capsys.readouterr().out


@pytest.mark.parametrize("args, message", [
    (["--repeats", "0"], "--repeats: must be >= 1, got 0"),
    (["--rounds", "0"], "--rounds: must be >= 1, got 0"),
    (["--warmup", "-1"], "--warmup: must be >= 0, got -1"),
    (["--budget", "0"], "--budget: must be > 0, got 0.0"),
    (["--pause", "-1"], "--pause: must be >= 0, got -1.0"),
    (["--out", "{file}"], "--out {file}: is a file, not a folder"),
    (["--out", "{file}/sub"], "--out {file}/sub: cannot create the folder: Not a directory"),
    (["--markdown", "{dir}"], "--markdown {dir}: is a folder, not a file"),
])
def test_cli_refuses_bad_options_with_one_line(args, message, tmp_path, capsys):
    where = {"file": tmp_path / "a-file", "dir": tmp_path}
    where["file"].write_text("x")
    args = [a.format(**where) for a in args]
    out = [] if "--out" in args else ["--out", str(tmp_path / "out")]
    assert main(["--preset", "tiny", "--contenders", "numpy", "--quiet", "--no-plot", *out, *args]) == 2
    assert capsys.readouterr().err.splitlines() == ["gpu-bptt bench: error: " + message.format(**where)]
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("size", ["0,1,1,1", "1,2,3", "a,b,c,d"])
def test_a_bad_size_says_what_a_size_is(size, capsys):
    with pytest.raises(SystemExit) as e:
        main(["--size", size, "--no-json"])
    assert e.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1].endswith(
        f" bench: error: argument --size: expected four positive integers T,B,I,H, got {size!r}")


def test_discovery_never_needs_cupy():
    found, skipped = discover()
    names = [c.name for c in found]
    assert names[0] == "numpy"
    if not any(n.startswith("cuda[") for n in names):
        assert "cuda" in skipped  # with the reason it cannot run


def test_sizes_and_flop_count():
    assert parse_size("100,32,256,256") == Size(100, 32, 256, 256)
    assert parse_size("5x3x4x6") == Size(5, 3, 4, 6)
    for bad in ("1,2,3", "0,1,1,1", "a,b,c,d"):
        with pytest.raises(ValueError, match="size"):
            parse_size(bad)
    s = Size(10, 4, 3, 5)
    assert s.flops("fwd") == 2 * 10 * 4 * (3 * 5 + 5 * 5)
    assert s.flops("fwdbwd") == s.flops("fwd") + s.flops("bwd") == 2 * 10 * 4 * 3 * (3 * 5 + 5 * 5)
    assert [tuple(vars(z).values()) for z in PRESETS["cpu"][1]] == [
        (100, 32, 256, 256), (50, 64, 512, 512), (200, 16, 64, 128), (500, 1, 32, 64)]


def test_plots_are_written(tmp_path):
    pytest.importorskip("matplotlib", reason="plots need matplotlib (the plot extra)")
    from gpu_bptt.bench.plots import write_plots

    sizes = [Size(4, 1, 3, 5), Size(4, 2, 3, 5), Size(8, 2, 3, 5)]
    run = run_bench(sizes, [numpy_contender()], **FAST)
    files = write_plots(run, tmp_path / "run")
    names = sorted(f.name for f in files)
    assert any("time-vs-B" in n for n in names) and any("time-vs-T" in n for n in names)
    assert all(f.stat().st_size > 0 for f in files)


def test_every_cuda_variant_is_a_contender(monkeypatch):
    """With a (fake) cuda backend present, each algo x step kernel x GEMM choice is one contender,
    built with the constructor's options."""
    import gpu_bptt.backends as backends
    from gpu_bptt.backends.cuda import backend as cuda
    from gpu_bptt.backends.numpy_backend import NumpyBackend

    class FakeCuda(NumpyBackend):
        algos = ("auto", "step", "persistent")

    monkeypatch.setattr(backends, "available_backends", lambda: {"numpy": None, "cuda": None})
    monkeypatch.setattr(cuda, "CudaBackend", FakeCuda, raising=False)
    monkeypatch.setattr(cuda, "GEMM_CHOICES", ("cublas", "own"), raising=False)
    monkeypatch.setattr(cuda, "STEP_VERSIONS", ("v1", "v2"), raising=False)
    monkeypatch.setattr(cuda, "PERSIST_CHOICES", ("v2", "v1"), raising=False)
    found, _ = discover(["cuda"])
    assert [c.name for c in found] == [
        "cuda[step,v1,cublas]", "cuda[step,v1,own]", "cuda[step,v2,cublas]", "cuda[step,v2,own]",
        "cuda[persistent,v1,cublas]", "cuda[persistent,v1,own]", "cuda[persistent,v2,cublas]",
        "cuda[persistent,v2,own]"]
    assert all(c.device == "gpu" and c.timer == "cupy" for c in found)
    own = found[-1]
    assert own.options["algo"] == "persistent" and own.options["backend_options"] == {
        "gemm": "own", "persist": "v2"}
    assert found[0].options["backend_options"] == {"gemm": "cublas", "step": "v1"}


def test_backend_options_go_to_the_constructor_not_the_environment(monkeypatch):
    import os

    monkeypatch.delenv("GPU_BPTT_GEMM", raising=False)
    seen = []

    def make(**options):
        seen.append((options, os.environ.get("GPU_BPTT_GEMM")))
        return get_backend("numpy")

    run = run_bench(TINY[:1], [Ours("numpy[own]", make, backend_options={"gemm": "own"})], **FAST)
    assert run["sizes"][0]["results"][0]["check"]["ok"]
    assert seen == [({"gemm": "own"}, None)] and "GPU_BPTT_GEMM" not in os.environ


def test_gpu_check_runs_its_stages_and_copies_the_results(tmp_path):
    """bench/gpu_check.sh with a stand-in CuPy that reports one device: each stage named runs and
    records its exit code, an unknown stage fails the run, and the log and an archive of the run's
    files are copied out."""
    import os
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    fake = tmp_path / "fake" / "cupy"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text(
        "class cuda:\n    class runtime:\n        getDeviceCount = staticmethod(lambda: 1)\n")
    env = dict(os.environ, PYTHONPATH=f"{fake.parent}{os.pathsep}{root}",
               GPU_CHECK_RESULTS=str(tmp_path / "results"), LIMIT_info="45")
    out = tmp_path / "out"
    p = subprocess.run(["bash", str(root / "bench" / "gpu_check.sh"), str(out), "info", "bogus"],
                       env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 1, p.stdout + p.stderr  # the unknown stage
    assert "== info (limit 45s)" in p.stdout and "info exit code: 0" in p.stdout
    assert "unknown stage bogus" in p.stdout and "bogus exit code: 2" in p.stdout
    logs = list(out.glob("gpu-check-*.log"))
    assert len(logs) == 1 and "info exit code" in logs[0].read_text()
    assert len(list(out.glob("gpu-check-*.tar.gz"))) == 1


def test_the_status_line_is_the_training_bars(monkeypatch):
    """The bench shows what it measures on the StatusLine that the training bar is drawn on
    (gpu_bptt.progress): in a log one line per contender block, on a terminal every stage
    redrawn in place and the line cleared before the table."""
    import io

    from gpu_bptt import progress

    class Tty(io.StringIO):
        def isatty(self):
            return True

    log, tty = io.StringIO(), Tty()
    for stream in (log, tty):
        run_bench(TINY[:1], [numpy_contender()], progress=progress.StatusLine(stream), **FAST)
    assert log.getvalue().splitlines() == [f"[1/1] {TINY[0]}: reference and machine rates",
                                           f"[1/1] {TINY[0]} numpy: setup"]
    text = tty.getvalue()
    stages = [s for s in text.split("\r") if s]
    assert stages[-1] == "\x1b[K"   # cleared at the end
    assert [s.split(": ")[-1] for s in stages[1:-1]] == [
        "setup\x1b[K", "memory\x1b[K", "check\x1b[K", "fwd\x1b[K", "bwd\x1b[K", "fwdbwd\x1b[K"]
    # the training bar on the same kind of stream: one line, ended rather than cleared
    bar = progress.Progress(10, 0, 4, stream=Tty())
    bar.update(10, 0.5)
    bar.close()
    assert bar.out.stream.getvalue().startswith("\rstep 10/10") and bar.out.stream.getvalue().endswith("\n")
