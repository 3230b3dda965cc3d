"""The cpu backend (compiled time loops) against the numpy backend, the plain reference, on every
configuration the numpy backend runs: each cell, lengths, both directions, projection, bias or
not, initial states or not, every combination of gradients from above, float32 and float64; the
other precision modes (bfloat16, float16, TF32), which run the reference's own loops; and the
fallback to numpy where Numba is missing. (memory="recompute" on it: tests/test_recompute.py.)

The products are NumPy's own BLAS calls and every other operation is the reference's, in its
order: where the math is the same (Elman with relu or identity) the results are bit for bit the
reference's. tanh, σ and exp are not NumPy's (float32 tanh is Eigen's rational form, within 6 ulp
of tanh where NumPy's is within 2; float64 tanh and exp are libm's): there the results differ in
the last bits of each step and the tolerance table (tests/tolerances.py: a few ulp per step,
compounded over the steps) applies.
"""
from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import gpu_bptt
from gpu_bptt import backends, cells
from gpu_bptt.backends import compiled
from gpu_bptt.precision import BFLOAT16
from tests.tolerances import assert_close

pytestmark = pytest.mark.skipif(compiled.unavailable_reason() is not None,
                                reason=f"cpu extra: {compiled.unavailable_reason()}")

DTYPES = (np.float32, np.float64)
T, B, I, H, P = 7, 5, 3, 6, 4
LENGTHS = np.array([7, 1, 4, 7, 2], dtype=np.int32)


def arrays(shapes, dtype, seed):
    r = np.random.default_rng(seed)
    return {k: (r.standard_normal(s) * 0.5).astype(dtype) for k, s in shapes.items()}


def run_both(call, grads, cell_args, exact=False):
    """call(backend) -> (Output, Grads) on numpy and cpu; compare every array field (exact:
    bit for bit)."""
    results = [call(name) for name in ("numpy", "cpu")]
    (out_ref, g_ref), (out, g) = results
    assert out.cache.plan.reason.startswith("the cpu backend runs the time loop compiled")
    pairs = [(name, getattr(out, name), getattr(out_ref, name))
             for name in ("h", "h_last", "c_last") if hasattr(out_ref, name)]
    for name in grads:
        if getattr(g_ref, name) is None:
            assert getattr(g, name) is None, name
        else:
            pairs.append((name, getattr(g, name), getattr(g_ref, name)))
    for name, x, ref in pairs:
        if exact:
            assert np.array_equal(x, ref), f"{cell_args} {name}: not bit for bit the reference's"
        else:
            assert_close(f"{cell_args} {name}", x, ref)


