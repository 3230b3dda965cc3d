"""The seed's multi-level network on the functional core: layers, losses, SGD, Adam, clipping."""
from . import init
from .gated import GRU, LSTM
from .layers import Dense, Dropout, Elman, Module, Sequential
from .losses import MSELoss, SoftmaxCrossEntropy, last_step
from .optim import SGD, Adam, clip_grad_norm, grad_norm

# The recurrent levels by the name `gpu-bptt train --cell` and `gpu-bptt info` use.
CELLS = {"elman": Elman, "lstm": LSTM, "gru": GRU}

__all__ = ["Adam", "CELLS", "Dense", "Dropout", "Elman", "GRU", "LSTM", "MSELoss", "Module", "SGD",
           "Sequential", "SoftmaxCrossEntropy", "clip_grad_norm", "grad_norm", "init", "last_step"]
