"""Smoke test of the benchmark machinery on tiny sizes: it runs, records what it promises, and
refuses to time a contender whose results are wrong. No timing is asserted."""
import json

import numpy as np
import pytest

from gpu_bptt.bench import PRESETS, Size, main, parse_size, run_bench
from gpu_bptt.bench.contenders import Ours, XpLoop, discover
from gpu_bptt.bench.report import markdown, table, write_json
from gpu_bptt.backends import get_backend
from tests.skips import TORCH, import_or_skip

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
    for key in ("date", "commit", "cpu", "cpu_count", "load_average", "blas", "versions", "env"):
        assert key in m, key
    assert len(m["load_average"]) == 3 and len(data["load_average_end"]) == 3
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
    assert f"load average {m['load_average'][0]} at the start" in markdown(data)


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
    (["--cell", "lstmx"], "--cell: expected one of elman, lstm, gru, got 'lstmx'"),
    (["--blas-threads", "-1"], "--blas-threads: must be >= 0, got -1"),
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


def test_list_refuses_a_bad_cell_with_one_line(capsys):
    assert main(["--list", "--cell", "rnn"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "gpu-bptt bench: error: --cell: expected one of elman, lstm, gru, got 'rnn'"]


@pytest.mark.parametrize("cell, threads, outputs", [
    ("lstm", 1, {"h", "dx", "dW", "dV", "db", "dh0", "dc0"}),
    ("gru", 1, {"h", "dx", "dW", "dV", "db_x", "db_h", "dh0"}),
    ("elman", None, {"h", "dx", "dW", "dV", "db", "dh0"}),
])
def test_each_cell_runs_end_to_end_against_torch(cell, threads, outputs, tmp_path, capsys):
    """`--cell` on the tiny preset: ours and torch.nn's cell each pass the check against the float64
    reference (for LSTM and GRU torch is an independent one: weights mapped as the JSON says), and
    the JSON records the cell, its FLOP count and the BLAS thread limit the numpy contender ran
    under (1 for LSTM and GRU, as training runs; the BLAS's own for Elman, as before)."""
    import_or_skip("torch", TORCH, "the torch contender needs PyTorch")
    assert main(["--cell", cell, "--preset", "tiny", "--contenders", "numpy,torch-cpu",
                 "--repeats", "2", "--warmup", "1", "--pause", "0", "--no-plot", "--quiet",
                 "--out", str(tmp_path), "--markdown", str(tmp_path / "t.md")]) == 0
    out = capsys.readouterr().out
    assert f"T=5 B=3 I=4 H=6 {cell} float32" in out
    (path,) = tmp_path.glob(f"{cell}-tiny-*.json")
    data = json.loads(path.read_text())
    assert data["cell"] == cell and data["complete"]
    assert data["blas_threads"] == {"numpy": threads, "torch-cpu": None}
    G = {"elman": 1, "lstm": 4, "gru": 3}[cell]
    assert data["flop_count"]["fwd"] == ("2*T*B*(I*H + H*H)" if G == 1 else
                                         f"2*T*B*{G}*(I*H + H*H)")
    for block, size in zip(data["sizes"], TINY):
        rates = block["machine"]
        assert rates["gemm_shape"] == [size.T * size.B, size.H, G * size.H]
        if threads:  # the GEMM rate is the best of the BLAS's own threads and the limit
            by = rates["gemm_by_threads"]
            assert set(by) == {"blas default", "1"}
            assert rates["gemm_gflops"] == max(r["gemm_gflops"] for r in by.values())
        else:
            assert "gemm_by_threads" not in rates
        numpy_rec, torch_rec = block["results"]
        assert numpy_rec["blas_threads"] == threads and torch_rec["blas_threads"] is None
        for rec in block["results"]:
            assert rec["check"]["ok"] and set(rec["check"]["errors"]) == outputs, rec
            gf = Size(**block["size"]).flops("fwdbwd", cell) / rec["times"]["fwdbwd"]["median_s"]
            assert rec["gflops"]["fwdbwd"] == pytest.approx(gf / 1e9)
        assert numpy_rec["ratios"]["speedup_fwdbwd"] > 0
    md = (tmp_path / "t.md").read_text()
    assert "| T=5 B=3 I=4 H=6 | torch-cpu |" in md
    assert ("numpy: BLAS held to 1 thread." in md) == bool(threads)


def test_the_numpy_contender_runs_under_its_blas_limit_and_gives_it_back():
    """What the BLAS threads are while the contender runs, and after its teardown (OpenBLAS's own
    getter, read through ctypes as gpu_bptt.blas_threads does)."""
    from gpu_bptt.blas_threads import _openblas_controls

    getters = [get for get, _ in _openblas_controls()]
    assert getters, "NumPy's Linux wheels ship OpenBLAS"
    before = [get() for get in getters]
    seen = []

    class Spy(Ours):
        def forward(self):
            seen.append([get() for get in getters])
            super().forward()

    run = run_bench(TINY[:1], [Spy("numpy", lambda: get_backend("numpy"), blas_threads=1)],
                    cell="lstm", **FAST)
    assert run["sizes"][0]["results"][0]["check"]["ok"]
    assert seen and all(s == [1] * len(getters) for s in seen)
    assert [get() for get in getters] == before


def test_a_backend_without_the_cells_recurrence_is_not_applicable():
    """Our contender on a backend that has no LSTM kernels (the base class's lstm_fwd_seq) is
    reported as not applicable, which is no failure, and its Elman still runs."""
    from gpu_bptt.backends import Backend
    from gpu_bptt.backends.numpy_backend import NumpyBackend

    class ElmanOnly(NumpyBackend):
        name = "elman-only"
        lstm_fwd_seq = Backend.lstm_fwd_seq

    lstm = run_bench(TINY[:1], [Ours("cuda[x]", ElmanOnly)], cell="lstm", **FAST)
    rec = lstm["sizes"][0]["results"][0]
    assert rec["not_applicable"] and "times" not in rec
    assert rec["error"] == "not applicable: the elman-only backend has no lstm recurrence"
    elman = run_bench(TINY[:1], [Ours("cuda[x]", ElmanOnly)], **FAST)
    assert elman["sizes"][0]["results"][0]["check"]["ok"]


def test_only_the_contenders_of_a_cell_are_found():
    found, skipped = discover(["numpy"], cell="gru")
    assert [c.name for c in found] == ["numpy"]
    found, skipped = discover(["numpy-loop"], cell="lstm")  # the naive loop is Elman's only
    assert found == [] and skipped["numpy-loop"] == "runs elman only, not lstm"
    with pytest.raises(ValueError, match="cell"):
        discover(cell="rnn")


def test_the_jax_cells_compute_the_cells(monkeypatch):
    """The JAX contender's steps (written for lax.scan) run with NumPy standing in for jax.numpy,
    against torch.nn.LSTM / nn.GRU in float64: the cell's math is right whether or not JAX is
    installed (with JAX, the bench's check covers its gradients too)."""
    torch = import_or_skip("torch", TORCH, "the reference is torch.nn")
    from types import SimpleNamespace

    from gpu_bptt.bench.contenders import _jax_steps
    from gpu_bptt.bench.sizes import make_problem

    jnp = SimpleNamespace(tanh=np.tanh, split=np.split,
                          matmul=lambda a, b, precision=None: a @ b)
    jax = SimpleNamespace(nn=SimpleNamespace(sigmoid=lambda a: 1 / (1 + np.exp(-a))))
    steps = _jax_steps(jax, jnp)
    for cell, module in (("lstm", torch.nn.LSTM), ("gru", torch.nn.GRU)):
        a = make_problem(Size(4, 3, 2, 5), "float64", cell=cell).arrays()
        b_x = a["b_x" if cell == "gru" else "b"]
        carry = (a["h0"], a["c0"]) if cell == "lstm" else a["h0"]
        hs = []
        for t in range(4):
            p_t = a["x"][t] @ a["W"] + b_x
            carry, h = steps[cell](carry, p_t, a["V"], *((a["b_h"],) if cell == "gru" else ()))
            hs.append(h)
        rnn = module(2, 5).double()
        with torch.no_grad():
            rnn.weight_ih_l0.copy_(torch.from_numpy(a["W"].T))
            rnn.weight_hh_l0.copy_(torch.from_numpy(a["V"].T))
            rnn.bias_ih_l0.copy_(torch.from_numpy(b_x))
            rnn.bias_hh_l0.copy_(torch.from_numpy(a["b_h"]) if cell == "gru" else
                                 torch.zeros(20))
            states = [torch.from_numpy(a[k][None]) for k in (("h0", "c0") if cell == "lstm"
                                                              else ("h0",))]
            y, _ = rnn(torch.from_numpy(a["x"]), tuple(states) if cell == "lstm" else states[0])
        np.testing.assert_allclose(np.stack(hs), y.numpy(), rtol=0, atol=1e-12)


def test_sizes_and_flop_count():
    assert parse_size("100,32,256,256") == Size(100, 32, 256, 256)
    assert parse_size("5x3x4x6") == Size(5, 3, 4, 6)
    for bad in ("1,2,3", "0,1,1,1", "a,b,c,d"):
        with pytest.raises(ValueError, match="size"):
            parse_size(bad)
    s = Size(10, 4, 3, 5)
    assert s.flops("fwd") == 2 * 10 * 4 * (3 * 5 + 5 * 5)
    assert s.flops("fwdbwd", "lstm") == 4 * s.flops("fwdbwd")
    assert s.flops("bwd", "gru") == 3 * s.flops("bwd")
    # compulsory bytes: the LSTM's extra state c0 (in) and dc0 (out), the GRU's second bias
    T, B, I, H = 10, 4, 3, 5
    assert s.bytes("fwd", 4, "lstm") == 4 * (T * B * I + 4 * (I * H + H * H) + 4 * H + 2 * B * H
                                             + T * B * H)
    assert s.bytes("bwd", 4, "gru") - s.bytes("bwd", 4, "elman") == 4 * (
        2 * 2 * (I * H + H * H) + 2 * 3 * H - H)
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
    # the same variants time the gated cells (each says at setup if its backend cannot)
    for cell in ("lstm", "gru"):
        assert [c.name for c in discover(["cuda"], cell=cell)[0]] == [c.name for c in found]


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
    files are copied out. The lstm stage runs the GPU presets with --cell lstm; the stand-in has
    no kernels and PyTorch no CUDA here, so it finds no GPU contender and says so (exit 2)."""
    import os
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    fake = tmp_path / "fake" / "cupy"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text(
        "class cuda:\n    class runtime:\n        getDeviceCount = staticmethod(lambda: 1)\n")
    env = dict(os.environ, PYTHONPATH=f"{fake.parent}{os.pathsep}{root}",
               GPU_CHECK_RESULTS=str(tmp_path / "results"), LIMIT_info="45", LIMIT_lstm="60")
    out = tmp_path / "out"
    p = subprocess.run(["bash", str(root / "bench" / "gpu_check.sh"), str(out), "info", "lstm",
                        "bogus"], env=env, capture_output=True, text=True, timeout=180)
    assert p.returncode == 1, p.stdout + p.stderr  # the unknown stage
    assert "== info (limit 45s)" in p.stdout and "info exit code: 0" in p.stdout
    assert "== lstm (limit 60s): " in p.stdout and (
        "--cell lstm --preset large-batch --preset small-batch") in p.stdout
    assert "no contender can run here" in p.stdout and "lstm exit code: 2" in p.stdout
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
