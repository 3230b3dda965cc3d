"""The seed's multi-level network on the functional core: layers, losses, SGD, clipping."""
from . import init
from .layers import Dense, Elman, Module, Sequential
from .losses import MSELoss, SoftmaxCrossEntropy, last_step
from .optim import SGD, clip_grad_norm, grad_norm

__all__ = ["Dense", "Elman", "MSELoss", "Module", "SGD", "Sequential", "SoftmaxCrossEntropy",
           "clip_grad_norm", "grad_norm", "init", "last_step"]
