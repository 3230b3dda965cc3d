"""Central finite differences in float64 against analytic gradients, on any backend.

`gradcheck(f, inputs, analytic)` is the general tool; `elman_gradcheck`, `lstm_gradcheck`,
`gru_gradcheck` and `network_gradcheck` wrap it for the functional cells and for a `gpu_bptt.nn`
network.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .validate import to_host


@dataclass
class GradcheckResult:
    ok: bool
    atol: float
    rtol: float
    #: name -> (max abs error, max rel error, entries checked)
    errors: dict = field(default_factory=dict)

    def __str__(self):
        lines = [f"gradcheck {'passed' if self.ok else 'FAILED'} (atol={self.atol:g}, rtol={self.rtol:g})"]
        for k, (a, r, n) in self.errors.items():
            lines.append(f"  {k:>8}: max abs err {a:.3e}, max rel err {r:.3e} over {n} entries")
        return "\n".join(lines)

    def assert_ok(self):
        if not self.ok:
            raise AssertionError(str(self))
        return self


def _entries(shape, max_entries, rng):
    n = int(np.prod(shape))
    if max_entries is None or n <= max_entries:
        return np.arange(n)
    return np.sort(rng.choice(n, size=max_entries, replace=False))


def gradcheck(f, inputs: dict, analytic: dict, *, eps=1e-6, atol=1e-7, rtol=1e-5,
              max_entries=None, seed=0) -> GradcheckResult:
    """Compare `analytic[name]` with (f(x+eps) - f(x-eps)) / 2eps for each entry of `inputs[name]`.

    f(**inputs) -> scalar loss; it is called with float64 NumPy copies, never the caller's arrays.
    analytic: name -> gradient array (any backend; compared on the host). Names of `analytic`
    select which inputs are checked. max_entries: check a random subset of each array (seeded).
    Pass when |analytic - numeric| <= atol + rtol * |numeric| everywhere."""
    rng = np.random.default_rng(seed)
    base = {k: (None if v is None else np.array(to_host(v), dtype=np.float64)) for k, v in inputs.items()}
    result = GradcheckResult(ok=True, atol=atol, rtol=rtol)
    for name, grad in analytic.items():
        if name not in base or base[name] is None:
            raise ValueError(f"analytic: {name!r} is not among the inputs")
        ga = np.asarray(to_host(grad), dtype=np.float64)
        x = base[name]
        if ga.shape != x.shape:
            raise ValueError(f"analytic[{name!r}]: shape {ga.shape} differs from the input's {x.shape}")
        flat = x.reshape(-1)
        idx = _entries(x.shape, max_entries, rng)
        num = np.empty(len(idx))
        for j, i in enumerate(idx):
            old = flat[i]
            flat[i] = old + eps
            fp = float(f(**base))
            flat[i] = old - eps
            fm = float(f(**base))
            flat[i] = old
            num[j] = (fp - fm) / (2 * eps)
        ana = ga.reshape(-1)[idx]
        err = np.abs(ana - num)
        rel = err / np.maximum(np.abs(num), 1e-300)
        ok = bool(np.all(err <= atol + rtol * np.abs(num)))
        result.errors[name] = (float(err.max(initial=0.0)), float(rel.max(initial=0.0)), len(idx))
        result.ok &= ok
    return result


def _cell_gradcheck(forward, backward, inputs: dict, grads: dict, upstream: dict, backend, kw):
    """Gradcheck of a functional cell on `backend`, in float64, with the loss
    e = Σ_k Σ out.<attr_k> * g_k over upstream = {argument name: (output attribute, g_k or None)},
    so that ∂e/∂out.<attr_k> = g_k. forward(**inputs, backend=, need_cache=) runs the cell;
    backward(cache, **upstream gradients by argument name) its backward; grads: {input name:
    attribute of backward's result}, checked for the inputs given (not None)."""
    from .backends import get_backend

    bk = get_backend(backend)
    f64 = lambda a: None if a is None else bk.asarray(np.asarray(to_host(a), dtype=np.float64))
    if all(g is None for _, g in upstream.values()):
        raise ValueError(f"{', '.join(upstream)}: at least one gradient must be given")
    up = {name: (attr, f64(g)) for name, (attr, g) in upstream.items()}

    def run(need_cache, **arrays):
        return forward(**{k: f64(v) for k, v in arrays.items()}, backend=bk, need_cache=need_cache)

    def loss(**arrays):
        out = run(False, **arrays)
        return sum(float((getattr(out, attr) * g).sum())
                   for attr, g in up.values() if g is not None)

    g = backward(run(True, **inputs).cache, **{name: g for name, (_, g) in up.items()})
    analytic = {k: getattr(g, attr) for k, attr in grads.items() if inputs[k] is not None}
    return gradcheck(loss, inputs, analytic, **kw)


def elman_gradcheck(x, W, V, b=None, h0=None, *, dh=None, dh_last=None, activation="tanh",
                    lengths=None, backend=None, reverse=False, **kw) -> GradcheckResult:
    """Gradcheck of elman_forward/elman_backward on `backend`, in float64, with the loss
    e = Σ h * dh + Σ h_last * dh_last (so ∂e/∂h = dh and ∂e/∂h_last = dh_last); reverse: the
    reversed direction (elman_forward's)."""
    from .cells import elman_backward, elman_forward

    return _cell_gradcheck(
        lambda **a: elman_forward(**a, activation=activation, lengths=lengths, reverse=reverse),
        lambda cache, dh, dh_last: elman_backward(dh, cache, dh_last=dh_last),
        dict(x=x, W=W, V=V, b=b, h0=h0),
        dict(x="dx", W="dW", V="dV", b="db", h0="dh0"),
        dict(dh=("h", dh), dh_last=("h_last", dh_last)), backend, kw)


def lstm_gradcheck(x, W, V, b=None, h0=None, c0=None, *, R=None, dh=None, dh_last=None,
                   dc_last=None, lengths=None, backend=None, reverse=False,
                   **kw) -> GradcheckResult:
    """Gradcheck of lstm_forward/lstm_backward on `backend`, in float64, with the loss
    e = Σ h * dh + Σ h_last * dh_last + Σ c_last * dc_last; reverse: lstm_forward's."""
    from .cells import lstm_backward, lstm_forward

    return _cell_gradcheck(
        lambda **a: lstm_forward(**a, lengths=lengths, reverse=reverse),
        lambda cache, dh, dh_last, dc_last: lstm_backward(dh, cache, dh_last=dh_last,
                                                          dc_last=dc_last),
        dict(x=x, W=W, V=V, b=b, h0=h0, c0=c0, R=R),
        dict(x="dx", W="dW", V="dV", b="db", h0="dh0", c0="dc0", R="dR"),
        dict(dh=("h", dh), dh_last=("h_last", dh_last), dc_last=("c_last", dc_last)),
        backend, kw)


def gru_gradcheck(x, W, V, b_x=None, b_h=None, h0=None, *, dh=None, dh_last=None, lengths=None,
                  backend=None, reverse=False, **kw) -> GradcheckResult:
    """Gradcheck of gru_forward/gru_backward on `backend`, in float64, with the loss
    e = Σ h * dh + Σ h_last * dh_last; reverse: gru_forward's."""
    from .cells import gru_backward, gru_forward

    return _cell_gradcheck(
        lambda **a: gru_forward(**a, lengths=lengths, reverse=reverse),
        lambda cache, dh, dh_last: gru_backward(dh, cache, dh_last=dh_last),
        dict(x=x, W=W, V=V, b_x=b_x, b_h=b_h, h0=h0),
        dict(x="dx", W="dW", V="dV", b_x="db_x", b_h="db_h", h0="dh0"),
        dict(dh=("h", dh), dh_last=("h_last", dh_last)), backend, kw)


def network_gradcheck(net, loss_fn, x, target, *, lengths=None, **kw) -> GradcheckResult:
    """Gradcheck of every parameter of a float64 `gpu_bptt.nn` network under `loss_fn`."""
    params = net.parameters()
    originals = {k: p.copy() for k, p in params.items()}

    def loss(**values):
        for k, v in values.items():
            params[k][...] = net.backend.asarray(v)
        val, _ = loss_fn(net.forward(x, lengths=lengths), target, lengths=lengths)
        return val

    net.zero_grad()
    val, dy = loss_fn(net.forward(x, lengths=lengths), target, lengths=lengths)
    net.backward(dy)
    analytic = {k: g.copy() for k, g in net.gradients().items()}
    try:
        return gradcheck(loss, originals, analytic, **kw)
    finally:
        for k, v in originals.items():
            params[k][...] = v
