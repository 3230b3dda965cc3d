"""PyTorch integration: drop-ins for torch.nn's recurrent layers and cells (`RNN`, `LSTM`, `GRU`,
`RNNCell`, `LSTMCell`, `GRUCell`) and the functional levels (`elman`, `lstm`, `gru`; `elman_pair`:
both directions of a bidirectional Elman layer together).

Only `import gpu_bptt.torch` imports PyTorch (the `torch` extra: pip install "gpu_bptt[torch]").
"""
try:
    import torch  # noqa: F401
except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError("gpu_bptt.torch needs PyTorch: pip install \"gpu_bptt[torch]\"") from e

from .cell import GRUCell, LSTMCell, RNNCell
from .functional import elman, elman_pair
from .gated import GRU, LSTM
from .gated_functional import gru, lstm
from .ops import HAS_CUSTOM_OP
from .rnn import RNN

__all__ = ["GRU", "GRUCell", "HAS_CUSTOM_OP", "LSTM", "LSTMCell", "RNN", "RNNCell", "elman",
           "elman_pair", "gru", "lstm"]
