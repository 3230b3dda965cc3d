"""The contenders: everything that computes the Elman forward and BPTT backward, each only where
it can run here. Nothing is imported at module load; each probe imports its own framework.

A contender is prepared for one problem (`setup`), then runs `forward()` and `backward()` (the
backward of the latest forward) as often as the timer asks; `sync()` waits for the device;
`outputs()` gives h and the gradients as host float64 arrays for the correctness check.
"""
from __future__ import annotations

import os

import numpy as np


class NotApplicable(Exception):
    """The contender cannot run this problem by design (e.g. past an algorithm's size limit)."""


class Contender:
    name = "?"
    device = "cpu"        # "cpu" or "gpu": which presets it belongs to by default
    timer = "wall"        # "wall", "cupy" (device events) or "torch" (device events)
    memory = None         # how peak memory is measured: "tracemalloc", "cupy", "torch" or None
    tolerance = None      # relative error allowed in the check; None: the dtype's default
    note = ""
    FIXED = ("name", "device", "timer", "memory", "tolerance", "note", "options")

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
    """gpu_bptt.elman_forward / elman_backward on one backend configuration.

    make_backend(**backend_options) builds the backend at setup (e.g. CudaBackend(gemm="own"))."""

    def __init__(self, name, make_backend, algo="auto", device="cpu", backend_options=None):
        self.name, self.device = name, device
        self.options = dict(make_backend=make_backend, algo=algo,
                            backend_options=dict(backend_options or {}))
        self.timer = "cupy" if device == "gpu" else "wall"
        self.memory = "cupy" if device == "gpu" else "tracemalloc"

    def setup(self, problem):
        self.bk = self.options["make_backend"](**self.options["backend_options"])
        algo, s = self.options["algo"], problem.size
        try:  # an algorithm asked for by name where it cannot run is a limit, not a failure
            self.bk.resolve_algo(algo, s.T, s.B, s.H, problem.dtype)
        except ValueError as e:
            raise NotApplicable(str(e)) from None
        self.a = {k: self.bk.asarray(v) for k, v in problem.arrays().items()}

    def forward(self):
        from ..cells import elman_forward

        a = self.a
        self.out = elman_forward(a["x"], a["W"], a["V"], a["b"], a["h0"], backend=self.bk,
                                 algo=self.options["algo"])

    def backward(self):
        from ..cells import elman_backward

        self.g = elman_backward(self.a["dh"], self.out.cache)

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
        g = self.g
        return dict(h=_host(self.out.h), dx=_host(g.dx), dW=_host(g.dW), dV=_host(g.dV),
                    db=_host(g.db), dh0=_host(g.dh0))


def _ours(skipped):
    from ..backends import available_backends, get_backend

    found = [Ours("numpy", lambda: get_backend("numpy"))]
    reason = available_backends().get("cuda")
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
    step, in CuPy (each product a cuBLAS call) or NumPy. tanh only."""

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


# -- PyTorch nn.RNN --------------------------------------------------------------------------------
class TorchRNN(Contender):
    """torch.nn.RNN(tanh), one layer, with W, V, b copied in (b_hh = 0). On the GPU it runs cuDNN,
    with TF32 off or on as named; on the CPU it uses as many threads as there are cores."""

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
        rnn = torch.nn.RNN(I, H, nonlinearity="tanh", bias=True).to(dev, dt)
        with torch.no_grad():
            rnn.weight_ih_l0.copy_(torch.from_numpy(problem.W.T.copy()))
            rnn.weight_hh_l0.copy_(torch.from_numpy(problem.V.T.copy()))
            rnn.bias_ih_l0.copy_(torch.from_numpy(problem.b))
            rnn.bias_hh_l0.zero_()
        self.rnn = rnn
        self.x = torch.from_numpy(problem.x).to(dev).requires_grad_()
        self.h0 = torch.from_numpy(problem.h0[None]).to(dev).requires_grad_()
        self.dh = torch.from_numpy(problem.dh).to(dev)

    def forward(self):
        for t in (self.x, self.h0, *self.rnn.parameters()):
            t.grad = None
        self.y, _ = self.rnn(self.x, self.h0)

    def backward(self):
        self.y.backward(self.dh)

    def sync(self):
        if self.device == "gpu":
            self.torch.cuda.synchronize()

    def outputs(self):
        def h(t):
            return t.detach().cpu().double().numpy()

        r = self.rnn
        return dict(h=h(self.y), dx=h(self.x.grad), dW=h(r.weight_ih_l0.grad).T,
                    dV=h(r.weight_hh_l0.grad).T, db=h(r.bias_ih_l0.grad), dh0=h(self.h0.grad)[0])

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

        def f(x, W, V, b, h0):
            p = jnp.einsum("tbi,ih->tbh", x, W, precision="highest") + b

            def step(h, p_t):
                h = jnp.tanh(p_t + jnp.matmul(h, V, precision="highest"))
                return h, h

            return jax.lax.scan(step, h0, p)[1]

        self._fwd = jax.jit(lambda *a: jax.vjp(f, *a))
        self._bwd = jax.jit(lambda pull, dh: pull(dh))
        a = problem.arrays()
        self.args = [jax.device_put(a[k]) for k in ("x", "W", "V", "b", "h0")]
        self.dh = jax.device_put(a["dh"])

    def forward(self):
        self.h, self.pull = self._fwd(*self.args)

    def backward(self):
        self.g = self._bwd(self.pull, self.dh)

    def sync(self):
        self.jax.block_until_ready((self.h, getattr(self, "g", None)))

    def outputs(self):
        dx, dW, dV, db, dh0 = (_host(g) for g in self.g)
        return dict(h=_host(self.h), dx=dx, dW=dW, dV=dV, db=db, dh0=dh0)


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


def discover(names=None, device=None):
    """(contenders, {name: why skipped}). names: exact names or prefixes ("cuda" takes every cuda
    variant); None: every default contender, or those for `device` ("cpu"/"gpu") when given."""
    skipped: dict = {"emulator": "not timed: it runs the CUDA kernels on the CPU to verify them"}
    found = _ours(skipped) + _torch(skipped) + _cupy_loop(skipped) + _jax(skipped)
    if names:
        found += [make() for n, make in EXTRA.items() if n in names]
        picked = [c for c in found if any(c.name == n or c.name.startswith(n) for n in names)]
        for n in names:
            if not any(c.name == n or c.name.startswith(n) for c in picked) and n not in skipped:
                skipped[n] = "no such contender here (see `gpu-bptt bench --list`)"
        return picked, skipped
    if device:
        found = [c for c in found if c.device == device]
    return found, skipped
