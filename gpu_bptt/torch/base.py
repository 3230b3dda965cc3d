"""`RecurrentBase`: what the drop-ins for torch.nn.RNN, LSTM and GRU share, whatever the cell.

A subclass of torch.nn.RNNBase, as torch.nn.RNN, LSTM and GRU are: the same constructor and
argument checks (torch's own code, so their errors are torch's), parameter names and shapes,
`all_weights`, `_flat_weights`, `_flat_weights_names`, `mode`, `proj_size`, state_dict, pickling,
`.to()`, and parametrizations. Not a subclass of torch.nn.RNN/LSTM/GRU themselves: torch.compile
refuses to trace any of their instances ("Dynamo does not support RNN, GRU, or LSTM"), whatever
their forward.

Here: the call (batched, batch_first, unbatched and packed inputs), torch's checks with its
errors, the layers and directions, dropout between layers. A subclass gives the cell: its
`_direction` (one direction of one layer) and, where it differs from a single state hx, its
states (LSTM: (h, c)).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from ..cells.recompute import check_memory_option
from .functional import autocast_on
from .recompute import recomputed


def refuse_proj_size(kwargs):
    """torch.nn.RNN's and GRU's first check of their arguments."""
    if "proj_size" in kwargs:
        raise ValueError("proj_size argument is only supported for LSTM, not RNN or GRU")


class RecurrentBase(nn.RNNBase):
    # The states the layer takes and returns, by the names its errors give them.
    STATES = ("hx",)
    # torch's message for an input of the wrong dimension, which differs a little by class.
    INPUT_DIMS = "{mode}: Expected input to be 2D or 3D, got {dim}D instead"

    def __init__(self, mode, *args, backend=None, algo="auto", memory="full",
                 checkpoint_every=None, **kwargs):
        super().__init__(mode, *args, **kwargs)
        self.backend, self.algo = backend, algo
        self.memory, self.checkpoint_every = check_memory_option(memory, checkpoint_every)

    def flatten_parameters(self):
        """No-op: the kernels read each parameter where it lies (torch.nn's RNNs pack them into
        one buffer for cuDNN; kept so code written for them runs unchanged)."""

    def _layer_parameters(self, k, direction):
        """The parameters of layer k, direction d, in torch.nn's order (getattr: parametrizations
        apply)."""
        names = self._all_weights[k * (2 if self.bidirectional else 1) + direction]
        return [getattr(self, n) for n in names]

    def forward(self, input, hx=None):
        if isinstance(input, PackedSequence):
            return self._forward_packed(input, hx)
        if input.dim() not in (2, 3):
            raise ValueError(self.INPUT_DIMS.format(mode=self.mode, dim=input.dim()))
        batched = input.dim() == 3
        states = self._as_states(hx)
        self._check_state_dims(states, input.dim())
        if not batched:
            input = input.unsqueeze(0 if self.batch_first else 1)
            states = None if states is None else tuple(s.unsqueeze(1) for s in states)
        self._check(input, states, None)
        x = input.transpose(0, 1) if self.batch_first else input
        out, finals = self._run(x, states, None)
        if self.batch_first:
            out = out.transpose(0, 1)
        if not batched:
            out, finals = out.squeeze(0 if self.batch_first else 1), [f.squeeze(1) for f in finals]
        return out, self._as_hx(finals)

    def _forward_packed(self, packed, hx):
        states = self._as_states(hx)
        self._check(packed.data, states, packed.batch_sizes)
        # Padded, time-major, in the caller's batch order (unsorted), with the true lengths; hx and
        # h_n are in that order too, as torch.nn's RNNs take and give them.
        x, lengths = pad_packed_sequence(packed)
        out, finals = self._run(x, states, (packed, lengths))
        return PackedSequence(_packed_data(out, packed, lengths), packed.batch_sizes,
                              packed.sorted_indices, packed.unsorted_indices), self._as_hx(finals)

    def _as_states(self, hx):
        """hx as the tuple of state tensors (None: zeros)."""
        if hx is None:
            return None
        return (hx,) if len(self.STATES) == 1 else tuple(hx)

    def _as_hx(self, finals):
        return finals[0] if len(self.STATES) == 1 else tuple(finals)

    def _check_state_dims(self, states, ndim):
        if states is None or all(s.dim() == ndim for s in states):
            return
        kind = "batched 3-D" if ndim == 3 else "unbatched 2-D"
        if len(states) == 1:
            raise RuntimeError(f"For {kind} input, hx should also be {ndim}-D but got "
                               f"{states[0].dim()}-D tensor")
        dims = ", ".join(f"{s.dim()}-D" for s in states)
        raise RuntimeError(f"For {kind} input, hx and cx should also be {ndim}-D but got ({dims}) "
                           "tensors")

    def _state_sizes(self, input, batch_sizes):
        """[(expected shape, torch's message)] of each state."""
        expected = self.get_expected_hidden_size(input, batch_sizes)
        return [(expected, "Expected hidden size {}, got {}")]

    def _check(self, input, states, batch_sizes):
        """torch.nn's checks, with its errors: input dtype, dimensions and size, the states'
        shapes; then their dtypes and the sequence length, which it finds deeper down."""
        self.check_input(input, batch_sizes)
        if states is not None:
            for s, (size, msg) in zip(states, self._state_sizes(input, batch_sizes)):
                self.check_hidden_size(s, size, msg)
            for s, name in zip(states, self.STATES):
                if s.dtype != input.dtype and not autocast_on(input.device.type):
                    raise RuntimeError(f"{name}: expected the input's dtype {input.dtype}, got "
                                       f"{s.dtype}")
        if input.shape[1 if self.batch_first and batch_sizes is None else 0] == 0:
            raise RuntimeError("Expected sequence length to be larger than 0 in RNN")

    def _run(self, x, states, packed):
        """x (T, B, I) time-major; states: tuple of (num_layers·D, B, ·) or None; packed: (the
        input PackedSequence, its lengths) or None. -> (output (T, B, D·Hs), final states)."""
        D, p = 2 if self.bidirectional else 1, self.dropout
        lengths = None if packed is None else packed[1]
        finals = []
        for k in range(self.num_layers):
            layer_states = [None if states is None else tuple(s[k * D + d] for s in states)
                            for d in range(D)]
            x, last = self._layer(k, x, layer_states, lengths)
            finals.extend(last)
            if p and self.training and k < self.num_layers - 1:
                x = _dropout(x, p, packed)
        return x, [torch.stack(f) for f in zip(*finals)]

    def _layer(self, k, x, states, lengths):
        """Layer k: -> (output (T, B, D·Hs), [final states of each direction])."""
        outs, last = [], []
        for d, s in enumerate(states):
            out, *finals = self._direction(k, d, x, s, lengths)
            outs.append(out)
            last.append(finals)
        # torch.nn's layout: the features of the directions side by side, forward first.
        return (outs[0] if len(outs) == 1 else torch.cat(outs, -1)), last

    def _direction(self, k, d, x, states, lengths):
        """Direction d (1: reversed) of layer k: -> (output (T, B, Hs), *final states)."""
        raise NotImplementedError

    def _recomputed(self, cell, x, params, lengths, d, **kw):
        """Direction d of a layer of `cell` run with memory "recompute" or "auto"
        (recompute.py): params in the core's order."""
        return recomputed(cell, x, params, lengths, backend=self.backend, algo=self.algo,
                          reverse=d == 1, memory=self.memory,
                          checkpoint_every=self.checkpoint_every, **kw)

    def extra_repr(self):
        s = super().extra_repr()
        if self.backend is not None:
            s += f", backend={self.backend!r}"
        if self.algo != "auto":
            s += f", algo={self.algo!r}"
        if self.memory != "full":
            s += f", memory={self.memory!r}"
        return s


def _dropout(h, p, packed):
    """torch.nn's dropout between layers, drawn as its CPU path draws it: on the time-major
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
