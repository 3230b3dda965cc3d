"""`LSTM` and `GRU`: drop-ins for torch.nn.LSTM and torch.nn.GRU whose recurrence runs in
gpu_bptt. The call, torch's checks, layers, directions and dropout are RNN's (base.py); here, the
cells, with torch.nn's parameters mapped per layer k (gpu_bptt/cells/lstm.py, gru.py):
LSTM: W = weight_ih_lk.T, V = weight_hh_lk.T, b = bias_ih_lk + bias_hh_lk, R = weight_hr_lk.T;
GRU: W = weight_ih_lk.T, V = weight_hh_lk.T, b_x = bias_ih_lk, b_h = bias_hh_lk.
"""
from __future__ import annotations

from .base import RecurrentBase, refuse_proj_size
from .gated_functional import gru, lstm


class LSTM(RecurrentBase):
    """LSTM(input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
    bidirectional=False, proj_size=0, device=None, dtype=None, *, backend=None, algo='auto')

    torch.nn.LSTM's arguments, attributes and call: input (T, B, I), (B, T, I) with batch_first,
    unbatched (T, I), or a PackedSequence; forward(input, hx=None) -> (output, (h_n, c_n)), hx =
    (h_0, c_0) or None (zeros); output (T, B, D·Hs), h_n (num_layers·D, B, Hs), c_n
    (num_layers·D, B, H), Hs = proj_size if proj_size else hidden_size, D = 2 when bidirectional.
    Dropout between layers as torch.nn.LSTM applies it on the CPU, `dropout` read at each call.
    backend, algo, memory, checkpoint_every: as for gpu_bptt.torch.RNN."""

    STATES = ("hx[0]", "hx[1]")

    def __init__(self, *args, backend=None, algo="auto", memory="full", checkpoint_every=None,
                 **kwargs):
        super().__init__("LSTM", *args, backend=backend, algo=algo, memory=memory,
                         checkpoint_every=checkpoint_every, **kwargs)

    def _state_sizes(self, input, batch_sizes):
        h = self.get_expected_hidden_size(input, batch_sizes)
        return [(h, "Expected hidden[0] size {}, got {}"),
                (h[:2] + (self.hidden_size,), "Expected hidden[1] size {}, got {}")]

    def layer_weights(self, k, direction=0):
        """(W, V, b, R) of layer k in the project's convention: views, except b (a sum); R is
        None without a projection."""
        w = self._layer_parameters(k, direction)
        b = w[2] + w[3] if self.bias else None
        return w[0].t(), w[1].t(), b, (w[-1].t() if self.proj_size > 0 else None)

    def _direction(self, k, d, x, states, lengths):
        W, V, b, R = self.layer_weights(k, d)
        h0, c0 = (None, None) if states is None else states
        if self.memory != "full":
            return self._recomputed("lstm", x, (W, V, b, h0, c0, R), lengths, d)
        return lstm(x, W, V, b, h0, c0, lengths, R=R, backend=self.backend, algo=self.algo,
                    reverse=d == 1)


class GRU(RecurrentBase):
    """GRU(input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
    bidirectional=False, device=None, dtype=None, *, backend=None, algo='auto')

    torch.nn.GRU's arguments, attributes and call: forward(input, hx=None) -> (output, h_n), with
    the inputs, shapes, dropout and options (memory included) of gpu_bptt.torch.RNN."""

    def __init__(self, *args, backend=None, algo="auto", memory="full", checkpoint_every=None,
                 **kwargs):
        refuse_proj_size(kwargs)
        super().__init__("GRU", *args, backend=backend, algo=algo, memory=memory,
                         checkpoint_every=checkpoint_every, **kwargs)

    def layer_weights(self, k, direction=0):
        """(W, V, b_x, b_h) of layer k in the project's convention: views."""
        w = self._layer_parameters(k, direction)
        b_x, b_h = (w[2], w[3]) if self.bias else (None, None)
        return w[0].t(), w[1].t(), b_x, b_h

    def _direction(self, k, d, x, states, lengths):
        h0 = None if states is None else states[0]
        if self.memory != "full":
            return self._recomputed("gru", x, self.layer_weights(k, d) + (h0,), lengths, d)
        return gru(x, *self.layer_weights(k, d), h0, lengths,
                   backend=self.backend, algo=self.algo, reverse=d == 1)
