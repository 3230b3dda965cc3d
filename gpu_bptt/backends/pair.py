"""The pair plan: how a backend runs the two directions of one bidirectional layer together
(docs/architecture.md, bidirectional layers). Each direction keeps its own LaunchPlan (its cache
holds it, and a single-direction backward runs it); the pair plan adds how the two run side by
side, and why.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from .plan import LaunchPlan

#: how the directions run: one launch covering both (persistent: one cooperative grid), each
#: direction's launches on a stream of its own, or one direction after the other (no device)
HOWS = ("one launch", "two streams", "in turn")


@dataclass(frozen=True)
class PairPlan:
    forward: LaunchPlan   # the forward direction's plan (reverse=False)
    reverse: LaunchPlan   # the reversed direction's (reverse=True), otherwise the same
    how: str              # one of HOWS
    reason: str           # why: the fit of the one launch, or why it could not run
    grid: tuple = ()      # "one launch": the pair kernel's grid

    @property
    def label(self) -> str:
        """What runs, e.g. "persistent v2, both directions in one launch"."""
        what = {"one launch": "in one launch", "two streams": "on two streams",
                "in turn": "in turn"}[self.how]
        return f"{self.forward.label}, both directions {what}"


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
