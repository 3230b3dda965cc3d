"""Warnings given once per cause, shared by the backend selection and the backends' rules."""
from __future__ import annotations

import warnings

_warned: set = set()  # the messages warn_once has given


def warn_once(message: str, stacklevel: int = 2):
    """A RuntimeWarning, given once per process for each message (a fallback's cause, reason
    included), so a training loop says it once and a new cause is still heard."""
    if message not in _warned:
        _warned.add(message)
        warnings.warn(message, RuntimeWarning, stacklevel=stacklevel + 1)
