"""The contenders: everything that computes a cell's forward and BPTT backward (Elman, LSTM, GRU:
cells.py), each only where it can run here. Nothing is imported at module load; each probe imports
its own framework.

A contender is prepared for one problem (`setup`), then runs `forward()` and `backward()` (the
backward of the latest forward) as often as the timer asks; `sync()` waits for the device;
`outputs()` gives h and the gradients as host float64 arrays for the correctness check.
"""
from __future__ import annotations

import os
from contextlib import ExitStack

import numpy as np

from . import cells


class NotApplicable(Exception):
    """The contender cannot run this problem by design (e.g. past an algorithm's size limit)."""


class Contender:
    name = "?"
    device = "cpu"        # "cpu" or "gpu": which presets it belongs to by default
    timer = "wall"        # "wall", "cupy" (device events) or "torch" (device events)
    memory = None         # how peak memory is measured: "tracemalloc", "cupy", "torch" or None
    tolerance = None      # relative error allowed in the check; None: the dtype's default
    note = ""
    for_cells = cells.CELLS  # the cells it can run
    blas_threads = None   # the BLAS thread limit it runs under; None: the BLAS's own
    FIXED = ("name", "device", "timer", "memory", "tolerance", "note", "options", "for_cells",
             "blas_threads")

    def setup(self, problem):
        raise NotImplementedError

    def forward(self):
        raise NotImplementedError

    def backward(self):
        raise NotImplementedError

    def sync(self):
        pass

    def used(self):
        """The algorithm the last forward ran, for contenders that choose one; else None."""
        return None

    def outputs(self) -> dict:
        raise NotImplementedError

    def teardown(self):
        """Drop every array so the next contender starts with free memory."""
        for k in list(vars(self)):
            if k not in self.FIXED:
                delattr(self, k)


def _host(a):
    from ..validate import to_host

    return None if a is None else np.asarray(to_host(a), dtype=np.float64)


# -- ours ------------------------------------------------------------------------------------------
class Ours(Contender):
    """gpu_bptt's <cell>_forward / <cell>_backward on one backend configuration.

    make_backend(**backend_options) builds the backend at setup (e.g. CudaBackend(gemm="own")).
    blas_threads: n holds the CPU BLAS to n threads (gpu_bptt.blas_threads) from setup to
    teardown, as training does; None leaves the BLAS its own."""

    def __init__(self, name, make_backend, algo="auto", device="cpu", backend_options=None,
                 blas_threads=None):
        self.name, self.device = name, device
        self.options = dict(make_backend=make_backend, algo=algo,
                            backend_options=dict(backend_options or {}))
        self.blas_threads = blas_threads or None
        if self.blas_threads:
            self.note = f"BLAS held to {blas_threads} thread{'s' if blas_threads > 1 else ''}"
        self.timer = "cupy" if device == "gpu" else "wall"
        self.memory = "cupy" if device == "gpu" else "tracemalloc"

    def setup(self, problem):
        from ..backends import Backend
        from ..blas_threads import blas_threads

        self.limit = ExitStack()
        self.limit.enter_context(blas_threads(self.blas_threads))
        self.bk = self.options["make_backend"](**self.options["backend_options"])
        self.cell = problem.cell
        seq = f"{self.cell}_fwd_seq"
        if getattr(type(self.bk), seq, None) is getattr(Backend, seq):
            raise NotApplicable(f"the {self.bk.name} backend has no {self.cell} recurrence")
        algo, s = self.options["algo"], problem.size
        # Elman's call as before the gated cells (a backend may not take `cell` yet)
        cell = {} if self.cell == "elman" else {"cell": self.cell}
        try:  # an algorithm asked for by name where it cannot run is a limit, not a failure
            self.bk.resolve_algo(algo, s.T, s.B, s.H, problem.dtype, **cell)
        except ValueError as e:
            raise NotApplicable(str(e)) from None
        self.a = {k: self.bk.asarray(v) for k, v in problem.arrays().items()}

    def forward(self):
        self.out = cells.forward(self.cell, self.a, self.bk, self.options["algo"])

    def backward(self):
        self.g = cells.backward(self.cell, self.a["dh"], self.out)

    def used(self):
        """What ran, from the forward's plan (e.g. "step v2"), and our GEMM where it did the
        products outside the loop."""
        own = getattr(self.bk, "gemm", None) == "own"
        return self.out.cache.plan.label + (", gemm own" if own else "")

    def sync(self):
        if self.device == "gpu":
            import cupy

            cupy.cuda.get_current_stream().synchronize()

    def outputs(self):
        return cells.outputs(self.cell, self.out, self.g, _host)

    def teardown(self):
        limit = getattr(self, "limit", None)
        super().teardown()
        if limit is not None:
            limit.close()  # the BLAS's threads as they were


