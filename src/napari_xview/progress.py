"""Progress in words: durations (CLI and widget alike) and a text progress bar for the CLI."""

from __future__ import annotations

import sys
import time
from typing import TextIO


def format_duration(seconds: float | None) -> str:
    """Short human duration: ``"4.2 s"``, ``"42 s"``, ``"3 min 05 s"``, ``"1 h 02 min"``.

    None (an unknown duration, such as an ETA before the first step) gives "?".

    >>> format_duration(0.25), format_duration(42.4), format_duration(185)
    ('0.2 s', '42 s', '3 min 05 s')
    >>> format_duration(3725), format_duration(None)
    ('1 h 02 min', '?')
    """
    if seconds is None:
        return "?"
    if seconds < 10:
        return f"{max(0.0, seconds):.1f} s"
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


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

    def note(self, text: str) -> None:
        """``text`` on a line of its own, kept above the bar (redrawn at the next update)."""
        if self.interactive and self._drawn:
            self.stream.write("\r\x1b[K")
        self.stream.write(text + "\n")
        self.stream.flush()
        self._last_draw = -float("inf")

    def close(self, message: str = "") -> None:
        """Draw the final state and end the line."""
        self.update(1.0, message, force=True)
        if self.interactive and self._drawn:
            self.stream.write("\n")
            self.stream.flush()


class StageLog:
    """A :class:`ProgressBar` driven by (fraction, stage) updates that also notes each stage
    with its duration, on a line of its own, once the next one begins (or at :meth:`close`).

    Synthesis names its stages (the views, then the fusion), so the command line shows where
    the time went: ``coronal (PInt-C): 12 s``.
    """

    def __init__(self, bar: ProgressBar) -> None:
        self.bar = bar
        self._stage: str | None = None
        self._since = 0.0

    def update(self, fraction: float, stage: str) -> None:
        """Show ``fraction``; note the previous stage if ``stage`` is a new one."""
        now = time.monotonic()
        new_stage = stage != self._stage
        if new_stage:
            self._note(now)
            self._stage, self._since = stage, now
        self.bar.update(fraction, stage, force=new_stage)

    def close(self, message: str = "") -> None:
        """Note the last stage and close the bar with ``message``."""
        self._note(time.monotonic())
        self._stage = None
        self.bar.close(message)

    def _note(self, now: float) -> None:
        if self._stage is not None:
            self.bar.note(f"  {self._stage}: {format_duration(now - self._since)}")
