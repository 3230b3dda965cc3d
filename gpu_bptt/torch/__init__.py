"""PyTorch integration: `RNN` (a drop-in for torch.nn.RNN) and `elman` (the functional level).

Only `import gpu_bptt.torch` imports PyTorch (the `torch` extra: pip install "gpu_bptt[torch]").
"""
try:
    import torch  # noqa: F401
except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError("gpu_bptt.torch needs PyTorch: pip install \"gpu_bptt[torch]\"") from e

from .functional import elman
from .ops import DOUBLE_BACKWARD, HAS_CUSTOM_OP
from .rnn import RNN

__all__ = ["DOUBLE_BACKWARD", "HAS_CUSTOM_OP", "RNN", "elman"]
