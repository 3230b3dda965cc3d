"""LSTM and GRU problems, and torch.nn.LSTM / nn.GRU in float64 as their independent reference
(docs/architecture.md §1 gives the weight mapping: W = weight_ih.T, V = weight_hh.T, ...).

The reference runs each example alone, over its own valid steps only (flipped for reverse=True,
then flipped back), so lengths and direction are torch's own plain forward pass: nothing of
gpu_bptt's padding or flipping is reused. Gradients come from torch.autograd on the loss
e = Σ h·dh + Σ h_last·dh_last (+ Σ c_last·dc_last), dh taken at valid steps only.
"""
from __future__ import annotations

import numpy as np
import torch

import gpu_bptt
from tests.tolerances import assert_close

LSTM_GRADS = ("dx", "dW", "dV", "db", "dR", "dh0", "dc0")
LSTM_OUTPUTS = ("h", "h_last", "c_last")
GRU_GRADS = ("dx", "dW", "dV", "db_x", "db_h", "dh0")
GRU_OUTPUTS = ("h", "h_last")


def cell_problem(cell, T, B, I, H, P=0, dtype=np.float64, seed=0, *, bias=True, h0=True,
                 c0=True, lengths=False):
    """A seeded problem for `cell` ("lstm" or "gru"): x, W, V, the biases (LSTM b; GRU b_x, b_h;
    None without bias), h0 (B, Hs) / c0 (B, H) or None, R (H, P) or None (LSTM, P > 0), lengths
    (B,) int32 or None (lengths=True: drawn in 1..T with lengths[0] = T), and the gradients from
    above dh (T, B, Hs), dh_last (B, Hs), dc_last (B, H) (LSTM). Weights of N(0, 1/fan_in)."""
    r = np.random.default_rng(seed)
    mk = lambda *shape, scale=0.5: (r.standard_normal(shape) * scale).astype(dtype)
    G = 4 if cell == "lstm" else 3
    Hs = P or H
    p = dict(x=mk(T, B, I), W=mk(I, G * H, scale=1 / np.sqrt(I)),
             V=mk(Hs, G * H, scale=1 / np.sqrt(Hs)), h0=mk(B, Hs) if h0 else None)
    if cell == "lstm":
        p.update(b=mk(G * H) if bias else None, c0=mk(B, H) if c0 else None,
                 R=mk(H, P, scale=1 / np.sqrt(H)) if P else None)
    else:
        p.update(b_x=mk(G * H) if bias else None, b_h=mk(G * H) if bias else None)
    if lengths is True:
        lengths = r.integers(1, T + 1, size=B).astype(np.int32)
        lengths[0] = T
    p["lengths"] = None if lengths is False else lengths
    p.update(dh=mk(T, B, Hs), dh_last=mk(B, Hs))
    if cell == "lstm":
        p["dc_last"] = mk(B, H)
    return p


def forward_args(cell, p):
    """The <cell>_forward arguments of a problem."""
    names = ("x", "W", "V", "b", "h0", "c0", "R", "lengths") if cell == "lstm" else \
        ("x", "W", "V", "b_x", "b_h", "h0", "lengths")
    return {k: p[k] for k in names}


def run(cell, backend, p, *, reverse=False, upstream=("dh", "dh_last", "dc_last")):
    """(output, grads) of problem p on `backend`; `upstream`: the gradients from above given."""
    if cell == "lstm":
        out = gpu_bptt.lstm_forward(**forward_args(cell, p), backend=backend, reverse=reverse)
        given = {k: p[k] if k in upstream else None for k in ("dh", "dh_last", "dc_last")}
        return out, gpu_bptt.lstm_backward(given.pop("dh"), out.cache, **given)
    out = gpu_bptt.gru_forward(**forward_args(cell, p), backend=backend, reverse=reverse)
    return out, gpu_bptt.gru_backward(p["dh"] if "dh" in upstream else None, out.cache,
                                      dh_last=p["dh_last"] if "dh_last" in upstream else None)


def _t(a, requires_grad=False):
    return torch.tensor(np.asarray(a, dtype=np.float64), requires_grad=requires_grad)


