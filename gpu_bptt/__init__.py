"""gpu_bptt: Backpropagation Through Time for recurrent layers, on NumPy or raw CUDA kernels.

Importing this package never imports CuPy or compiles a kernel.
"""
from .backends import BackendUnavailable, available_backends, get_backend
from .cells import ElmanCache, ElmanGrads, ElmanOutput, elman_backward, elman_forward
from .gradcheck import elman_gradcheck, gradcheck, network_gradcheck

__version__ = "0.1.0"

__all__ = [
    "BackendUnavailable", "ElmanCache", "ElmanGrads", "ElmanOutput", "available_backends",
    "elman_backward", "elman_forward", "elman_gradcheck", "get_backend", "gradcheck",
    "network_gradcheck", "__version__",
]
