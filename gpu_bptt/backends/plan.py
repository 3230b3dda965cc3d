"""The launch plan: how a backend runs one problem's recurrence, forward and backward alike.

`Backend.resolve_algo` makes it once per problem, from facts about the device gathered first
(docs/architecture.md §2); elman_forward keeps it in the cache and elman_backward runs it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional


@dataclass(frozen=True)
class LaunchPlan:
    algo: str                 # the concrete algorithm: "step" or "persistent"
    B: int                    # the problem it was made for: batch, hidden size, dtype name
    H: int
    dtype: str
    version: Optional[str] = None  # the kernels' version ("v2"); None: the backend has none
    grid: tuple = ()          # per launch (a step kernel's for one t); () without kernels
    block: tuple = ()
    smem: int = 0             # dynamic shared memory per block, bytes
    cols: int = 0             # persistent: columns of V per block
    product: str = "kernel"   # "library": the GEMM library computes the step's product (v4)
    reason: str = ""          # why this algorithm and version
    fallback: Optional[str] = None  # why the requested algorithm could not run ("auto" only)
    reverse: bool = False     # the direction: each example from its last valid step down to 0
    cell: str = "elman"       # "elman" | "lstm" | "gru"
    P: int = 0                # LSTM: proj_size (0: no projection)

    @property
    def label(self) -> str:
        """What runs, e.g. "persistent v2" or "step v3"."""
        return f"{self.algo} {self.version}" if self.version else self.algo

    def check_problem(self, B, H, dtype):
        """ValueError unless the plan was made for a (B, H) problem of this dtype."""
        if (B, H, str(dtype)) != (self.B, self.H, self.dtype):
            raise ValueError(f"plan: made for B={self.B}, H={self.H}, {self.dtype}; the arrays "
                             f"have B={B}, H={H}, {dtype}")

    def check_direction(self, reverse):
        """ValueError unless the plan was made for this direction (reverse or not)."""
        if bool(reverse) != self.reverse:
            raise ValueError(f"plan: made for reverse={self.reverse}, asked for "
                             f"reverse={bool(reverse)}")