def torch_reference(cell, p, *, reverse=False, upstream=("dh", "dh_last", "dc_last")):
    """{name: array}: the outputs (LSTM_OUTPUTS / GRU_OUTPUTS) and gradients (LSTM_GRADS /
    GRU_GRADS; None where the forward has no such input) of torch.nn.LSTM / nn.GRU in float64."""
    x = p["x"]
    T, B, I = x.shape
    lstm = cell == "lstm"
    G = 4 if lstm else 3
    H = p["W"].shape[1] // G
    P = 0 if not lstm or p["R"] is None else p["R"].shape[1]
    Hs = P or H
    bias = (p["b"] if lstm else p["b_x"]) is not None
    m = (torch.nn.LSTM(I, H, bias=bias, proj_size=P) if lstm else torch.nn.GRU(I, H, bias=bias))
    m = m.double()
    r = np.random.default_rng(1)
    with torch.no_grad():
        m.weight_ih_l0.copy_(_t(p["W"].T))
        m.weight_hh_l0.copy_(_t(p["V"].T))
        if bias and lstm:  # b = bias_ih + bias_hh: split it at random, torch adds them back
            split = r.standard_normal(G * H)
            m.bias_ih_l0.copy_(_t(split))
            m.bias_hh_l0.copy_(_t(p["b"] - split))
        elif bias:
            m.bias_ih_l0.copy_(_t(p["b_x"]))
            m.bias_hh_l0.copy_(_t(p["b_h"]))
        if P:
            m.weight_hr_l0.copy_(_t(p["R"].T))
    xt = _t(x, True)
    h0 = _t(np.zeros((B, Hs)) if p["h0"] is None else p["h0"], True)
    c0 = _t(np.zeros((B, H)) if not lstm or p["c0"] is None else p["c0"], True)
    up = {k: (_t(p[k]) if k in upstream else None) for k in ("dh", "dh_last", "dc_last") if k in p}
    lengths = np.full(B, T) if p["lengths"] is None else p["lengths"]
    h = np.zeros((T, B, Hs))
    h_last, c_last = np.zeros((B, Hs)), np.zeros((B, H))
    loss = 0
    for b, L in enumerate(lengths):
        xb = xt[:L, b:b + 1]
        state = (h0[b:b + 1][None], c0[b:b + 1][None]) if lstm else h0[b:b + 1][None]
        y, state = m(xb.flip(0) if reverse else xb, state)
        y = y.flip(0) if reverse else y
        hn, cn = state if lstm else (state, None)
        if up["dh"] is not None:
            loss = loss + (y[:, 0] * up["dh"][:L, b]).sum()
        if up["dh_last"] is not None:
            loss = loss + (hn[0, 0] * up["dh_last"][b]).sum()
        if lstm and up["dc_last"] is not None:
            loss = loss + (cn[0, 0] * up["dc_last"][b]).sum()
        h[:L, b] = y[:, 0].detach().numpy()
        h_last[b] = hn[0, 0].detach().numpy()
        if lstm:
            c_last[b] = cn[0, 0].detach().numpy()
    loss.backward()
    g = lambda a: None if a.grad is None else a.grad.numpy()
    ref = dict(h=h, h_last=h_last, dx=g(xt), dW=g(m.weight_ih_l0).T, dV=g(m.weight_hh_l0).T,
               dh0=g(h0))
    if lstm:
        ref.update(c_last=c_last, dc0=g(c0), db=g(m.bias_ih_l0) if bias else None,
                   dR=g(m.weight_hr_l0).T if P else None)
        if bias:  # both torch biases receive the gradient on b
            np.testing.assert_allclose(g(m.bias_hh_l0), ref["db"], rtol=1e-13, atol=1e-13)
    else:
        ref.update(db_x=g(m.bias_ih_l0) if bias else None, db_h=g(m.bias_hh_l0) if bias else None)
    return ref


def assert_matches_reference(cell, out, grads, ref, dtype):
    """Every output and gradient of our run (out, grads) close to torch_reference's `ref` at
    dtype's tolerance; a gradient torch has none of (no bias, no projection) must be None."""
    outputs, names = (LSTM_OUTPUTS, LSTM_GRADS) if cell == "lstm" else (GRU_OUTPUTS, GRU_GRADS)
    assert out.h.dtype == dtype and grads.dW.dtype == dtype
    for name in outputs:
        assert_close(name, getattr(out, name), ref[name], dtype)
    for name in names:
        if ref[name] is None:
            assert getattr(grads, name) is None, f"{name}: expected None"
        else:
            assert_close(name, getattr(grads, name), ref[name], dtype)
