"""gpu_bptt: Backpropagation Through Time for recurrent layers, on NumPy or raw CUDA kernels.

Importing this package never imports CuPy or compiles a kernel.
"""
from .backends import BackendUnavailable, available_backends, get_backend
from .cells import (ElmanCache, ElmanGrads, ElmanOutput, ElmanPairOutput, GRUCache, GRUGrads,
                    GRUOutput, LSTMCache, LSTMGrads, LSTMOutput, elman_backward,
                    elman_backward_pair, elman_forward, elman_forward_pair, gru_backward,
                    gru_forward, lstm_backward, lstm_forward)
from .cells.memory_plan import MemoryEstimate, MemoryPlan, memory_estimate
from .cells.memory_plan import plan as plan_memory
from .gradcheck import elman_gradcheck, gradcheck, gru_gradcheck, lstm_gradcheck, network_gradcheck

__version__ = "0.1.0"

__all__ = [
    "BackendUnavailable", "ElmanCache", "ElmanGrads", "ElmanOutput", "ElmanPairOutput",
    "GRUCache", "GRUGrads", "GRUOutput", "LSTMCache", "LSTMGrads", "LSTMOutput",
    "available_backends", "elman_backward", "elman_backward_pair", "elman_forward",
    "elman_forward_pair", "elman_gradcheck", "get_backend", "gradcheck", "gru_backward", "gru_forward",
    "gru_gradcheck", "lstm_backward", "lstm_forward", "lstm_gradcheck", "network_gradcheck",
    "MemoryEstimate", "MemoryPlan", "memory_estimate", "plan_memory", "__version__",
]
