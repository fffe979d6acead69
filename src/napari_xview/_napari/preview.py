"""Live preview: one coronal image of the input, synthesised by the model as it trains.

Every :data:`PREVIEW_INTERVAL_S` seconds (more where a preview is slow: at most
:data:`PREVIEW_OVERHEAD` of the time) the training thread, between two steps, passes one
coronal image of the input (the row under the mouse in the viewer, the middle row until the
mouse has been over the input) through PInt and through linear interpolation, and yields a
:class:`Preview`; the dock draws it, with a box that swaps in the linear interpolation for
comparison. Training waits while a preview is computed: the time a preview takes over the
interval between two previews is what it costs the run (``Preview.share``, shown under it).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import numpy as np
from qtpy.QtCore import Qt
from qtpy.QtGui import QImage, QPixmap
from qtpy.QtWidgets import QCheckBox, QLabel, QVBoxLayout, QWidget

#: Seconds between two previews, at least ...
PREVIEW_INTERVAL_S = 5.0
#: ... and longer where a preview takes more than this share of the time (measured on the
#: chest CT at r = 4 under heavy CPU contention: a preview 0.43 s, a step 1.69 s; every 5 s
#: that would be 8 % of the run, this keeps it to 5 %).
PREVIEW_OVERHEAD = 0.05
#: Width in pixels of the drawn preview.
PREVIEW_WIDTH = 320


@dataclass(frozen=True)
class Preview:
    """A coronal image after ``step`` steps: the model's and linear interpolation's, on the
    [0, 1] window scale, ``r (l - 1) + 1`` rows by ``w`` columns; ``share`` of the training
    time went into previews so far."""

    step: int
    row: int
    synthesized: np.ndarray
    linear: np.ndarray
    seconds: float
    share: float


class PreviewSource:
    """What the training thread needs for previews: the input on the window scale, the row
    to show (set from the GUI thread) and the clock.

    Parameters
    ----------
    unit : numpy.ndarray
        The input volume ``(l, h, w)`` mapped to [0, 1] by the model's window.
    factor : int
        The factor r.
    interval_s : float, optional
        Seconds between previews (:data:`PREVIEW_INTERVAL_S` by default).
    """

    def __init__(self, unit: np.ndarray, factor: int, interval_s: float | None = None):
        self.unit = unit
        self.factor = factor
        self.interval_s = PREVIEW_INTERVAL_S if interval_s is None else interval_s
        self.row = unit.shape[1] // 2
        self._lock = threading.Lock()
        self._started = time.monotonic()
        self._last = self._started
        self._spent = 0.0
        self._cost = 0.0

    def set_row(self, row: int) -> None:
        """Show coronal image ``row`` (clipped to the volume) from the next preview on."""
        with self._lock:
            self.row = int(np.clip(row, 0, self.unit.shape[1] - 1))

    def due(self) -> bool:
        """Whether a new preview may be drawn: its interval has passed, and long enough
        since the last one for its cost to stay under ``PREVIEW_OVERHEAD`` of the time."""
        wait = max(self.interval_s, self._cost / PREVIEW_OVERHEAD)
        return time.monotonic() - self._last >= wait

    def make(self, trainer) -> Preview:
        """The preview of ``trainer``'s PInt now (in the training thread)."""
        import torch

        from napari_xview.baselines import interpolate_z
        from napari_xview.views import coronal_upsample

        started = time.monotonic()
        with self._lock:
            row = self.row
        image = np.ascontiguousarray(self.unit[:, row:row + 1])
        pint = trainer.model.pint
        was_training = pint.training
        pint.eval()
        try:
            with torch.no_grad():
                upsampled = coronal_upsample(pint, torch.from_numpy(image)[None].to(
                    trainer.device))
        finally:
            pint.train(was_training)
        synthesized = np.clip(upsampled[0, :, 0].float().cpu().numpy(), 0.0, 1.0)
        linear = interpolate_z(image, self.factor, "linear")[:, 0]
        now = time.monotonic()
        self._cost = now - started
        self._spent += self._cost
        self._last = now
        share = self._spent / max(now - self._started, 1e-9)
        return Preview(trainer.step, row, synthesized, linear, now - started, share)


class PreviewPanel(QWidget):
    """The drawn preview, with a box to compare it with linear interpolation.

    Attributes
    ----------
    show_linear : QCheckBox
        Draw linear interpolation of the same image instead of the model's result.
    caption : QLabel
        Which image, after which step, and what the previews cost.
    shown : numpy.ndarray or None
        The image drawn now (for scripts and tests).
    updates : int
        Previews received since the panel was made.
    """

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.show_linear = QCheckBox("Show linear interpolation instead (compare)")
        self.show_linear.toggled.connect(self._draw)
        self.image = QLabel()
        self.image.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.caption = QLabel("preview: during training, every few seconds")
        self.caption.setWordWrap(True)
        self.preview: Preview | None = None
        self.shown: np.ndarray | None = None
        self.updates = 0
        self.display_window = (0.0, 1.0)
        self.aspect = 1.0  # height of a row over the width of a column
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        for widget in (self.image, self.show_linear, self.caption):
            layout.addWidget(widget)

    def set_display(self, window: tuple[float, float], aspect: float) -> None:
        """The grey levels (on the [0, 1] scale) and the row height over the column width."""
        self.display_window = window
        self.aspect = aspect

    def show_preview(self, preview: Preview) -> None:
        """Draw ``preview`` (the synthesis and its linear comparison) in the panel."""
        self.preview = preview
        self.updates += 1
        self._draw()

    def _draw(self, _checked: bool = False) -> None:
        preview = self.preview
        if preview is None:
            return
        linear = self.show_linear.isChecked()
        self.shown = preview.linear if linear else preview.synthesized
        low, high = self.display_window
        grey = np.clip((self.shown - low) / max(high - low, 1e-9), 0, 1)
        pixels = np.ascontiguousarray((255 * grey).astype(np.uint8))
        rows, columns = pixels.shape
        image = QImage(pixels.data, columns, rows, columns, QImage.Format.Format_Grayscale8)
        height = max(1, round(PREVIEW_WIDTH * rows * self.aspect / columns))
        self.image.setPixmap(QPixmap.fromImage(image.copy()).scaled(
            PREVIEW_WIDTH, height, Qt.AspectRatioMode.IgnoreAspectRatio,
            Qt.TransformationMode.SmoothTransformation))
        what = "linear interpolation" if linear else "the model"
        self.caption.setText(
            f"preview: coronal image at row y = {preview.row}, {what}, step {preview.step} "
            f"({preview.seconds:.2f} s; previews take {100 * preview.share:.1f} % of the run)")