def _ours(skipped, blas_threads=None):
    from ..backends import available_backends, get_backend

    found = [Ours("numpy", lambda: get_backend("numpy"), blas_threads=blas_threads)]
    status = available_backends()
    if status.get("cpu"):
        skipped["cpu"] = status["cpu"]
    else:
        from ..backends.cpu_backend import CpuBackend

        found.append(Ours("cpu", lambda: get_backend("cpu"), blas_threads=blas_threads))
        if (os.cpu_count() or 1) > 1:  # the loop's rows on one thread, beside one per core
            found.append(Ours("cpu[threads=1]", CpuBackend, backend_options={"threads": 1},
                              blas_threads=blas_threads))
    reason = status.get("cuda")
    if reason:
        skipped["cuda"] = reason
        return found
    from ..backends.cuda import backend as mod

    gemms = tuple(getattr(mod, "GEMM_CHOICES", ("cublas",)))
    # the kernel versions of each algorithm, and the constructor's keyword that picks them
    versions = {"step": (tuple(getattr(mod, "STEP_VERSIONS", ())), "step"),
                "persistent": (tuple(getattr(mod, "PERSIST_CHOICES", ())), "persist")}
    algos = [a for a in getattr(mod.CudaBackend, "algos", ("auto",)) if a != "auto"] or ["auto"]
    for algo in algos:
        kernels, keyword = versions.get(algo, ((), None))
        for version in sorted(kernels) or (None,):
            for gemm in gemms:
                label = ",".join(s for s in (algo, version, gemm) if s)
                options = {"gemm": gemm, **({keyword: version} if version else {})}
                # a fresh backend per variant, built with its options
                found.append(Ours(f"cuda[{label}]", mod.CudaBackend, algo=algo, device="gpu",
                                  backend_options=options))
    return found


# -- a plain per-step loop in an array module: the naive baseline ----------------------------------
class XpLoop(Contender):
    """What a user writes first: x @ W for all steps, then one GEMM call and fresh temporaries per
    step, in CuPy (each product a cuBLAS call) or NumPy. Elman with tanh only."""

    for_cells = ("elman",)

    def __init__(self, xp_name):
        self.name = f"{xp_name}-loop"
        self.options = {"xp": xp_name}
        self.device = "gpu" if xp_name == "cupy" else "cpu"
        self.timer = "cupy" if xp_name == "cupy" else "wall"
        self.memory = "cupy" if xp_name == "cupy" else "tracemalloc"

    def setup(self, problem):
        import importlib

        self.xp = importlib.import_module(self.options["xp"])
        self.a = {k: self.xp.asarray(v) for k, v in problem.arrays().items()}

    def forward(self):
        xp, a = self.xp, self.a
        T, B, I = a["x"].shape
        H = a["W"].shape[1]
        p = (a["x"].reshape(T * B, I) @ a["W"] + a["b"]).reshape(T, B, H)
        h = xp.empty_like(p)
        prev = a["h0"]
        for t in range(T):
            h[t] = xp.tanh(p[t] + prev @ a["V"])
            prev = h[t]
        self.h = h

    def backward(self):
        xp, a, h = self.xp, self.a, self.h
        T, B, H = h.shape
        I = a["x"].shape[2]
        du = xp.empty_like(h)
        nxt = None
        for t in range(T - 1, -1, -1):
            g = a["dh"][t] if nxt is None else a["dh"][t] + nxt @ a["V"].T
            du[t] = g * (1 - h[t] * h[t])
            nxt = du[t]
        du2 = du.reshape(T * B, H)
        h_prev = xp.concatenate([a["h0"][None], h[:-1]]).reshape(T * B, H)
        self.g = dict(dx=(du2 @ a["W"].T).reshape(T, B, I), dW=a["x"].reshape(T * B, I).T @ du2,
                      dV=h_prev.T @ du2, db=du2.sum(axis=0), dh0=du[0] @ a["V"].T)

    def sync(self):
        if self.device == "gpu":
            self.xp.cuda.get_current_stream().synchronize()

    def outputs(self):
        return dict(h=_host(self.h), **{k: _host(v) for k, v in self.g.items()})


# -- PyTorch nn.RNN, nn.LSTM, nn.GRU --------------------------------------------------------------
TORCH_MODULES = {"elman": "RNN", "lstm": "LSTM", "gru": "GRU"}


