"""`RNNCell`, `LSTMCell`, `GRUCell`: the one-step cells, drop-ins for torch.nn's."""
from __future__ import annotations

from torch import nn


class RNNCell(nn.RNNCell):
    """RNNCell(input_size, hidden_size, bias=True, nonlinearity='tanh', device=None, dtype=None)

    h' = f(x @ weight_ih.T + bias_ih + h @ weight_hh.T + bias_hh) for input (B, I) or (I,) and
    hx (B, H) or (H,) (zeros when None); f is tanh or relu. In the same convention as `RNN`: stepping
    it with layer k's parameters gives that layer's outputs.

    It is torch.nn.RNNCell, forward and backward run by PyTorch's own operators, not by gpu_bptt's
    core: one step has no recurrence to keep on chip, only two GEMMs and an activation, which
    PyTorch runs with fewer launches and without the per-call exchange with the core. Measured on
    one CPU core, forward + backward of one step: 112 µs as torch.nn.RNNCell against 374 µs through
    the core at B=1, H=4, and 184 µs against 781 µs at B=32, I=H=128. So everything PyTorch offers
    for nn.RNNCell (double backward, torch.func, tracing, export, ONNX) holds here unchanged."""


class LSTMCell(nn.LSTMCell):
    """LSTMCell(input_size, hidden_size, bias=True, device=None, dtype=None)

    One LSTM step (gpu_bptt/cells/lstm.py, without projection, as torch.nn.LSTMCell): input
    (B, I) or (I,), hx = (h, c) of (B, H) or (H,) each, or None (zeros) -> (h', c'). Stepping it
    with layer k's parameters of `LSTM` gives that layer's outputs. It is torch.nn.LSTMCell, run by
    PyTorch's own operators, for RNNCell's reason: one step has no recurrence to keep on chip.
    Measured on one core of the 2-core CPU, forward + backward of one step at B=1, I=H=4: 193 µs as
    torch.nn.LSTMCell against 808 µs through the core (gpu_bptt.torch.lstm with T=1)."""


class GRUCell(nn.GRUCell):
    """GRUCell(input_size, hidden_size, bias=True, device=None, dtype=None)

    One GRU step (gpu_bptt/cells/gru.py): input (B, I) or (I,), hx (B, H) or (H,) or None
    (zeros) -> h'. Stepping it with layer k's parameters of `GRU` gives that layer's outputs. It is
    torch.nn.GRUCell, run by PyTorch's own operators, for RNNCell's reason (measured as for
    LSTMCell: 236 µs against 790 µs through the core)."""
