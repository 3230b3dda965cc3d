"""Progress on stderr: one status line, and the training run's bar built on it.

On a terminal the line is redrawn in place; in a log file (not a terminal) each line shown is
written as a line of its own, so what a caller shows there decides how long the log gets.
"""
from __future__ import annotations

import sys
import time


def _clock(seconds):
    seconds = int(seconds)
    return f"{seconds // 60}:{seconds % 60:02d}" if seconds < 3600 else f"{seconds // 3600}h{seconds // 60 % 60:02d}"


class StatusLine:
    """One status line on `stream` (default stderr). `show(text, major)`: on a terminal every text
    replaces the line; in a log only major ones are written. `close(keep)`: on a terminal, end
    the line (keep) or clear it."""

    def __init__(self, stream=None, enabled=True):
        self.stream = sys.stderr if stream is None else stream
        self.enabled = enabled
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._drawn = False

    def show(self, text, major=True):
        if not self.enabled or not (self.tty or major):
            return
        if self.tty:
            self.stream.write("\r" + text + "\x1b[K")
            self._drawn = True
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def close(self, keep=True):
        if self._drawn:
            self.stream.write("\n" if keep else "\r\x1b[K")
            self.stream.flush()
            self._drawn = False


class Progress:
    """The training bar: step, loss, sequences/s, time left. On a terminal it is redrawn at most
    ten times a second; in a log a line is written at every tenth of the run."""

    def __init__(self, total, start, batch, stream=None, enabled=True, width=24):
        self.total, self.start, self.batch = total, start, batch
        self.out = StatusLine(stream, enabled and total > start)
        self.width = width
        self.t0 = time.perf_counter()
        self._last_draw = 0.0
        self._next_tenth = 1

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
        if not self.out.enabled:
            return
        if self.out.tty:
            now = time.perf_counter()
            if now - self._last_draw >= 0.1 or step == self.total:
                self.out.show(self.line(step, loss))
                self._last_draw = now
        else:
            done = (step - self.start) * 10 // (self.total - self.start)
            if done >= self._next_tenth:
                self.out.show(self.line(step, loss))
                self._next_tenth = done + 1

    def close(self):
        self.out.close()
