"""`RNN`: a drop-in for torch.nn.RNN whose recurrence runs in gpu_bptt.

Same constructor, parameter names and shapes (an nn.RNN state_dict loads), same call. Per layer k,
in the project's convention: W = weight_ih_lk.T, V = weight_hh_lk.T, b = bias_ih_lk + bias_hh_lk.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from .functional import elman

NONLINEARITIES = ("tanh", "relu")


class RNN(nn.Module):
    """Elman RNN, time-major by default: input (T, B, I) or (T, I) unbatched, or a PackedSequence.

    forward(input, hx=None) -> (output, h_n): output (T, B, H) (batch-first when batch_first, a
    PackedSequence for a packed input), h_n (num_layers, B, H). Not supported yet (raise
    NotImplementedError): dropout > 0, bidirectional, proj_size > 0.
    backend: gpu_bptt backend name or None (see gpu_bptt.torch.elman); algo: the core's algorithm."""

    def __init__(self, input_size, hidden_size, num_layers=1, nonlinearity="tanh", bias=True,
                 batch_first=False, dropout=0.0, bidirectional=False, proj_size=0, device=None,
                 dtype=None, *, backend=None, algo="auto"):
        super().__init__()
        unsupported = [f"{n}={v!r}" for n, v, off in (("dropout", dropout, 0),
                                                        ("bidirectional", bidirectional, False),
                                                        ("proj_size", proj_size, 0)) if v != off]
        if unsupported:
            raise NotImplementedError(f"gpu_bptt.torch.RNN does not support {', '.join(unsupported)} "
                                      "yet; use torch.nn.RNN for these")
        if nonlinearity not in NONLINEARITIES:
            raise ValueError(f"nonlinearity: expected one of {NONLINEARITIES}, got {nonlinearity!r}")
        for name, v in (("input_size", input_size), ("hidden_size", hidden_size),
                        ("num_layers", num_layers)):
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name}: expected a positive integer, got {v!r}")
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.nonlinearity, self.bias, self.batch_first = nonlinearity, bias, batch_first
        self.dropout, self.bidirectional, self.proj_size = float(dropout), False, 0
        self.backend, self.algo = backend, algo
        kw = dict(device=device, dtype=dtype)
        for k in range(num_layers):
            n_in = input_size if k == 0 else hidden_size
            setattr(self, f"weight_ih_l{k}", nn.Parameter(torch.empty(hidden_size, n_in, **kw)))
            setattr(self, f"weight_hh_l{k}", nn.Parameter(torch.empty(hidden_size, hidden_size, **kw)))
            if bias:
                setattr(self, f"bias_ih_l{k}", nn.Parameter(torch.empty(hidden_size, **kw)))
                setattr(self, f"bias_hh_l{k}", nn.Parameter(torch.empty(hidden_size, **kw)))
        self.reset_parameters()

    def reset_parameters(self):
        """U(-1/sqrt(H), 1/sqrt(H)) for every parameter, as torch.nn.RNN."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def flatten_parameters(self):
        """No-op (kept so code written for torch.nn.RNN runs unchanged)."""

    def layer_weights(self, k):
        """(W, V, b) of layer k in the project's convention: views, except b (a sum)."""
        W = getattr(self, f"weight_ih_l{k}").t()
        V = getattr(self, f"weight_hh_l{k}").t()
        b = getattr(self, f"bias_ih_l{k}") + getattr(self, f"bias_hh_l{k}") if self.bias else None
        return W, V, b

    def forward(self, input, hx=None):
        if isinstance(input, PackedSequence):
            return self._forward_packed(input, hx)
        if input.dim() not in (2, 3):
            raise ValueError(f"input: expected (T, B, I), (B, T, I) with batch_first, or unbatched "
                             f"(T, I); got shape {tuple(input.shape)}")
        batched = input.dim() == 3
        x = input if batched else input.unsqueeze(1)
        if batched and self.batch_first:
            x = x.transpose(0, 1)
        h, h_n = self._run(x, self._initial_state(hx, x.shape[1], batched), None)
        if not batched:
            return h.squeeze(1), h_n.squeeze(1)
        return (h.transpose(0, 1) if self.batch_first else h), h_n

    def _forward_packed(self, packed, hx):
        # Padded, time-major, in the caller's batch order (unsorted), with the true lengths.
        x, lengths = pad_packed_sequence(packed)
        h, h_n = self._run(x, self._initial_state(hx, x.shape[1], True), lengths)
        # Pack in the input's order so the data lines up with its batch_sizes and indices.
        order = packed.sorted_indices
        if order is not None:
            h, lengths = h.index_select(1, order), lengths[order.cpu()]
        data = pack_padded_sequence(h, lengths, enforce_sorted=True).data
        return PackedSequence(data, packed.batch_sizes, packed.sorted_indices,
                              packed.unsorted_indices), h_n

    def _initial_state(self, hx, B, batched):
        if hx is None:
            return None
        want = (self.num_layers, B, self.hidden_size) if batched else (self.num_layers, self.hidden_size)
        if tuple(hx.shape) != want:
            raise RuntimeError(f"hx: expected shape {want}, got {tuple(hx.shape)}")
        return hx if batched else hx.unsqueeze(1)

    def _run(self, x, h0, lengths):
        finals = []
        for k in range(self.num_layers):
            W, V, b = self.layer_weights(k)
            x, h_last = elman(x, W, V, b, None if h0 is None else h0[k], lengths,
                              activation=self.nonlinearity, backend=self.backend, algo=self.algo)
            finals.append(h_last)
        return x, torch.stack(finals)

    def extra_repr(self):
        s = f"{self.input_size}, {self.hidden_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if self.nonlinearity != "tanh":
            s += f", nonlinearity={self.nonlinearity!r}"
        if not self.bias:
            s += ", bias=False"
        if self.batch_first:
            s += ", batch_first=True"
        return s
