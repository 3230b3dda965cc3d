"""The seed's multi-level network on the functional core: layers, losses, SGD, Adam, clipping."""
from . import init
from .layers import Dense, Dropout, Elman, Module, Sequential
from .losses import MSELoss, SoftmaxCrossEntropy, last_step
from .optim import SGD, Adam, clip_grad_norm, grad_norm

__all__ = ["Adam", "Dense", "Dropout", "Elman", "MSELoss", "Module", "SGD", "Sequential", "SoftmaxCrossEntropy",
           "clip_grad_norm", "grad_norm", "init", "last_step"]
