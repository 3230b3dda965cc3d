"""Initializers. Default: uniform ±1/sqrt(H), as cuDNN and PyTorch; identity V for IRNN (ReLU)."""
from __future__ import annotations

import numpy as np


def uniform(rng, shape, bound, dtype):
    return rng.uniform(-bound, bound, size=shape).astype(dtype)


def identity(n, dtype, scale=1.0):
    return (scale * np.eye(n)).astype(dtype)
