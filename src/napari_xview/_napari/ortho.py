"""Orthogonal inspection: coronal and sagittal canvases beside the viewer's axial one.

Through-plane quality, which is what slice synthesis changes, shows in the coronal (z, x) and
sagittal (z, y) planes. :class:`OrthoViewWidget` is a dock with two extra canvases, in the
spirit of napari's *multiple viewer widget* example: each has its own
:class:`~napari.components.ViewerModel` holding mirrors of the viewer's layers (sharing their
data, following their display settings) with the dims order rolled so that it displays z
against x or z against y.

The three views share one 3-D point, the crosshair drawn in the two extra canvases: moving a
slider in any view moves it in all, and with *follow the mouse cursor* on, hovering over any
canvas sets the point's in-plane coordinates there, so the other two views cut through the
voxel under the mouse.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from napari.components import ViewerModel
from napari.layers import Layer
from napari.qt import QtViewer
from qtpy.QtCore import Qt, QTimer
from qtpy.QtWidgets import (
    QCheckBox,
    QDockWidget,
    QLabel,
    QMainWindow,
    QSplitter,
    QVBoxLayout,
    QWidget,
)
from vispy.scene.visuals import Line

if TYPE_CHECKING:
    import napari

#: Layer properties mirrored from the viewer's layers to their copies in the extra canvases.
MIRRORED_PROPERTIES: tuple[str, ...] = (
    "data", "name", "visible", "opacity", "blending", "contrast_limits", "gamma", "colormap",
    "scale", "translate", "rotate", "shear", "affine", "interpolation2d", "rendering",
)

#: The two extra planes: name, and which world axes (of z, y, x) the canvas displays.
PLANES: dict[str, tuple[str, str]] = {"coronal": ("z", "x"), "sagittal": ("z", "y")}

_CROSSHAIR_COLOR = (0.3, 0.85, 1.0, 0.8)

#: Below this height (pixels) a canvas is too small to use: the dock then moves to the
#: bottom of the window, out of the side area another dock fills.
MIN_CANVAS_HEIGHT = 120
#: Share of the window's height the dock takes in the bottom area.
BOTTOM_SHARE = 0.4


def plane_order(ndim: int, plane: str) -> tuple[int, ...]:
    """Dims order that makes a viewer display ``plane`` of the last three (z, y, x) axes.

    napari displays the last two axes of ``dims.order`` (rows, columns). For the coronal plane
    those are (z, x) and y is sliced; for the sagittal plane (z, y) and x is sliced. Leading
    axes (time, channel) keep their place.

    Examples
    --------
    >>> plane_order(3, "coronal"), plane_order(3, "sagittal"), plane_order(4, "coronal")
    ((1, 0, 2), (2, 0, 1), (0, 2, 1, 3))
    """
    if ndim < 3:
        raise ValueError(f"orthogonal planes need at least 3 dimensions, got {ndim}")
    z, y, x = ndim - 3, ndim - 2, ndim - 1
    leading = tuple(range(ndim - 3))
    if plane == "coronal":
        return (*leading, y, z, x)
    if plane == "sagittal":
        return (*leading, x, z, y)
    raise ValueError(f"plane must be one of {tuple(PLANES)}, got {plane!r}")


def _unwrap(obj: Any) -> Any:
    """The object behind napari's ``PublicOnlyProxy``, if ``obj`` is one.

    Plugin widgets receive the viewer wrapped in a proxy, and each attribute access returns a
    new proxy, so identity comparisons and dictionary keys need the object itself.
    """
    return getattr(obj, "__wrapped__", obj)


def mirror_layer(layer: Layer) -> Layer:
    """A new layer showing the same data with the same settings (the data is not copied)."""
    data, state, layer_type = layer.as_layer_data_tuple()
    return Layer.create(data, dict(state), layer_type)


class _LayerMirror:
    """A viewer layer and its two copies, kept in step as the layer's properties change.

    The layer's event emitters hold only a weak reference to :meth:`sync` (napari connects
    bound methods weakly), so a closed dock leaves no callback behind on the viewer's layers.
    """

    def __init__(self, layer: Layer, on_geometry: Callable[[], None]) -> None:
        self.layer = layer
        self.copies = (mirror_layer(layer), mirror_layer(layer))
        self._on_geometry = on_geometry
        self._names = [name for name in MIRRORED_PROPERTIES
                       if hasattr(layer.events, name) and hasattr(layer, name)]
        for name in self._names:
            getattr(layer.events, name).connect(self.sync)

    def sync(self, event) -> None:
        """Copy the property that changed (the event's type names it) to both copies."""
        name = event.type
        for copy in self.copies:
            setattr(copy, name, getattr(self.layer, name))
        if name in ("data", "scale", "translate"):
            self._on_geometry()

    def disconnect(self) -> None:
        """Stop following the layer (it left the viewer)."""
        for name in self._names:
            getattr(self.layer.events, name).disconnect(self.sync)


class _PlaneView(QWidget):
    """One extra canvas: a title, a :class:`QtViewer` on its own model, and the crosshair."""

    def __init__(self, plane: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.plane = plane
        self.model = ViewerModel(title=plane)
        self.qt_viewer = QtViewer(self.model, show_welcome_screen=False)
        self.title = QLabel(plane.capitalize())
        self._crosshair = Line(color=_CROSSHAIR_COLOR, width=1, connect="segments",
                               parent=self.qt_viewer.canvas.view.scene)
        # drawn after (over) the layer visuals, and never hidden behind them by depth
        self._crosshair.order = 1_000_000
        self._crosshair.set_gl_state(depth_test=False, blend=True)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.title)
        layout.addWidget(self.qt_viewer, stretch=1)

    def update_crosshair(self, point: Sequence[float]) -> None:
        """Draw ``point`` as two lines across the displayed extent of the layers."""
        dims = self.model.dims
        if dims.ndim < 3 or dims.ndim != len(point) or not self.model.layers:
            self._crosshair.visible = False
            return
        row_axis, column_axis = dims.displayed[-2], dims.displayed[-1]
        extent = self.model.layers.extent
        # extent.world spans voxel centres; reach the outer edges of the end voxels
        low = extent.world[0] - np.asarray(extent.step) / 2
        high = extent.world[1] + np.asarray(extent.step) / 2
        row, column = point[row_axis], point[column_axis]
        # vispy scene coordinates are (column, row) in world units of the displayed axes
        segments = np.array([
            [low[column_axis], row], [high[column_axis], row],
            [column, low[row_axis]], [column, high[row_axis]],
        ], dtype=np.float32)
        self._crosshair.set_data(pos=segments)
        self._crosshair.visible = True

    def update_title(self, point: Sequence[float]) -> None:
        """Name the plane and where it cuts the sliced axis, in world units (mm)."""
        dims = self.model.dims
        if dims.ndim < 3 or dims.ndim != len(point):
            self.title.setText(self.plane.capitalize())
            return
        sliced = dims.order[-3]
        axis_name = "zyx"[sliced - (dims.ndim - 3)]
        rows, columns = PLANES[self.plane]
        self.title.setText(f"{self.plane.capitalize()} ({rows} × {columns}) at "
                           f"{axis_name} = {point[sliced]:.1f}")


class OrthoViewWidget(QWidget):
    """Dock widget with coronal and sagittal canvases that share the viewer's 3-D point.

    Parameters
    ----------
    viewer : napari.Viewer
        The viewer whose layers are mirrored; its own canvas remains the axial view.

    Attributes
    ----------
    coronal, sagittal : _PlaneView
        The two extra views; ``.model`` is each one's :class:`~napari.components.ViewerModel`
        and ``.qt_viewer`` its canvas.
    follow_cursor : QCheckBox
        When checked, hovering over any canvas moves the shared point under the mouse.
    """

    def __init__(self, viewer: napari.viewer.Viewer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = viewer
        self.coronal = _PlaneView("coronal")
        self.sagittal = _PlaneView("sagittal")
        self.follow_cursor = QCheckBox("Follow the mouse cursor")
        self.follow_cursor.setChecked(True)
        self.follow_cursor.setToolTip(
            "Hovering over a canvas moves the other views to the voxel under the mouse")
        self._mirrors: dict[int, _LayerMirror] = {}
        self._syncing = False
        self.splitter = QSplitter(Qt.Orientation.Vertical)
        self.splitter.addWidget(self.coronal)
        self.splitter.addWidget(self.sagittal)
        self._placed = False
        self._placement_pending = False
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addWidget(self.follow_cursor)
        layout.addWidget(self.splitter, stretch=1)
        for index, layer in enumerate(viewer.layers):
            self._add_mirror(index, layer)
        self._point: tuple[float, ...] = tuple(viewer.dims.point)
        self._connect()
        self._sync_orders()

    @property
    def models(self) -> tuple[ViewerModel, ...]:
        """The viewer and the two extra models, which all share one point."""
        return (self.viewer, self.coronal.model, self.sagittal.model)

    @property
    def point(self) -> tuple[float, ...]:
        """The shared point (world coordinates of every dimension): the crosshair centre."""
        return self._point

    def set_point(self, point: Sequence[float]) -> None:
        """Move the shared point (world coordinates, all dimensions) in every view."""
        if len(point) != self.viewer.dims.ndim:
            raise ValueError(f"point needs {self.viewer.dims.ndim} coordinates, got {len(point)}")
        self._point = tuple(float(value) for value in point)
        self._apply_point()

    # -- wiring -------------------------------------------------------------------------
    def _connect(self) -> None:
        layers = self.viewer.layers.events
        layers.inserted.connect(self._on_inserted)
        layers.removed.connect(self._on_removed)
        layers.moved.connect(self._sync_layer_order)
        layers.reordered.connect(self._sync_layer_order)
        for model in self.models:
            model.dims.events.point.connect(self._on_point)
            model.cursor.events.position.connect(self._on_cursor)

    def _on_inserted(self, event) -> None:
        self._add_mirror(event.index, event.value)
        self._sync_orders()

    def _on_removed(self, event) -> None:
        mirror = self._mirrors.pop(id(_unwrap(event.value)), None)
        if mirror is None:
            return
        mirror.disconnect()
        for view, copy in zip((self.coronal, self.sagittal), mirror.copies, strict=True):
            view.model.layers.remove(copy)
        self._sync_orders()

    def _add_mirror(self, index: int, layer: Layer) -> None:
        mirror = _LayerMirror(layer, on_geometry=self._refresh_views)
        for view, copy in zip((self.coronal, self.sagittal), mirror.copies, strict=True):
            view.model.layers.insert(index, copy)
        self._mirrors[id(_unwrap(layer))] = mirror

    def _sync_layer_order(self, _event=None) -> None:
        for position, layer in enumerate(self.viewer.layers):
            mirror = self._mirrors.get(id(_unwrap(layer)))
            if mirror is None:
                continue
            for view, copy in zip((self.coronal, self.sagittal), mirror.copies, strict=True):
                current = view.model.layers.index(copy)
                if current != position:
                    view.model.layers.move(current, position)

    def _sync_orders(self) -> None:
        """Roll each extra view's dims order to its plane; refit when the dimensions change.

        Called when layers come and go. A layer that keeps the number of dimensions (a result
        layer over its input) leaves the zoom and the shared point as they were.
        """
        dimensions_changed = self.viewer.dims.ndim != len(self._point)
        for view in (self.coronal, self.sagittal):
            dims = view.model.dims
            if dims.ndim >= 3 and tuple(dims.order) != plane_order(dims.ndim, view.plane):
                dims.order = plane_order(dims.ndim, view.plane)
                dims.axis_labels = (*dims.axis_labels[:-3], "z", "y", "x")
            if dimensions_changed:
                view.model.reset_view()
        if dimensions_changed:
            self._point = tuple(self.viewer.dims.point)
        self._apply_point()

    def showEvent(self, event) -> None:
        """Fit the views to their canvases once those have their real size."""
        super().showEvent(event)
        self._schedule_placement()
        for view in (self.coronal, self.sagittal):
            view.model.reset_view()

    def resizeEvent(self, event) -> None:
        """A dock opened later in the same side area squeezes this one: move out of it."""
        super().resizeEvent(event)
        self._schedule_placement()

    def _schedule_placement(self) -> None:
        # never re-dock from inside a show or resize event: the window is laying out then
        if not self._placed and not self._placement_pending:
            self._placement_pending = True
            QTimer.singleShot(0, self._place_dock)

    # -- layout -------------------------------------------------------------------------
    def _dock_and_window(self) -> tuple[QDockWidget | None, QMainWindow | None]:
        dock = self.parentWidget()
        while dock is not None and not isinstance(dock, QDockWidget):
            dock = dock.parentWidget()
        window = dock.parentWidget() if dock is not None else None
        return dock, window if isinstance(window, QMainWindow) else None

    def _place_dock(self) -> None:
        """Share no side area with another dock: move to the bottom of the window, once.

        napari docks plugin widgets on the right, one under the other; beside the tall
        *Slice synthesis* dock the canvases were left no height at all (issue 19). When this
        dock shares its side area with another visible dock and its canvases get less than
        :data:`MIN_CANVAS_HEIGHT`, it moves to the bottom area, under the viewer's canvas,
        with the two planes side by side; the side area keeps the window's corner on its
        side, so the other dock keeps its full height. It does so once: a dock the user
        moves back stays where it is put.
        """
        self._placement_pending = False
        dock, window = self._dock_and_window()
        if self._placed or dock is None or window is None or dock.isFloating():
            return
        area = window.dockWidgetArea(dock)
        if area not in (Qt.DockWidgetArea.LeftDockWidgetArea,
                        Qt.DockWidgetArea.RightDockWidgetArea):
            return
        shared = any(other is not dock and other.isVisible() and not other.isFloating()
                     and window.dockWidgetArea(other) == area
                     for other in window.findChildren(QDockWidget))
        if not shared or self.canvas_height() >= MIN_CANVAS_HEIGHT:
            return
        self._placed = True
        # the side dock keeps the window's full height; the bottom area spans the rest
        corner = (Qt.Corner.BottomRightCorner if area == Qt.DockWidgetArea.RightDockWidgetArea
                  else Qt.Corner.BottomLeftCorner)
        window.setCorner(corner, area)
        window.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, dock)
        self.splitter.setOrientation(Qt.Orientation.Horizontal)
        window.resizeDocks([dock], [int(BOTTOM_SHARE * window.height())],
                           Qt.Orientation.Vertical)

    def canvas_height(self) -> int:
        """Height in pixels of the smaller of the two canvases."""
        return min(view.qt_viewer.canvas.native.height()
                   for view in (self.coronal, self.sagittal))

    def _refresh_views(self) -> None:
        for view in (self.coronal, self.sagittal):
            view.update_crosshair(self._point)
            view.update_title(self._point)

    # -- the shared point ---------------------------------------------------------------
    def _on_point(self, event) -> None:
        """A slider moved in one view: take its sliced axes into the shared point."""
        if self._syncing:
            return
        source = next((model for model in self.models
                       if _unwrap(model.dims) is _unwrap(event.source)), None)
        if source is None or len(event.value) != len(self._point):
            self._point = tuple(self.viewer.dims.point)
            self._apply_point()
            return
        point = list(self._point)
        for axis in source.dims.not_displayed:
            point[axis] = float(event.value[axis])
        self._point = tuple(point)
        self._apply_point()

    def _on_cursor(self, event) -> None:
        """The mouse moved over one canvas: take the hovered in-plane coordinates.

        napari also moves a model's cursor when its slice changes, mouse or not; only the
        model the mouse is over (``mouse_over_canvas``) speaks for the mouse, or a slider
        moved in one view would echo stale cursor coordinates back into the shared point.
        """
        if self._syncing or not self.follow_cursor.isChecked():
            return
        source = next((model for model in self.models
                       if _unwrap(model.cursor) is _unwrap(event.source)), None)
        position = tuple(event.value)
        if (source is None or not source.mouse_over_canvas
                or len(position) != len(self._point) or len(position) < 3):
            return
        point = list(self._point)
        for axis in source.dims.displayed:
            point[axis] = float(position[axis])
        self._point = tuple(point)
        self._apply_point()

    def _apply_point(self) -> None:
        """Move each view to the shared point where its sliced axes differ; redraw crosshairs.

        A view whose sliced coordinates already match is left alone: hovering over the axial
        canvas then re-slices only the coronal and sagittal views, never the hovered one.
        """
        self._syncing = True
        try:
            for model in self.models:
                dims = model.dims
                if dims.ndim != len(self._point):
                    continue
                if any(dims.point[axis] != self._point[axis] for axis in dims.not_displayed):
                    dims.point = self._point
        finally:
            self._syncing = False
        self._refresh_views()