# dh, dh_last (and dc_last) given or not: at least one
FROM_ABOVE = [c for c in itertools.product((True, False), repeat=2) if any(c)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reverse", (False, True))
@pytest.mark.parametrize("lengths", (False, True))
@pytest.mark.parametrize("activation", ("tanh", "relu", "sigmoid", "identity"))
@pytest.mark.parametrize("from_above", FROM_ABOVE)
def test_elman_equals_numpy(dtype, reverse, lengths, activation, from_above):
    a = arrays(dict(x=(T, B, I), W=(I, H), V=(H, H), b=(H,), h0=(B, H), dh=(T, B, H),
                    dh_last=(B, H)), dtype, seed=1)
    bias_h0 = (a["b"], a["h0"]) if lengths else (None, None)  # both with and without
    lens = LENGTHS if lengths else None
    if lengths:
        a["dh"][6, 1] = np.nan  # padded: ignored by both

    def call(bk):
        out = gpu_bptt.elman_forward(a["x"], a["W"], a["V"], *bias_h0, activation=activation,
                                     lengths=lens, reverse=reverse, backend=bk)
        g = gpu_bptt.elman_backward(a["dh"] if from_above[0] else None, out.cache,
                                    dh_last=a["dh_last"] if from_above[1] else None)
        return out, g
    run_both(call, ("dx", "dW", "dV", "db", "dh0"), (activation, lengths, reverse),
             exact=activation in ("relu", "identity"))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reverse", (False, True))
@pytest.mark.parametrize("lengths", (False, True))
@pytest.mark.parametrize("proj", (False, True))
@pytest.mark.parametrize("from_above", FROM_ABOVE + [(False, False)])
def test_lstm_equals_numpy(dtype, reverse, lengths, proj, from_above):
    Hs = P if proj else H
    a = arrays(dict(x=(T, B, I), W=(I, 4 * H), V=(Hs, 4 * H), b=(4 * H,), h0=(B, Hs),
                    c0=(B, H), R=(H, P), dh=(T, B, Hs), dh_last=(B, Hs), dc_last=(B, H)),
               dtype, seed=2)
    states = (a["b"], a["h0"], a["c0"]) if lengths else (None, None, None)
    lens = LENGTHS if lengths else None

    def call(bk):
        out = gpu_bptt.lstm_forward(a["x"], a["W"], a["V"], *states, R=a["R"] if proj else None,
                                    lengths=lens, reverse=reverse, backend=bk)
        g = gpu_bptt.lstm_backward(a["dh"] if from_above[0] else None, out.cache,
                                   dh_last=a["dh_last"] if from_above[1] else None,
                                   dc_last=a["dc_last"] if not all(from_above) else None)
        return out, g
    run_both(call, ("dx", "dW", "dV", "db", "dR", "dh0", "dc0"), (proj, lengths, reverse))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reverse", (False, True))
@pytest.mark.parametrize("lengths", (False, True))
@pytest.mark.parametrize("biases", ((True, True), (False, True), (True, False), (False, False)))
@pytest.mark.parametrize("from_above", FROM_ABOVE)
def test_gru_equals_numpy(dtype, reverse, lengths, biases, from_above):
    a = arrays(dict(x=(T, B, I), W=(I, 3 * H), V=(H, 3 * H), b_x=(3 * H,), b_h=(3 * H,),
                    h0=(B, H), dh=(T, B, H), dh_last=(B, H)), dtype, seed=3)
    b_x, b_h = (a[k] if on else None for k, on in zip(("b_x", "b_h"), biases))
    lens = LENGTHS if lengths else None

    def call(bk):
        out = gpu_bptt.gru_forward(a["x"], a["W"], a["V"], b_x, b_h,
                                   a["h0"] if lengths else None, lengths=lens, reverse=reverse,
                                   backend=bk)
        g = gpu_bptt.gru_backward(a["dh"] if from_above[0] else None, out.cache,
                                  dh_last=a["dh_last"] if from_above[1] else None)
        return out, g
    run_both(call, ("dx", "dW", "dV", "db_x", "db_h", "dh0"), (biases, lengths, reverse))


def test_bidirectional_pair_equals_numpy():
    """Both directions together (seq_pair) as on numpy, with lengths."""
    a = arrays(dict(x=(T, B, I), W=(I, 4 * H), V=(H, 4 * H), dh=(T, B, H)), np.float64, seed=4)
    W2, V2 = a["W"][::-1].copy(), a["V"][::-1].copy()
    runs = {}
    for bk in ("numpy", "cpu"):
        outs = cells.lstm_forward_pair(a["x"], (a["W"], a["V"], None, None, None, None),
                                          (W2, V2, None, None, None, None), lengths=LENGTHS,
                                          backend=bk)
        grads = cells.lstm_backward_pair((a["dh"], a["dh"]), tuple(o.cache for o in outs))
        runs[bk] = outs, grads
    for d in range(2):
        assert_close(f"h[{d}]", runs["cpu"][0][d].h, runs["numpy"][0][d].h)
        for name in ("dx", "dW", "dV", "dh0", "dc0"):
            assert_close(f"{name}[{d}]", getattr(runs["cpu"][1][d], name),
                         getattr(runs["numpy"][1][d], name))


def test_against_float64_by_hand():
    """An independent check of the compiled Elman loop: float32 on the cpu backend against a
    float64 loop written here (tanh, reversed, with lengths)."""
    a = arrays(dict(x=(T, B, I), W=(I, H), V=(H, H), h0=(B, H)), np.float32, seed=5)
    out = gpu_bptt.elman_forward(a["x"], a["W"], a["V"], None, a["h0"], lengths=LENGTHS,
                                 reverse=True, backend="cpu")
    x, W, V = (a[k].astype(np.float64) for k in ("x", "W", "V"))
    ref = np.zeros((T, B, H))
    for b, n in enumerate(LENGTHS):
        h = a["h0"][b].astype(np.float64)
        for t in range(n - 1, -1, -1):
            h = np.tanh(x[t, b] @ W + h @ V)
            ref[t, b] = h
    assert_close("h", out.h, ref, dtype=np.float32)


def test_plan_and_modes():
    """The plan says which loop runs: the compiled one for float32 and float64, the numpy
    reference's for the other modes, which the backend lists as numpy does."""
    bk = backends.get_backend("cpu")
    plan = bk.resolve_algo("auto", T, B, H, np.float32, cell="lstm")
    assert plan.algo == "step" and "compiled" in plan.reason
    assert bk.dtypes == backends.get_backend("numpy").dtypes == \
        ("float32", "float64", "bfloat16", "float16") and bk.tf32 is True
    for dtype, tf32, name in ((np.float16, False, "float16"), (BFLOAT16, False, "bfloat16"),
                              (np.float32, True, "float32 with TF32")):
        plan = bk.resolve_algo("auto", T, B, H, dtype, tf32=tf32)
        assert plan.reason == (f"{name}: the numpy reference loop; the compiled loops run "
                               "float32 and float64 without TF32")
        assert (plan.dtype, plan.tf32) == (np.dtype(dtype).name, tf32)
    with pytest.raises(ValueError, match="allow_tf32: TF32 rounds float32 operands"):
        bk.resolve_algo("auto", T, B, H, np.float64, tf32=True)
    with pytest.raises(ValueError, match="algo"):
        bk.resolve_algo("persistent", T, B, H, np.float32)


#: precision mode -> (storage dtype, allow_tf32): the modes the compiled loops leave to numpy's
MODES = {"bfloat16": (BFLOAT16, False), "float16": (np.dtype(np.float16), False),
         "tf32": (np.dtype(np.float32), True)}


def run_cell(cell, a, lens, reverse, backend, tf32):
    """One forward and backward of `cell` ("elman", "lstm", "lstm-proj", "gru") on arrays a."""
    kw = dict(lengths=lens, reverse=reverse, backend=backend, allow_tf32=tf32)
    if cell == "elman":
        out = gpu_bptt.elman_forward(a["x"], a["W"], a["V"], a["b"], a["h0"], **kw)
        return out, gpu_bptt.elman_backward(a["dh"], out.cache, dh_last=a["dh_last"])
    if cell.startswith("lstm"):
        proj = cell == "lstm-proj"
        Hs = P if proj else H
        out = gpu_bptt.lstm_forward(a["x"], a["W4"], a["V4"][:Hs], a["b4"], a["h0"][:, :Hs],
                                    a["h0"], R=a["R"] if proj else None, **kw)
        return out, gpu_bptt.lstm_backward(a["dh"][:, :, :Hs], out.cache, dc_last=a["h0"])
    out = gpu_bptt.gru_forward(a["x"], a["W3"], a["V3"], a["b3"], a["b3"], a["h0"], **kw)
    return out, gpu_bptt.gru_backward(a["dh"], out.cache, dh_last=a["dh_last"])


def bits(x):
    """x's bytes, to compare bit for bit (-0 and NaN payloads included) in any dtype."""
    return np.ascontiguousarray(x).view(np.uint8)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("cell", ("elman", "lstm", "lstm-proj", "gru"))
@pytest.mark.parametrize("reverse", (False, True))
@pytest.mark.parametrize("lengths", (False, True))
def test_other_modes_are_numpys_bit_for_bit(mode, cell, reverse, lengths):
    """16-bit storage and TF32 on the cpu backend: the numpy reference's loops (checked against
    float64 oracles in tests/test_precision.py), so every output and gradient is numpy's bit for
    bit, and the plan says that loop runs."""
    dtype, tf32 = MODES[mode]
    a = arrays(dict(x=(T, B, I), W=(I, H), V=(H, H), b=(H,), h0=(B, H), dh=(T, B, H),
                    dh_last=(B, H), W4=(I, 4 * H), V4=(H, 4 * H), b4=(4 * H,), R=(H, P),
                    W3=(I, 3 * H), V3=(H, 3 * H), b3=(3 * H,)), np.float32, seed=8)
    a = {k: v.astype(dtype) for k, v in a.items()}
    lens = LENGTHS if lengths else None
    (out_ref, g_ref), (out, g) = (run_cell(cell, a, lens, reverse, bk, tf32)
                                  for bk in ("numpy", "cpu"))
    name = "float32 with TF32" if tf32 else dtype.name
    assert out.cache.plan.reason.startswith(f"{name}: the numpy reference loop;")
    assert out.h.dtype == dtype
    for k in ("h", "h_last", "c_last"):
        if hasattr(out_ref, k):
            assert np.array_equal(bits(getattr(out, k)), bits(getattr(out_ref, k))), k
    for k, ref in vars(g_ref).items():
        got = getattr(g, k)
        assert (got is None) == (ref is None), k
        if ref is not None:
            assert np.array_equal(bits(got), bits(ref)), k


def test_auto_runs_a_bfloat16_call(monkeypatch):
    """Under `auto` (the cpu backend where the extra is installed) a bfloat16 call runs, on the
    reference's loop: before, the cpu backend refused it with a TypeError."""
    monkeypatch.delenv(backends.ENV_VAR, raising=False)
    if backends.available_backends()["cuda"] is None:
        pytest.skip("a GPU is here: auto picks cuda")  # noqa: the rule tested is the CPU's
    a = {k: v.astype(BFLOAT16) for k, v in arrays(
        dict(x=(T, B, I), W=(I, H), V=(H, H), dh=(T, B, H)), np.float32, seed=9).items()}
    out = gpu_bptt.elman_forward(a["x"], a["W"], a["V"], lengths=LENGTHS)
    g = gpu_bptt.elman_backward(a["dh"], out.cache)
    assert out.cache.backend.name == "cpu"
    assert out.cache.plan.reason.startswith("bfloat16: the numpy reference loop;")
    ref = gpu_bptt.elman_forward(a["x"], a["W"], a["V"], lengths=LENGTHS, backend="numpy")
    g_ref = gpu_bptt.elman_backward(a["dh"], ref.cache)
    assert out.h.dtype == BFLOAT16 and np.array_equal(bits(out.h), bits(ref.h))
    assert np.array_equal(bits(g.dW), bits(g_ref.dW)) and np.array_equal(bits(g.dx), bits(g_ref.dx))


def test_auto_picks_cpu(monkeypatch):
    monkeypatch.delenv(backends.ENV_VAR, raising=False)
    if backends.available_backends()["cuda"] is None:
        pytest.skip("a GPU is here: auto picks cuda")  # noqa: the rule tested is the CPU's
    assert backends.get_backend(None).name == "cpu"


def test_fallback_without_numba(monkeypatch):
    """Where the cpu extra is missing: cpu unavailable (saying why), auto is numpy."""
    monkeypatch.setitem(sys.modules, "numba", None)  # `import numba` fails, find_spec is None
    monkeypatch.setattr(backends, "_instances", {})
    monkeypatch.delenv(backends.ENV_VAR, raising=False)
    compiled.unavailable_reason.cache_clear()
    try:
        reason = backends.available_backends()["cpu"]
        assert reason == "numba not installed; pip install gpu_bptt[cpu]"
        if backends.available_backends()["cuda"] is not None:
            assert backends.get_backend(None).name == "numpy"
        with pytest.raises(backends.BackendUnavailable, match="cpu.*numba not installed"):
            backends.get_backend("cpu")
    finally:
        compiled.unavailable_reason.cache_clear()


def test_info_shows_the_cpu_backend(capsys):
    from gpu_bptt.cli import main

    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "  cpu       available: Numba " in out
    assert "loops compiled and cached: " in out


def test_loops_load_from_the_cache_in_a_new_process():
    """The compiled loops are cached across processes: a fresh one loads rather than compiles."""
    gpu_bptt.elman_forward(np.ones((2, 1, 1), np.float32), np.ones((1, 1), np.float32),
                           np.ones((1, 1), np.float32), backend="cpu")  # compiled here if not yet
    code = ("import numpy as np, gpu_bptt\n"
            "from gpu_bptt.backends.compiled import loops\n"
            "a = np.ones((2, 1, 1), np.float32); w = np.ones((1, 1), np.float32)\n"
            "gpu_bptt.elman_forward(a, w, w, backend='cpu')\n"
            "s = loops.elman_fwd.stats\n"
            "print(sum(s.cache_hits.values()), sum(s.cache_misses.values()))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    hits, misses = run.stdout.split()[-2:]
    assert (hits, misses) == ("1", "0"), run.stdout


@pytest.mark.parametrize("cell", ("elman", "lstm", "gru"))
def test_bench_runs_the_cpu_contender(cell, tmp_path, capsys):
    """The bench's cpu preset has the compiled path as a contender (and, on a machine with more
    than one core, its loop on one thread): on the tiny sizes they pass the check against the
    float64 reference, under the BLAS limit the numpy contender gets."""
    from gpu_bptt.bench.cli import main

    assert main(["--cell", cell, "--preset", "tiny", "--contenders", "numpy,cpu", "--repeats",
                 "2", "--warmup", "1", "--pause", "0", "--no-plot", "--quiet",
                 "--out", str(tmp_path)]) == 0
    capsys.readouterr()
    (path,) = tmp_path.glob(f"{cell}-tiny-*.json")
    data = json.loads(path.read_text())
    ours = ["cpu"] + (["cpu[threads=1]"] if (os.cpu_count() or 1) > 1 else [])
    assert data["contenders"] == ["numpy", *ours] and data["complete"]
    assert all(data["blas_threads"][c] == data["blas_threads"]["numpy"] for c in ours)
    for block in data["sizes"]:
        for r in block["results"]:
            assert r["check"]["ok"], (r["contender"], r["check"])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reverse", (False, True))
def test_one_row_is_bit_for_bit(dtype, reverse):
    """B = 1: the products are NumPy's gemv calls, as the reference's (relu: same math)."""
    a = arrays(dict(x=(T, 1, I), W=(I, H), V=(H, H), b=(H,), dh=(T, 1, H)), dtype, seed=6)

    def call(bk):
        out = gpu_bptt.elman_forward(a["x"], a["W"], a["V"], a["b"], activation="relu",
                                     reverse=reverse, backend=bk)
        return out, gpu_bptt.elman_backward(a["dh"], out.cache)
    run_both(call, ("dx", "dW", "dV", "db", "dh0"), ("B=1", reverse), exact=True)


def test_digest_is_the_weighted_word_sum_and_guards_the_cache():
    """The compiled digest is Backend.digest's formula (the generic one as reference), sees a
    one-bit change, and the cache guard uses it."""
    bk = backends.get_backend("cpu")
    a = np.random.default_rng(7).standard_normal((5, 3, 4)).astype(np.float32)
    assert bk.digest(a) == int(backends.Backend.digest(bk, a))
    assert bk.digest(a[:, 1]) == int(backends.Backend.digest(bk, a[:, 1]))  # a strided view
    b = a.copy()
    b.view(np.uint32)[2, 1, 3] ^= 1
    assert bk.digest(b) != bk.digest(a)
    out = gpu_bptt.elman_forward(a, np.ones((4, 2), np.float32), np.eye(2, dtype=np.float32),
                                 backend="cpu")
    a[0, 0, 0] += 1
    with pytest.raises(ValueError, match="cache: x was changed in place"):
        gpu_bptt.elman_backward(np.ones_like(out.h), out.cache)


@pytest.mark.parametrize("cell", ("elman", "lstm", "gru"))
def test_chunks_of_rows_give_the_same_bits(cell):
    """The loops' chunks of rows on threads (at least two rows each: one row would be NumPy's
    gemv, which sums in another order): 1, 2 and 3 threads give the same bits, with lengths,
    reversed, with a projection for the LSTM (OpenBLAS's gemm sums each row's products in an
    order that does not depend on the number of rows)."""
    from gpu_bptt.backends.cpu_backend import CpuBackend
    from gpu_bptt.bench import cells as bench_cells
    from gpu_bptt.bench.sizes import Size, make_problem

    a = make_problem(Size(T, B, I, H), "float32", cell=cell).arrays()
    runs = []
    for threads in (1, 2, 3):
        bk = CpuBackend(threads=threads)
        kw = dict(lengths=LENGTHS, reverse=True, backend=bk)
        if cell == "elman":
            out = gpu_bptt.elman_forward(a["x"], a["W"], a["V"], a["b"], a["h0"], **kw)
            g = gpu_bptt.elman_backward(a["dh"], out.cache)
        elif cell == "lstm":
            R = np.full((H, P), 0.1, np.float32)
            out = gpu_bptt.lstm_forward(a["x"], a["W"], np.ones((P, 4 * H), np.float32) / P,
                                        a["b"], None, a["c0"], R=R, **kw)
            g = gpu_bptt.lstm_backward(a["dh"][:, :, :P], out.cache, dc_last=a["c0"])
        else:
            out = bench_cells.forward(cell, a, bk)
            g = bench_cells.backward(cell, a["dh"], out)
        runs.append([out.h] + [v for v in vars(g).values() if v is not None])
        assert f"{min(threads, B // 2)} chunk" in out.cache.plan.reason
    for run in runs[1:]:
        assert all(np.array_equal(x, y) for x, y in zip(runs[0], run))


def test_threads_is_checked():
    from gpu_bptt.backends.cpu_backend import CpuBackend

    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(ValueError, match="threads: expected a positive integer"):
            CpuBackend(threads=bad)


@pytest.mark.parametrize("reverse", (False, True))
@pytest.mark.parametrize("cell", ("elman", "lstm", "gru"))
def test_carry_and_empty_rows_as_numpy(cell, reverse):
    """The backward methods' carry (what memory="recompute" hands a segment) with lengths of 0
    (an example with no step here), called directly, against the numpy reference: every output
    (Elman with relu: bit for bit). The carry is 0 on the rows whose entering step is padded,
    as a later segment leaves it (their state there is 0)."""
    L = np.array([7, 0, 4, 7, 2])
    rows = (L == 0) if reverse else (L < T)
    G = {"elman": 1, "lstm": 4, "gru": 3}[cell]
    a = arrays(dict(p=(T, B, G * H), V=(H, G * H), b=(G * H,), h0=(B, H), dh=(T, B, H),
                    dh_last=(B, H), du_next=(B, G * H), dc_next=(B, H), dh_next=(B, H)),
               np.float64, seed=10)
    for k in ("du_next", "dc_next", "dh_next"):
        a[k][rows] = 0
    results = []
    for name in ("numpy", "cpu"):
        bk = backends.get_backend(name)
        plan = bk.resolve_algo("auto", T, B, H, np.float64, reverse=reverse, cell=cell)
        if cell == "elman":
            h = bk.elman_fwd_seq(a["p"].copy(), a["V"], a["h0"], "relu", L, plan)
            du = bk.elman_bwd_seq(a["dh"], a["dh_last"], h, a["V"], "relu", L, plan,
                                  du_next=a["du_next"])
            results.append((h, du))
        elif cell == "lstm":
            h, c, g = bk.lstm_fwd_seq(a["p"].copy(), a["V"], a["h0"], a["h0"], L, plan)
            results.append((h, c, g) + bk.lstm_bwd_seq(
                a["dh"], a["dh_last"], a["dh_last"], h, c, g.copy(), a["h0"], a["V"], L, plan,
                du_next=a["du_next"], dc_next=a["dc_next"])[:2])
        else:
            h, g = bk.gru_fwd_seq(a["p"].copy(), a["V"], a["b"], a["h0"], L, plan)
            results.append((h, g) + bk.gru_bwd_seq(a["dh"], a["dh_last"], h, a["h0"], g.copy(),
                                                   a["V"], L, plan, dh_next=a["dh_next"]))
    for i, (x, ref) in enumerate(zip(*reversed(results))):
        if cell == "elman":
            assert np.array_equal(x, ref), f"output {i}: not bit for bit the reference's"
        else:
            assert_close(f"{cell} output {i}", x, ref)


def test_lstm_carry_is_both_or_neither():
    """The compiled LSTM backward takes du_next and dc_next together (one flag for both): one
    alone is refused by name rather than read as garbage."""
    bk = backends.get_backend("cpu")
    plan = bk.resolve_algo("auto", 2, 1, 1, np.float64, cell="lstm")
    h, c, g = bk.lstm_fwd_seq(np.ones((2, 1, 4)), np.ones((1, 4)), np.ones((1, 1)),
                              np.ones((1, 1)), None, plan)
    with pytest.raises(ValueError, match="^du_next, dc_next: the LSTM's carry is both or neither"):
        bk.lstm_bwd_seq(h, None, None, h, c, g, np.ones((1, 1)), np.ones((1, 4)), None, plan,
                        du_next=np.ones((1, 4)))