class TorchRNN(Contender):
    """torch.nn.RNN(tanh), nn.LSTM or nn.GRU (the problem's cell), one layer, with the problem's
    weights copied in (W = weight_ih.T, V = weight_hh.T; Elman's and the LSTM's b in bias_ih,
    bias_hh = 0; the GRU's b_x, b_h in bias_ih, bias_hh). On the GPU it runs cuDNN, with TF32 off
    or on as named; on the CPU it uses as many threads as there are cores."""

    def __init__(self, device, tf32=False):
        self.device = device
        self.options = {"tf32": tf32}
        self.name = "torch-cpu" if device == "cpu" else f"torch-cudnn-{'tf32' if tf32 else 'fp32'}"
        self.timer = "torch" if device == "gpu" else "wall"
        self.memory = "torch" if device == "gpu" else None
        self.tolerance = 3e-2 if tf32 else None

    def setup(self, problem):
        import torch

        self.torch = torch
        dev = "cuda" if self.device == "gpu" else "cpu"
        if dev == "cpu":
            torch.set_num_threads(os.cpu_count() or 1)
            self.note = f"{torch.get_num_threads()} threads"
        else:
            tf32 = self.options["tf32"]
            self._flags = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
            torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = tf32
        dt = getattr(torch, problem.dtype.name)
        I, H = problem.size.I, problem.size.H
        self.cell, a = problem.cell, problem.arrays()
        kind = getattr(torch.nn, TORCH_MODULES[self.cell])
        extra = {"nonlinearity": "tanh"} if self.cell == "elman" else {}
        rnn = kind(I, H, bias=True, **extra).to(dev, dt)
        b_ih, b_hh = (a["b_x"], a["b_h"]) if self.cell == "gru" else (a["b"], None)
        with torch.no_grad():
            rnn.weight_ih_l0.copy_(torch.from_numpy(a["W"].T.copy()))
            rnn.weight_hh_l0.copy_(torch.from_numpy(a["V"].T.copy()))
            rnn.bias_ih_l0.copy_(torch.from_numpy(b_ih))
            if b_hh is None:
                rnn.bias_hh_l0.zero_()
            else:
                rnn.bias_hh_l0.copy_(torch.from_numpy(b_hh))
        self.rnn = rnn
        self.x = torch.from_numpy(a["x"]).to(dev).requires_grad_()
        self.states = [torch.from_numpy(a[k][None]).to(dev).requires_grad_()
                       for k in cells.STATES[self.cell]]
        self.dh = torch.from_numpy(a["dh"]).to(dev)

    def forward(self):
        for t in (self.x, *self.states, *self.rnn.parameters()):
            t.grad = None
        states = self.states[0] if len(self.states) == 1 else tuple(self.states)
        self.y, _ = self.rnn(self.x, states)

    def backward(self):
        self.y.backward(self.dh)

    def sync(self):
        if self.device == "gpu":
            self.torch.cuda.synchronize()

    def outputs(self):
        def h(t):
            return t.detach().cpu().double().numpy()

        r = self.rnn
        out = dict(h=h(self.y), dx=h(self.x.grad), dW=h(r.weight_ih_l0.grad).T,
                   dV=h(r.weight_hh_l0.grad).T)
        out.update({f"d{k}": h(s.grad)[0] for k, s in zip(cells.STATES[self.cell], self.states)})
        if self.cell == "gru":
            out.update(db_x=h(r.bias_ih_l0.grad), db_h=h(r.bias_hh_l0.grad))
        else:
            out["db"] = h(r.bias_ih_l0.grad)
        return out

    def teardown(self):
        flags = getattr(self, "_flags", None)
        torch = getattr(self, "torch", None)
        super().teardown()
        if flags is not None:
            torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = flags
        if torch is not None and self.device == "gpu":
            torch.cuda.empty_cache()


def _torch(skipped):
    try:
        import torch
    except ImportError as e:
        skipped["torch"] = f"PyTorch is not installed ({e}); pip install gpu_bptt[torch]"
        return []
    found = [TorchRNN("cpu")]
    if not torch.cuda.is_available():
        skipped["torch-cudnn"] = "PyTorch sees no CUDA device"
    elif not torch.backends.cudnn.is_available():
        skipped["torch-cudnn"] = "PyTorch has no cuDNN"
    else:
        found += [TorchRNN("gpu", tf32=False), TorchRNN("gpu", tf32=True)]
    return found


