"""A one-line progress display on stderr: step, loss, sequences/s, time left.

On a terminal the line is redrawn in place (at most ten times a second); in a log file (not a
terminal) a line is written at every tenth of the run instead, so logs stay short.
"""
from __future__ import annotations

import sys
import time


def _clock(seconds):
    seconds = int(seconds)
    return f"{seconds // 60}:{seconds % 60:02d}" if seconds < 3600 else f"{seconds // 3600}h{seconds // 60 % 60:02d}"


class Progress:
    def __init__(self, total, start, batch, stream=None, enabled=True, width=24):
        self.total, self.start, self.batch = total, start, batch
        self.stream = sys.stderr if stream is None else stream
        self.enabled = enabled and total > start
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.width = width
        self.t0 = time.perf_counter()
        self._last_draw = 0.0
        self._next_tenth = 1
        self._drawn = False

    def rate(self, step) -> float:
        """Sequences per second over this invocation."""
        dt = time.perf_counter() - self.t0
        return (step - self.start) * self.batch / dt if dt > 0 else 0.0

    def line(self, step, loss) -> str:
        frac = step / self.total if self.total else 1.0
        fill = int(self.width * frac)
        rate = self.rate(step)
        left = (self.total - step) * self.batch / rate if rate > 0 else 0.0
        bar = "#" * fill + "." * (self.width - fill)
        return (f"step {step:>{len(str(self.total))}}/{self.total} [{bar}] {100 * frac:3.0f}%  "
                f"loss {loss:.4g}  {rate:,.0f} seq/s  {_clock(left)} left")

    def update(self, step, loss):
        if not self.enabled:
            return
        now = time.perf_counter()
        if self.tty:
            if now - self._last_draw >= 0.1 or step == self.total:
                self.stream.write("\r" + self.line(step, loss) + "\x1b[K")
                self.stream.flush()
                self._last_draw, self._drawn = now, True
        else:
            done = (step - self.start) * 10 // (self.total - self.start)
            if done >= self._next_tenth:
                self.stream.write(self.line(step, loss) + "\n")
                self.stream.flush()
                self._next_tenth = done + 1

    def close(self):
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False
