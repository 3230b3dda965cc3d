"""Where a CPU forward+backward spends its time (bench/README.md, the profile of the cpu backend).

    python bench/profile_cpu.py [--cell lstm] [--size 50,64,512,512] [--threads 1] [--repeats 5]

For the numpy and cpu backends: the whole forward+backward, then its parts (the cells' own
functions, timed by cProfile over the repeats): the input projection (one GEMM and the bias),
the time loops, the weight-gradient reductions after the loop and the caches' digests; and,
alone, the loops' per-step products (T products of (B, Hs) @ (Hs, G·H) forward and
(B, G·H) @ (G·H, Hs) backward, by NumPy's BLAS called from Python and from compiled code) and
the same FLOPs as one GEMM. Best of the repeats, in ms of this process's CPU time (on a shared
machine wall time measures the other jobs too), under a BLAS limit of --threads (1 by default:
with more, CPU time also counts the BLAS threads' waiting).
"""
from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gpu_bptt.bench import cells  # noqa: E402
from gpu_bptt.bench.sizes import make_problem, parse_size  # noqa: E402
from gpu_bptt.blas_threads import blas_threads  # noqa: E402

#: the parts reported: (label, the functions whose cumulative time it is)
PARTS = (("input projection (GEMM + bias)", ("input_projection",)),
         ("time loop, forward", ("_fwd_seq",)),
         ("time loop, backward", ("_bwd_seq",)),
         ("weight gradients after the loop", ("{cell}gradients",)),
         ("digests of x and h", ("digest",)))


def best(f, repeats):
    times = []
    for _ in range(repeats):
        t0 = time.process_time()
        f()
        times.append(time.process_time() - t0)
    return 1e3 * min(times)


def parts(problem, backend, repeats):
    """{label: ms per forward+backward} from cProfile's cumulative times (whole run first)."""
    a = problem.arrays()

    def run():
        out = cells.forward(problem.cell, a, backend)
        cells.backward(problem.cell, a["dh"], out)
    run()  # compile (cpu), warm the caches
    whole = best(run, repeats)
    prof = cProfile.Profile(time.process_time)
    prof.runcall(lambda: [run() for _ in range(repeats)])
    stats = pstats.Stats(prof).stats
    out = {"forward+backward": whole}
    for label, names in PARTS:
        prefix = "" if problem.cell == "elman" else f"{problem.cell}_"
        names = [n.format(cell=prefix) for n in names]
        cum = sum(v[3] for (_, _, fn), v in stats.items()
                  if any(fn == n or n.startswith("_") and fn.endswith(n) for n in names))
        out[label] = 1e3 * cum / repeats
    return out


def products(size, cell, repeats):
    """{label: ms}: the loops' per-step products alone, by NumPy's BLAS and by the compiled
    loop's, and the same FLOPs as one GEMM each."""
    from numba import njit

    from gpu_bptt.backends.compiled.loops import matmul

    T, B, H = size.T, size.B, size.H
    N = cells.GATES[cell] * H
    r = np.random.default_rng(0)
    h, V = (r.standard_normal(s).astype(np.float32) for s in ((B, H), (H, N)))
    du, out_f, out_b = (np.empty(s, np.float32) for s in ((B, N), (B, N), (B, H)))
    du[:] = 0.1

    @njit
    def compiled(h, V, du, out_f, out_b, T):
        for _ in range(T):
            matmul(h, V, out_f)
            matmul(du, V.T, out_b)
    compiled(h, V, du, out_f, out_b, 1)
    big_h, big_du = np.tile(h, (T, 1)), np.tile(du, (T, 1))

    def numpy_steps():
        VT = np.ascontiguousarray(V.T)
        for _ in range(T):
            np.dot(h, V, out=out_f)
            np.dot(du, VT, out=out_b)
    return {"per-step products, NumPy's BLAS": best(numpy_steps, repeats),
            "per-step products, from the compiled loop": best(
                lambda: compiled(h, V, du, out_f, out_b, T), repeats),
            "the same FLOPs as two GEMMs (T·B rows)": best(
                lambda: (big_h @ V, big_du @ V.T), repeats)}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cell", default="lstm", choices=cells.CELLS)
    p.add_argument("--size", default="50,64,512,512", type=parse_size)
    p.add_argument("--threads", default=1, type=int, help="BLAS threads (0: the BLAS's own)")
    p.add_argument("--repeats", default=5, type=int)
    args = p.parse_args(argv)
    problem = make_problem(args.size, "float32", cell=args.cell)
    print(f"{args.cell} {args.size} float32, BLAS threads {args.threads or 'own'}; ms, best of "
          f"{args.repeats}")
    from gpu_bptt.backends import get_backend

    get_backend("cpu")  # compiles or loads the loops
    with blas_threads(args.threads):
        rows = {name: parts(problem, name, args.repeats) for name in ("numpy", "cpu")}
        extra = products(args.size, args.cell, args.repeats)
    print(f"{'':<42}{'numpy':>10}{'cpu':>10}")
    for label in rows["numpy"]:
        print(f"{label:<42}{rows['numpy'][label]:>10.1f}{rows['cpu'][label]:>10.1f}")
    for label, ms in extra.items():
        print(f"{label:<42}{ms:>10.1f}")


if __name__ == "__main__":
    main()
