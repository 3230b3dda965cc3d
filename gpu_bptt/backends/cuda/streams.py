"""A second CUDA stream for the reversed direction of a bidirectional layer, so that its launches
run beside the forward direction's (docs/architecture.md §1, both directions together).

`fork()` is a context manager giving the side stream: the forward direction's launches stay on
the current stream, the reversed direction's go inside `with side:`. On entry the side stream
waits for the work queued so far on the current stream (its inputs); on exit the current stream
waits for the side stream's work, so whatever follows sees both directions' results. Arrays the
side stream uses are allocated before the fork (or, as the status words, kept until after the
join), so no allocator can hand their memory to another stream while the side one works on it.
"""
from __future__ import annotations

import contextlib


class Streams:
    """Side streams of CuPy's `cuda` module (cupy.cuda), one per device, made when first used."""

    def __init__(self, cuda, device):
        self.cuda = cuda
        self.device = device  # a function giving the current device's key
        self._side = {}

    def side(self):
        key = self.device()
        if key not in self._side:
            self._side[key] = self.cuda.Stream(non_blocking=True)
        return self._side[key]

    @contextlib.contextmanager
    def fork(self):
        current = self.cuda.get_current_stream()
        side = self.side()
        side.wait_event(current.record())
        try:
            yield side
        finally:
            current.wait_event(side.record())


class InOrder:
    """The emulator's stand-in: its launches run when they are made, so the side "stream" is the
    same sequence of launches (the cuda backend's code paths run unchanged)."""

    @contextlib.contextmanager
    def fork(self):
        yield contextlib.nullcontext()


IN_ORDER = InOrder()
