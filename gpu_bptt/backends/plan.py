"""The launch plan: how a backend runs one problem's recurrence, forward and backward alike.

`Backend.resolve_algo` makes it once per problem, from facts about the device gathered first
(docs/architecture.md §2); elman_forward keeps it in the cache and elman_backward runs it.
`PairPlan` adds how the two directions of a bidirectional layer run together, each keeping its
own LaunchPlan (`Backend.resolve_pair`; docs/architecture.md §1, both directions together).
"""
from __future__ import annotations

import dataclasses
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
    cell: str = "elman"       # the cell it runs: "elman", "lstm" (G = 4 gates) or "gru" (G = 3)
    P: int = 0                # LSTM: the projection's size (0: none); 0 for the other cells
    tf32: bool = False        # float32 products on TF32 operands (allow_tf32; precision.py)

    @property
    def label(self) -> str:
        """What runs, e.g. "persistent v2" or "step v3"."""
        return f"{self.algo} {self.version}" if self.version else self.algo

    def check_problem(self, B, H, dtype, cell="elman", P=0):
        """ValueError unless the plan was made for a (B, H) problem of this dtype, cell and
        projection size."""
        if (cell, P) != (self.cell, self.P):
            raise ValueError(f"plan: made for cell={self.cell!r}, P={self.P}; asked for "
                             f"cell={cell!r}, P={P}")
        if (B, H, str(dtype)) != (self.B, self.H, self.dtype):
            raise ValueError(f"plan: made for B={self.B}, H={self.H}, {self.dtype}; the arrays "
                             f"have B={B}, H={H}, {dtype}")

    def check_direction(self, reverse):
        """ValueError unless the plan was made for this direction (reverse or not)."""
        if bool(reverse) != self.reverse:
            raise ValueError(f"plan: made for reverse={self.reverse}, asked for "
                             f"reverse={bool(reverse)}")


#: how the directions run, in a label's words: one launch covering both (persistent: one
#: cooperative grid), each direction's launches on a stream of its own, or one after the other
HOWS = {"one launch": "in one launch", "two streams": "on two streams", "in turn": "in turn"}


@dataclass(frozen=True)
class PairPlan:
    """How a bidirectional layer's two directions run together (Backend.resolve_pair)."""

    forward: LaunchPlan   # the forward direction's plan (reverse=False)
    reverse: LaunchPlan   # the reversed direction's (reverse=True), otherwise the same
    how: str              # a key of HOWS
    reason: str           # why: the fit of the one launch, or why it could not run
    grid: tuple = ()      # "one launch": the pair kernel's grid

    @property
    def label(self) -> str:
        """What runs, e.g. "persistent v2, both directions in one launch"."""
        return f"{self.forward.label}, both directions {HOWS[self.how]}"


def check_directions(forward: LaunchPlan, reverse: LaunchPlan):
    """ValueError unless `forward` and `reverse` are one request's plans for the two directions."""
    if not isinstance(forward, LaunchPlan) or not isinstance(reverse, LaunchPlan):
        raise TypeError("forward, reverse: expected the LaunchPlans of resolve_algo")
    if forward.reverse or not reverse.reverse:
        raise ValueError(f"forward, reverse: expected plans for reverse=False and reverse=True, "
                         f"got reverse={forward.reverse} and reverse={reverse.reverse}")
    if dataclasses.replace(reverse, reverse=False) != forward:
        raise ValueError(f"forward, reverse: the directions' plans differ ({forward.label} for "
                         f"B={forward.B}, H={forward.H}, {forward.dtype}; {reverse.label} for "
                         f"B={reverse.B}, H={reverse.H}, {reverse.dtype})")
