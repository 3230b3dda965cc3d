"""PyTorch integration: `RNN` (a drop-in for torch.nn.RNN), `RNNCell` (for torch.nn.RNNCell),
`elman` (the functional level), `elman_pair` (both directions of a bidirectional layer).

Only `import gpu_bptt.torch` imports PyTorch (the `torch` extra: pip install "gpu_bptt[torch]").
"""
try:
    import torch  # noqa: F401
except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError("gpu_bptt.torch needs PyTorch: pip install \"gpu_bptt[torch]\"") from e

from .cell import RNNCell
from .functional import elman, elman_pair
from .ops import HAS_CUSTOM_OP
from .rnn import RNN

__all__ = ["HAS_CUSTOM_OP", "RNN", "RNNCell", "elman", "elman_pair"]
