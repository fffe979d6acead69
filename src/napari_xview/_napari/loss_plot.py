"""Live plot of the training objective: one line per loss term, log scale, throttled redraws.

The trainer yields a :class:`~napari_xview.engine.events.Step` per optimisation step, which on
a GPU can mean hundreds of events a second. Drawing a matplotlib figure takes tens of
milliseconds, so :class:`LossPlot` only records the values when they arrive and redraws at most
once per ``redraw_interval_ms`` (a single-shot :class:`~qtpy.QtCore.QTimer`), which keeps the
viewer responsive however fast training runs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QVBoxLayout, QWidget
from scipy.signal import lfilter

#: Legend label of each loss key the engine reports, in the paper's notation (section 3.2):
#: internal learning (8)-(10), cross-view mutual distillation (11)-(12), memory constraints.
LOSS_LABELS: dict[str, str] = {
    "total": "$L$ (total)",
    "int_a": "$L_a^{int}$",
    "int_c": "$L_c^{int}$",
    "int_s": "$L_s^{int}$",
    "cmd_c": "$L_c^{cmd}$",
    "cmd_s": "$L_s^{cmd}$",
    "com": "$L^{com}$",
    "sep": "$L^{sep}$",
}


class LossPlot(QWidget):
    """A matplotlib canvas showing each term of the objective against the training step.

    Parameters
    ----------
    parent : QWidget, optional
        Qt parent.
    redraw_interval_ms : int
        Least time between two redraws; values arriving in between are drawn together.

    Attributes
    ----------
    figure : matplotlib.figure.Figure
        The figure, for saving or styling.
    axes : matplotlib.axes.Axes
        The single axes: step on x, loss on a logarithmic y axis.
    redraw_count : int
        Number of redraws so far (lets tests check that redraws are throttled).
    """

    def __init__(self, parent: QWidget | None = None, *, redraw_interval_ms: int = 500) -> None:
        super().__init__(parent)
        self.figure = Figure(figsize=(4.0, 3.0), layout="constrained")
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setMinimumHeight(220)
        self.axes = self.figure.add_subplot()
        self.redraw_count = 0
        self._background, self._foreground = "white", "black"
        self._steps: dict[str, list[int]] = {}
        self._values: dict[str, list[float]] = {}
        self._stage_starts: list[tuple[int, str]] = []
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(redraw_interval_ms)
        self._timer.timeout.connect(self.redraw)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.canvas)
        self._style_axes()
        self.canvas.draw_idle()

    def append(self, step: int, losses: Mapping[str, float]) -> None:
        """Record the losses of one step and schedule a redraw.

        Values that a log axis cannot show (zero, negative, NaN, infinite) are skipped for
        that key rather than breaking the line for every other key.
        """
        for key, value in losses.items():
            value = float(value)
            if not (math.isfinite(value) and value > 0.0):
                continue
            self._steps.setdefault(key, []).append(int(step))
            self._values.setdefault(key, []).append(value)
        self._schedule_redraw()

    def mark_stage(self, step: int, name: str) -> None:
        """Draw a dashed vertical line where a training stage starts (``step`` is its first)."""
        self._stage_starts.append((int(step), name))
        self._schedule_redraw()

    def clear(self) -> None:
        """Forget every recorded value and stage mark (a new training run starts)."""
        self._steps.clear()
        self._values.clear()
        self._stage_starts.clear()
        self.redraw()

    def history(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Recorded ``(steps, values)`` arrays for each loss key."""
        return {key: (np.asarray(self._steps[key]), np.asarray(self._values[key]))
                for key in self._steps}

    def set_colors(self, background: str, foreground: str) -> None:
        """Match the figure to the viewer's theme (colours as matplotlib accepts them)."""
        self._background, self._foreground = background, foreground
        self.redraw()

    def redraw(self) -> None:
        """Draw the figure now from everything recorded so far."""
        self._timer.stop()
        self.axes.clear()
        self._style_axes()
        for key in sorted(self._steps, key=_legend_order):
            steps, values = self._steps[key], np.asarray(self._values[key])
            smooth = smoothed(values)
            line, = self.axes.plot(steps, smooth, label=LOSS_LABELS.get(key, key),
                                   linewidth=1.6 if key == "total" else 1.0)
            if smooth is not values:  # the raw values stay visible behind their trend
                self.axes.plot(steps, values, color=line.get_color(), linewidth=0.6, alpha=0.25)
        for step, name in self._stage_starts:
            self.axes.axvline(step, color=self._foreground, linestyle="--", linewidth=0.8,
                              alpha=0.6)
            self.axes.annotate(name, (step, 0.0), xycoords=("data", "axes fraction"),
                               xytext=(3, 3), textcoords="offset points", va="bottom",
                               fontsize=7, color=self._foreground, alpha=0.8)
        if self._steps:
            # above the axes, so that it never hides a curve
            legend = self.axes.legend(fontsize=7, ncols=4, loc="lower left",
                                      bbox_to_anchor=(0.0, 1.02, 1.0, 0.2), mode="expand",
                                      frameon=False, handlelength=1.2, columnspacing=0.8)
            for text in legend.get_texts():
                text.set_color(self._foreground)
        self.canvas.draw_idle()
        self.redraw_count += 1

    def _schedule_redraw(self) -> None:
        if not self._timer.isActive():
            self._timer.start()

    def _style_axes(self) -> None:
        self.figure.set_facecolor(self._background)
        self.axes.set_facecolor(self._background)
        self.axes.set_yscale("log")
        self.axes.set_xlabel("step", color=self._foreground, fontsize=8)
        self.axes.set_ylabel("loss", color=self._foreground, fontsize=8)
        self.axes.tick_params(colors=self._foreground, labelsize=7)
        for spine in self.axes.spines.values():
            spine.set_color(self._foreground)


def smoothed(values: np.ndarray, points_per_window: int = 40, max_span: int = 50) -> np.ndarray:
    """Trend of positive loss values: an exponential moving average of their logarithm.

    Averaging logarithms (a running geometric mean) suits the log axis. The span grows with
    the number of values (one fortieth of them, at most ``max_span`` steps), so a short run is
    drawn as it is and a long, noisy one as its trend. Returns ``values`` itself when there is
    nothing to smooth.

    >>> smoothed(np.array([1.0, 2.0]))  # too few values to smooth
    array([1., 2.])
    >>> noisy = 0.1 * np.exp(np.random.default_rng(0).normal(0.0, 1.0, 2000))
    >>> bool(np.std(np.log(smoothed(noisy))) < 0.3 * np.std(np.log(noisy)))
    True
    """
    span = min(max_span, len(values) // points_per_window)
    if span < 2:
        return values
    weight = 2.0 / (span + 1.0)
    logs = np.log(values)
    # trend[i] = trend[i-1] + weight * (logs[i] - trend[i-1]), starting at trend[0] = logs[0]
    trend, _ = lfilter([weight], [1.0, weight - 1.0], logs, zi=[(1.0 - weight) * logs[0]])
    return np.exp(trend)


def _legend_order(key: str) -> int:
    """Known keys in the paper's order, unknown ones after them."""
    order = list(LOSS_LABELS)
    return order.index(key) if key in order else len(order)
