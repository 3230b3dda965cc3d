"""What the PyTorch wrapper costs over the functional core, forward + backward on CPU.

    python bench/torch_overhead.py [--T 100 --B 32 --H 128 --repeats 40 --json out.json]

Contenders on the same data: `core` (elman_forward + elman_backward on NumPy arrays), `op`
(gpu_bptt.torch.elman + torch.autograd.grad through the custom ops), `function` (the same through
the autograd.Function that eager calls take), `module` (gpu_bptt.torch.RNN forward + backward,
which adds the weight transposes and bias sum of the nn.RNN layout) and, for scale, torch.nn.RNN.
Contenders take turns in blocks (see measure); torch.nn.RNN is timed apart, its OpenMP workers
spinning after each call would slow the next NumPy call. The median is kept.
Also times a tiny problem (T=B=1, H=4), where the fixed cost per call shows.
"""
import argparse
import json
import os
import statistics
import time

import numpy as np
import torch

import gpu_bptt
import gpu_bptt.torch as gt
from gpu_bptt.bench.report import cpu_name


def contenders(T, B, I, H, dtype):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(T, B, I, generator=g, dtype=dtype)
    W = torch.randn(I, H, generator=g, dtype=dtype) * H ** -0.5
    V = torch.randn(H, H, generator=g, dtype=dtype) * H ** -0.5
    b = torch.randn(H, generator=g, dtype=dtype) * 0.1
    h0 = torch.randn(B, H, generator=g, dtype=dtype) * 0.1
    dh = torch.randn(T, B, H, generator=g, dtype=dtype)
    dh_last = torch.randn(B, H, generator=g, dtype=dtype)
    arrays = [t.numpy() for t in (x, W, V, b, h0, dh, dh_last)]  # the core's own inputs

    # Every contender keeps its gradients until its next call starts, as `.grad` does in training:
    # the same allocation pattern for all (it alone moves these timings by 10-30% here).
    kept = []

    def core():
        kept.clear()
        xa, Wa, Va, ba, h0a, dha, dla = arrays
        out = gpu_bptt.elman_forward(xa, Wa, Va, ba, h0a, backend="numpy")
        kept.append(gpu_bptt.elman_backward(dha, out.cache, dh_last=dla))

    leaves = [t.clone().requires_grad_() for t in (x, W, V, b, h0)]

    def op(impl):
        def run():
            kept.clear()
            h, h_last = gt.elman(*leaves, backend="numpy", impl=impl)
            kept.append(torch.autograd.grad((h, h_last), leaves, (dh, dh_last)))
        return run

    rnn = gt.RNN(I, H, dtype=dtype)
    ref = torch.nn.RNN(I, H, dtype=dtype)
    xin = x.clone().requires_grad_()
    h0in = h0[None].clone().requires_grad_()

    def module(m):
        def run():
            m.zero_grad(set_to_none=True)
            xin.grad = h0in.grad = None
            out, h_n = m(xin, h0in)
            torch.autograd.backward((out, h_n), (dh, dh_last[None]))
        return run

    return ({"core": core, "op": op("custom_op"), "function": op("function"), "module": module(rnn)},
            {"torch.nn.RNN": module(ref)})


def measure(fns, repeats, blocks=5, warmup=3):
    """Median seconds per call. Blocks of repeats/blocks calls of one contender, the contenders
    taking turns: drift on a shared machine hits them alike, and within a block each one runs
    after itself (so it does not pay for the memory the previous contender left behind)."""
    times = {k: [] for k in fns}
    for _ in range(blocks):
        for k, f in fns.items():
            for _ in range(warmup):
                f()
            for _ in range(max(1, repeats // blocks)):
                t0 = time.perf_counter()
                f()
                times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--T", type=int, default=100)
    ap.add_argument("--B", type=int, default=32)
    ap.add_argument("--I", type=int, default=128)
    ap.add_argument("--H", type=int, default=128)
    ap.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    ap.add_argument("--repeats", type=int, default=40)
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()
    dtype = getattr(torch, args.dtype)
    rows = []
    for T, B, I, H, reps in ((args.T, args.B, args.I, args.H, args.repeats), (1, 1, 4, 4, 200)):
        ours, theirs = contenders(T, B, I, H, dtype)
        med = measure(ours, reps)
        # Apart: PyTorch's OpenMP workers keep spinning after its kernels and would slow
        # whatever NumPy/OpenBLAS call follows them.
        med.update(measure(theirs, reps))
        rows.append(dict(T=T, B=B, I=I, H=H, repeats=reps, median_s=med))
    names = list(rows[0]["median_s"])
    print(f"{'T':>4} {'B':>3} {'H':>4} | " + " | ".join(f"{k:>12}" for k in names))
    for r in rows:
        m = r["median_s"]
        print(f"{r['T']:>4} {r['B']:>3} {r['H']:>4} | " + " | ".join(f"{v * 1e3:9.3f} ms" for v in m.values()))
        print(f"{'over core':>13} | " + " | ".join(
            f"{100 * (m[k] / m['core'] - 1):+8.1f} % " if k != "core" else f"{'':>12}" for k in names))
        print(f"{'':>13} | " + " | ".join(
            f"{1e6 * (m[k] - m['core']):+8.0f} us " if k != "core" else f"{'':>12}" for k in names))
    if args.json:
        info = dict(device=cpu_name(), dtype=args.dtype, omp_num_threads=os.environ.get("OMP_NUM_THREADS"),
                    torch=torch.__version__, numpy=np.__version__, gpu_bptt=gpu_bptt.__version__,
                    torch_threads=torch.get_num_threads(), results=rows)
        with open(args.json, "w") as f:
            json.dump(info, f, indent=1)


if __name__ == "__main__":
    main()