# -- JAX lax.scan ----------------------------------------------------------------------------------
def _jax_steps(jax, jnp):
    """{cell: (step(carry, p_t, *weights) -> (carry, h), the carry's initial states)}: each cell's
    recurrence written for lax.scan; p_t = x[t] @ W + (the input bias)."""
    mm = lambda a, b: jnp.matmul(a, b, precision="highest")  # noqa: E731  (no TF32)
    sig = jax.nn.sigmoid

    def elman(h, p_t, V):
        h = jnp.tanh(p_t + mm(h, V))
        return h, h

    def lstm(hc, p_t, V):
        h, c = hc
        i, f, g, o = jnp.split(p_t + mm(h, V), 4, axis=-1)
        c = sig(f) * c + sig(i) * jnp.tanh(g)
        h = sig(o) * jnp.tanh(c)
        return (h, c), h

    def gru(h, p_t, V, b_h):
        xr, xz, xn = jnp.split(p_t, 3, axis=-1)
        hr, hz, hn = jnp.split(mm(h, V) + b_h, 3, axis=-1)
        r, z = sig(xr + hr), sig(xz + hz)
        n = jnp.tanh(xn + r * hn)
        h = (1 - z) * n + z * h
        return h, h

    return {"elman": elman, "lstm": lstm, "gru": gru}


class JaxScan(Contender):
    """The recurrence as jax.lax.scan under jit, gradients by jax.vjp; float32 matmuls at "highest"
    precision (no TF32). The forward keeps what the backward needs, as ours does."""

    def __init__(self, device):
        self.device = device
        self.name = f"jax-scan-{device}"
        self.options = {}

    def setup(self, problem):
        import jax
        import jax.numpy as jnp

        self.jax = jax
        self.cell = problem.cell
        step = _jax_steps(jax, jnp)[self.cell]
        self.names = [k for k in cells.INPUTS[self.cell] if k != "dh"]
        states = cells.STATES[self.cell]

        def f(*args):
            a = dict(zip(self.names, args))
            p = jnp.einsum("tbi,ih->tbh", a["x"], a["W"], precision="highest")
            p = p + a["b_x" if self.cell == "gru" else "b"]
            weights = (a["V"], a["b_h"]) if self.cell == "gru" else (a["V"],)
            carry = tuple(a[k] for k in states) if len(states) > 1 else a[states[0]]
            return jax.lax.scan(lambda c, p_t: step(c, p_t, *weights), carry, p)[1]

        self._fwd = jax.jit(lambda *a: jax.vjp(f, *a))
        self._bwd = jax.jit(lambda pull, dh: pull(dh))
        a = problem.arrays()
        self.args = [jax.device_put(a[k]) for k in self.names]
        self.dh = jax.device_put(a["dh"])

    def forward(self):
        self.h, self.pull = self._fwd(*self.args)

    def backward(self):
        self.g = self._bwd(self.pull, self.dh)

    def sync(self):
        self.jax.block_until_ready((self.h, getattr(self, "g", None)))

    def outputs(self):
        return dict(h=_host(self.h), **{f"d{k}": _host(g) for k, g in zip(self.names, self.g)})


def _jax(skipped):
    # JAX would take 75% of the GPU's memory when it starts, from every contender after it in this
    # process; it allocates as it goes instead unless the user says otherwise
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    try:
        import jax
    except ImportError as e:
        skipped["jax"] = f"JAX is not installed ({e})"
        return []
    return [JaxScan("gpu" if jax.default_backend() in ("gpu", "cuda") else "cpu")]


def _cupy_loop(skipped):
    from ..backends.cuda import cuda_unavailable_reason

    reason = cuda_unavailable_reason()
    if reason:
        skipped["cupy-loop"] = reason
        return []
    return [XpLoop("cupy")]


EXTRA = {"numpy-loop": lambda: XpLoop("numpy")}  # only when named


def discover(names=None, device=None, cell="elman", blas_threads=None):
    """(contenders, {name: why skipped}). names: exact names or prefixes ("cuda" takes every cuda
    variant); None: every default contender, or those for `device` ("cpu"/"gpu") when given.
    cell: those that run it (cells.CELLS); blas_threads: the numpy contender's BLAS limit."""
    cells.check_cell(cell)
    skipped: dict = {"emulator": "not timed: it runs the CUDA kernels on the CPU to verify them"}
    found = (_ours(skipped, blas_threads) + _torch(skipped) + _cupy_loop(skipped)
             + _jax(skipped))
    if names:
        found += [make() for n, make in EXTRA.items() if n in names]
    for c in [c for c in found if cell not in c.for_cells]:
        found.remove(c)
        skipped[c.name] = f"runs {', '.join(c.for_cells)} only, not {cell}"
    if names:
        picked = [c for c in found if any(c.name == n or c.name.startswith(n) for n in names)]
        for n in names:
            if not any(c.name == n or c.name.startswith(n) for c in picked) and n not in skipped:
                skipped[n] = "no such contender here (see `gpu-bptt bench --list`)"
        return picked, skipped
    if device:
        found = [c for c in found if c.device == device]
    return found, skipped
