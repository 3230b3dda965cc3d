"""The cells the benchmark runs (`--cell`): what each one's problem holds, how our API runs it, and
what its outputs are. One home for these facts; the contenders and sizes.py read them.

Elman: h[t] = tanh(x[t] @ W + h[t-1] @ V + b). LSTM and GRU: PyTorch's gate order and formulas
(gpu_bptt.cells.lstm, gpu_bptt.cells.gru), W (I, G·H), V (H, G·H), no projection.
"""
from __future__ import annotations

CELLS = ("elman", "lstm", "gru")
#: gates G: the products are G·H columns wide
GATES = {"elman": 1, "lstm": 4, "gru": 3}
#: the problem's arrays, in the order they are drawn (Elman's order is that of its first results)
INPUTS = {"elman": ("x", "W", "V", "b", "h0", "dh"),
          "lstm": ("x", "W", "V", "b", "h0", "c0", "dh"),
          "gru": ("x", "W", "V", "b_x", "b_h", "h0", "dh")}
#: what is checked against the float64 reference
OUTPUTS = {"elman": ("h", "dx", "dW", "dV", "db", "dh0"),
           "lstm": ("h", "dx", "dW", "dV", "db", "dh0", "dc0"),
           "gru": ("h", "dx", "dW", "dV", "db_x", "db_h", "dh0")}
#: the parts of the problem that are biases and initial states (for the compulsory bytes)
BIASES = {"elman": ("b",), "lstm": ("b",), "gru": ("b_x", "b_h")}
STATES = {"elman": ("h0",), "lstm": ("h0", "c0"), "gru": ("h0",)}


def check_cell(cell) -> str:
    if cell not in CELLS:
        raise ValueError(f"cell: expected one of {CELLS}, got {cell!r}")
    return cell


def forward(cell, a, backend, algo="auto"):
    """Our forward of `cell` on the arrays `a` (INPUTS[cell] but dh): the cell's Output."""
    from .. import cells

    if cell == "elman":
        return cells.elman_forward(a["x"], a["W"], a["V"], a["b"], a["h0"], backend=backend,
                                   algo=algo)
    if cell == "lstm":
        return cells.lstm_forward(a["x"], a["W"], a["V"], a["b"], a["h0"], a["c0"],
                                  backend=backend, algo=algo)
    return cells.gru_forward(a["x"], a["W"], a["V"], a["b_x"], a["b_h"], a["h0"],
                             backend=backend, algo=algo)


def backward(cell, dh, out):
    """Our backward of `cell` for the loss Σ h·dh, from the forward's Output: the cell's Grads."""
    from .. import cells

    run = {"elman": cells.elman_backward, "lstm": cells.lstm_backward,
           "gru": cells.gru_backward}[cell]
    return run(dh, out.cache)


def outputs(cell, out, grads, host) -> dict:
    """{name: host float64 array} for OUTPUTS[cell] from our Output and Grads; host(a) moves one."""
    return {k: host(out.h if k == "h" else getattr(grads, k)) for k in OUTPUTS[cell]}
