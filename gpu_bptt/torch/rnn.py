"""`RNN`: a drop-in for torch.nn.RNN whose recurrence runs in gpu_bptt.

What it shares with the LSTM and GRU drop-ins (the call, torch's checks, layers, directions,
dropout, the nn.RNNBase attributes): base.py. Here, the Elman cell: per layer k, in the project's
convention, W = weight_ih_lk.T, V = weight_hh_lk.T, b = bias_ih_lk + bias_hh_lk.
"""
from __future__ import annotations

import torch

from .base import RecurrentBase, refuse_proj_size
from .functional import elman, elman_pair

ACTIVATIONS = {"RNN_TANH": "tanh", "RNN_RELU": "relu"}  # nn.RNN's mode -> the core's activation
MODES = {v: k for k, v in ACTIVATIONS.items()}


class RNN(RecurrentBase):
    """RNN(input_size, hidden_size, num_layers=1, nonlinearity='tanh', bias=True, batch_first=False,
    dropout=0.0, bidirectional=False, device=None, dtype=None, *, backend=None, algo='auto')

    Elman RNN with torch.nn.RNN's arguments, attributes and call: input (T, B, I), (B, T, I) with
    batch_first, unbatched (T, I), or a PackedSequence; forward(input, hx=None) -> (output, h_n),
    output (T, B, H) (batch-first when batch_first, a PackedSequence for a packed input), h_n
    (num_layers·D, B, H), D = 2 when bidirectional (each layer's output then holds the forward
    direction's features, then the reversed one's, as torch.nn.RNN). Dropout between layers as
    torch.nn.RNN applies it on the CPU (the same draws from torch's generator), `dropout` read at
    each call.
    backend: gpu_bptt backend name or None (see gpu_bptt.torch.elman); algo: the core's algorithm.
    memory, checkpoint_every: as gpu_bptt.elman_forward's ("recompute": each layer keeps a state
    every k steps instead of every step's, the same gradients; first-order only)."""

    INPUT_DIMS = "RNN: Expected input to be 2D or 3D, got {dim}D tensor instead"

    def __init__(self, *args, backend=None, algo="auto", memory="full", checkpoint_every=None,
                 **kwargs):
        # torch.nn.RNN's own handling: nonlinearity is the 4th positional argument; proj_size is
        # refused by name.
        refuse_proj_size(kwargs)
        if len(args) > 3:
            nonlinearity, args = args[3], args[:3] + args[4:]
        else:
            nonlinearity = kwargs.pop("nonlinearity", "tanh")
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"Unknown nonlinearity '{nonlinearity}'. Select from 'tanh' or 'relu'.")
        super().__init__(MODES[nonlinearity], *args, backend=backend, algo=algo, memory=memory,
                         checkpoint_every=checkpoint_every, **kwargs)
        self.nonlinearity = nonlinearity

    def layer_weights(self, k, direction=0):
        """(W, V, b) of layer k in the project's convention: views, except b (a sum)."""
        w = self._layer_parameters(k, direction)
        return w[0].t(), w[1].t(), (w[2] + w[3] if self.bias else None)

    def _direction(self, k, d, x, states, lengths):
        if self.memory != "full":
            return self._recomputed("elman", x, self.layer_weights(k, d) + (
                None if states is None else states[0],), lengths, d,
                activation=ACTIVATIONS[self.mode])
        return elman(x, *self.layer_weights(k, d), None if states is None else states[0], lengths,
                     activation=ACTIVATIONS[self.mode], backend=self.backend, algo=self.algo,
                     reverse=d == 1)

    def _layer(self, k, x, states, lengths):
        if not self.bidirectional or self.memory != "full":
            return super()._layer(k, x, states, lengths)
        # both directions together (elman_pair: side by side on the GPU)
        dirs = [self.layer_weights(k, d) + (None if s is None else s[0],)
                for d, s in enumerate(states)]
        outs = elman_pair(x, *dirs, lengths, activation=ACTIVATIONS[self.mode],
                          backend=self.backend, algo=self.algo)
        # torch.nn's layout: the features of the directions side by side, forward first.
        return torch.cat([out for out, _ in outs], -1), [[h_last] for _, h_last in outs]
