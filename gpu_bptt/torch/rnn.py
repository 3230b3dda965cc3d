"""`RNN`: a drop-in for torch.nn.RNN whose recurrence runs in gpu_bptt.

A subclass of torch.nn.RNNBase, as torch.nn.RNN is: the same constructor and argument checks
(torch's own code, so their errors are torch's), parameter names and shapes, `all_weights`,
`_flat_weights`, `_flat_weights_names`, `mode`, `proj_size`, state_dict, pickling, `.to()`, and
parametrizations. Not a subclass of torch.nn.RNN itself: torch.compile refuses to trace any
torch.nn.RNN instance ("Dynamo does not support RNN, GRU, or LSTM"), whatever its forward.

Per layer k, in the project's convention: W = weight_ih_lk.T, V = weight_hh_lk.T,
b = bias_ih_lk + bias_hh_lk.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from .functional import autocast_on, elman, elman_pair

ACTIVATIONS = {"RNN_TANH": "tanh", "RNN_RELU": "relu"}  # nn.RNN's mode -> the core's activation
MODES = {v: k for k, v in ACTIVATIONS.items()}


class RNN(nn.RNNBase):
    """RNN(input_size, hidden_size, num_layers=1, nonlinearity='tanh', bias=True, batch_first=False,
    dropout=0.0, bidirectional=False, device=None, dtype=None, *, backend=None, algo='auto')

    Elman RNN with torch.nn.RNN's arguments, attributes and call: input (T, B, I), (B, T, I) with
    batch_first, unbatched (T, I), or a PackedSequence; forward(input, hx=None) -> (output, h_n),
    output (T, B, H) (batch-first when batch_first, a PackedSequence for a packed input), h_n
    (num_layers·D, B, H), D = 2 when bidirectional (each layer's output then holds the forward
    direction's features, then the reversed one's, as torch.nn.RNN). Dropout between layers as
    torch.nn.RNN applies it on the CPU (the same draws from torch's generator), `dropout` read at
    each call.
    backend: gpu_bptt backend name or None (see gpu_bptt.torch.elman); algo: the core's algorithm."""

    def __init__(self, *args, backend=None, algo="auto", **kwargs):
        # torch.nn.RNN's own handling: nonlinearity is the 4th positional argument; proj_size is
        # refused by name.
        if "proj_size" in kwargs:
            raise ValueError("proj_size argument is only supported for LSTM, not RNN or GRU")
        if len(args) > 3:
            nonlinearity, args = args[3], args[:3] + args[4:]
        else:
            nonlinearity = kwargs.pop("nonlinearity", "tanh")
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"Unknown nonlinearity '{nonlinearity}'. Select from 'tanh' or 'relu'.")
        super().__init__(MODES[nonlinearity], *args, **kwargs)
        self.nonlinearity = nonlinearity
        self.backend, self.algo = backend, algo

    def flatten_parameters(self):
        """No-op: the kernels read each parameter where it lies (torch.nn.RNN packs them into one
        buffer for cuDNN; kept so code written for it runs unchanged)."""

    def layer_weights(self, k, direction=0):
        """(W, V, b) of layer k in the project's convention: views, except b (a sum)."""
        names = self._all_weights[k * (2 if self.bidirectional else 1) + direction]
        w = [getattr(self, n) for n in names]  # getattr: parametrizations apply
        return w[0].t(), w[1].t(), (w[2] + w[3] if self.bias else None)

    def forward(self, input, hx=None):
        if isinstance(input, PackedSequence):
            return self._forward_packed(input, hx)
        if input.dim() not in (2, 3):
            raise ValueError(f"RNN: Expected input to be 2D or 3D, got {input.dim()}D tensor instead")
        batched = input.dim() == 3
        if hx is not None and hx.dim() != input.dim():
            kind = "batched 3-D" if batched else "unbatched 2-D"
            raise RuntimeError(f"For {kind} input, hx should also be {input.dim()}-D but got "
                               f"{hx.dim()}-D tensor")
        if not batched:
            input = input.unsqueeze(0 if self.batch_first else 1)
            hx = None if hx is None else hx.unsqueeze(1)
        self._check(input, hx, None)
        x = input.transpose(0, 1) if self.batch_first else input
        out, h_n = self._run(x, hx, None)
        if self.batch_first:
            out = out.transpose(0, 1)
        if not batched:
            return out.squeeze(0 if self.batch_first else 1), h_n.squeeze(1)
        return out, h_n

    def _forward_packed(self, packed, hx):
        self._check(packed.data, hx, packed.batch_sizes)
        # Padded, time-major, in the caller's batch order (unsorted), with the true lengths; hx and
        # h_n are in that order too, as torch.nn.RNN takes and gives them.
        x, lengths = pad_packed_sequence(packed)
        out, h_n = self._run(x, hx, (packed, lengths))
        return PackedSequence(_packed_data(out, packed, lengths), packed.batch_sizes,
                              packed.sorted_indices, packed.unsorted_indices), h_n

    def _check(self, input, hx, batch_sizes):
        """torch.nn.RNN's checks, with its errors: input dtype, dimensions and size, hx shape; then
        hx's dtype and the sequence length, which it finds deeper down."""
        self.check_input(input, batch_sizes)
        if hx is not None:
            self.check_hidden_size(hx, self.get_expected_hidden_size(input, batch_sizes))
            if hx.dtype != input.dtype and not autocast_on(input.device.type):
                raise RuntimeError(f"hx: expected the input's dtype {input.dtype}, got {hx.dtype}")
        if input.shape[1 if self.batch_first and batch_sizes is None else 0] == 0:
            raise RuntimeError("Expected sequence length to be larger than 0 in RNN")

    def _run(self, x, h0, packed):
        """x (T, B, I) time-major; h0 (num_layers·D, B, H) or None; packed: (the input
        PackedSequence, its lengths) or None. -> (output (T, B, D·H), h_n (num_layers·D, B, H))."""
        D, p = (2 if self.bidirectional else 1), self.dropout
        lengths = None if packed is None else packed[1]
        kw = dict(activation=ACTIVATIONS[self.mode], backend=self.backend, algo=self.algo)
        finals = []
        for k in range(self.num_layers):
            dirs = [self.layer_weights(k, d) + (None if h0 is None else h0[k * D + d],)
                    for d in range(D)]
            if D == 1:
                x, h_last = elman(x, *dirs[0], lengths, **kw)
                finals.append(h_last)
            else:  # both directions together (elman_pair: side by side on the GPU)
                outs = elman_pair(x, *dirs, lengths, **kw)
                finals += [h_last for _, h_last in outs]
                # nn.RNN's layout: the features of the directions side by side, forward first.
                x = torch.cat([out for out, _ in outs], -1)
            if p and self.training and k < self.num_layers - 1:
                x = _dropout(x, p, packed)
        return x, torch.stack(finals)

    def extra_repr(self):
        s = super().extra_repr()
        if self.backend is not None:
            s += f", backend={self.backend!r}"
        if self.algo != "auto":
            s += f", algo={self.algo!r}"
        return s


def _dropout(h, p, packed):
    """torch.nn.RNN's dropout between layers, drawn as its CPU path draws it: on the time-major
    output (T, B, H), or on the packed data for a packed input."""
    if not 0 <= p <= 1:
        raise RuntimeError(f"dropout probability has to be between 0 and 1, but got {p}")
    if packed is None:
        return F.dropout(h, p, training=True)
    seq, lengths = packed
    data = F.dropout(_packed_data(h, seq, lengths), p, training=True)
    data = PackedSequence(data, seq.batch_sizes, seq.sorted_indices, seq.unsorted_indices)
    return pad_packed_sequence(data, total_length=h.shape[0])[0]


def _packed_data(h, packed, lengths):
    """The rows of h (T, B, H), padded in the caller's batch order, as `packed` lays them out."""
    order = packed.sorted_indices
    if order is not None:
        h, lengths = h.index_select(1, order), lengths[order.cpu()]
    return pack_padded_sequence(h, lengths, enforce_sorted=True).data
