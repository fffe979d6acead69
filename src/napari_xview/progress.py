"""A small text progress bar for the command line (stderr), with rate and ETA."""

from __future__ import annotations

import sys
import time
from typing import TextIO


def format_seconds(seconds: float | None) -> str:
    """``h:mm:ss`` or ``m:ss``; ``--:--`` when unknown."""
    if seconds is None:
        return "--:--"
    seconds = round(max(0.0, seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class ProgressBar:
    """Redraws one line in place on a terminal; prints a line every ``log_every_s`` otherwise.

    Parameters
    ----------
    label : str
        Shown before the bar.
    stream : file, optional
        Where to draw (standard error by default).
    log_every_s : float
        On a non-terminal stream (a log file, CI), the interval between printed lines.
    """

    def __init__(self, label: str, stream: TextIO | None = None, log_every_s: float = 10.0,
                 width: int = 28):
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.interactive = bool(getattr(self.stream, "isatty", lambda: False)())
        self.log_every_s = log_every_s
        self.width = width
        self._last_draw = -float("inf")
        self._drawn = False

    def update(self, fraction: float, message: str = "", force: bool = False) -> None:
        """Show ``fraction`` in [0, 1] and ``message``; throttled unless ``force``."""
        now = time.monotonic()
        interval = 0.1 if self.interactive else self.log_every_s
        if not force and now - self._last_draw < interval:
            return
        self._last_draw = now
        fraction = min(1.0, max(0.0, fraction))
        filled = round(fraction * self.width)
        bar = "#" * filled + "." * (self.width - filled)
        line = f"{self.label} [{bar}] {100 * fraction:5.1f}% {message}"
        if self.interactive:
            self.stream.write("\r" + line + "\x1b[K")
        else:
            self.stream.write(line + "\n")
        self.stream.flush()
        self._drawn = True

    def close(self, message: str = "") -> None:
        """Draw the final state and end the line."""
        self.update(1.0, message, force=True)
        if self.interactive and self._drawn:
            self.stream.write("\n")
            self.stream.flush()
