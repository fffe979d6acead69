"""Orthogonal views: coronal and sagittal canvases that share the viewer's point."""

from __future__ import annotations

import numpy as np
import pytest

from napari_xview._napari.ortho import plane_order


def test_plane_order_displays_z_against_x_and_z_against_y():
    assert plane_order(3, "coronal") == (1, 0, 2)  # y sliced; rows z, columns x
    assert plane_order(3, "sagittal") == (2, 0, 1)  # x sliced; rows z, columns y
    assert plane_order(5, "sagittal") == (0, 1, 4, 2, 3)  # leading axes stay first
    with pytest.raises(ValueError, match="at least 3 dimensions"):
        plane_order(2, "coronal")
    with pytest.raises(ValueError, match="plane must be one of"):
        plane_order(3, "axial")


@pytest.fixture
def viewer(make_napari_viewer, tiny_phantom):
    from napari_xview._napari._io import layer_data

    viewer = make_napari_viewer()
    data, kwargs, _ = layer_data(tiny_phantom, "phantom")
    viewer.add_image(data, **kwargs)
    return viewer


def add_ortho(viewer):
    """The dock from the Plugins menu contribution.

    Tests keep it in a local variable, not in a fixture: a fixture value lives until after
    ``make_napari_viewer`` checks that every canvas (QtViewer) was released.
    """
    _, ortho = viewer.window.add_plugin_dock_widget("napari-xview", "Orthogonal views")
    return ortho


def sliced_point(model):
    """World coordinate of the axis each view slices (its slider)."""
    [axis] = model.dims.not_displayed
    return axis, model.dims.point[axis]


@pytest.mark.gui
def test_the_extra_views_show_the_coronal_and_sagittal_planes(viewer):
    from napari_xview._napari.ortho import OrthoViewWidget

    ortho = add_ortho(viewer)
    assert isinstance(ortho, OrthoViewWidget)
    for view, sliced in ((ortho.coronal, 1), (ortho.sagittal, 2)):
        assert [layer.name for layer in view.model.layers] == ["phantom"]
        assert view.model.dims.not_displayed == (sliced,)
        assert view.model.dims.displayed[0] == 0  # z runs down the rows
        copy = view.model.layers["phantom"]
        assert copy.data is viewer.layers["phantom"].data  # shared, not copied
        np.testing.assert_allclose(copy.scale, (4.0, 1.0, 1.0))


@pytest.mark.gui
def test_the_views_follow_the_cursor_and_share_one_point(viewer):
    ortho = add_ortho(viewer)
    z_before = viewer.dims.point[0]

    # hovering over the axial canvas: the coronal view cuts at the cursor's y, the sagittal
    # view at its x, and the axial slice stays where it is
    viewer.mouse_over_canvas = True  # what QtViewer sets when the mouse enters the canvas
    viewer.cursor.position = (z_before, 3.5, -7.5)
    assert sliced_point(ortho.coronal.model) == (1, 3.5)
    assert sliced_point(ortho.sagittal.model) == (2, -7.5)
    assert viewer.dims.point[0] == z_before
    assert ortho.point == (z_before, 3.5, -7.5)
    assert ortho.coronal.title.text() == "Coronal (z × x) at y = 3.5"

    # hovering over the coronal canvas (z down, x across) moves the axial slice and the
    # sagittal cut, and keeps the coronal cut
    viewer.mouse_over_canvas = False
    ortho.coronal.model.mouse_over_canvas = True
    ortho.coronal.model.cursor.position = (8.0, 3.5, 10.5)
    assert viewer.dims.point[0] == 8.0
    assert viewer.dims.current_step[0] == 6  # slice 6 of translate -16 mm + 4 mm steps
    assert sliced_point(ortho.sagittal.model) == (2, 10.5)
    assert sliced_point(ortho.coronal.model) == (1, 3.5)

    # a slider moved in one view moves the others
    viewer.dims.set_point(0, -12.0)
    assert ortho.point[0] == -12.0
    ortho.sagittal.model.dims.set_point(2, 0.5)
    assert ortho.point == (-12.0, 3.5, 0.5)

    # a cursor that moves with its slice, not with the mouse, is not followed
    ortho.coronal.model.mouse_over_canvas = False
    ortho.coronal.model.cursor.position = (4.0, 3.5, -20.5)
    assert ortho.point == (-12.0, 3.5, 0.5)

    # with following off, the mouse moves nothing
    ortho.follow_cursor.setChecked(False)
    viewer.mouse_over_canvas = True
    viewer.cursor.position = (-12.0, -20.5, -20.5)
    assert sliced_point(ortho.coronal.model) == (1, 3.5)

    ortho.set_point((0.0, 1.5, 2.5))
    assert viewer.dims.point[0] == 0.0
    assert sliced_point(ortho.coronal.model) == (1, 1.5)
    with pytest.raises(ValueError, match="needs 3 coordinates"):
        ortho.set_point((1.0, 2.0))


@pytest.mark.gui
def test_layers_are_mirrored_as_they_come_change_and_go(viewer):
    ortho = add_ortho(viewer)
    source = viewer.layers["phantom"]
    source.contrast_limits = (-200.0, 300.0)
    source.colormap = "magma"
    source.visible = False
    for view in (ortho.coronal, ortho.sagittal):
        copy = view.model.layers["phantom"]
        assert tuple(copy.contrast_limits) == (-200.0, 300.0)
        assert copy.colormap.name == "magma" and not copy.visible

    result = viewer.add_image(np.zeros((17, 48, 48), np.float32), name="phantom [fused]",
                              scale=(2.0, 1.0, 1.0), translate=source.translate)
    assert [layer.name for layer in ortho.sagittal.model.layers] == ["phantom", "phantom [fused]"]
    viewer.layers.move(1, 0)
    assert [layer.name for layer in ortho.coronal.model.layers] == ["phantom [fused]", "phantom"]
    result.name = "renamed"
    assert "renamed" in ortho.coronal.model.layers
    viewer.layers.remove(result)
    assert [layer.name for layer in ortho.sagittal.model.layers] == ["phantom"]
    assert [layer.name for layer in ortho.coronal.model.layers] == ["phantom"]


@pytest.mark.gui
@pytest.mark.parametrize("synthesis_first", [True, False])
def test_the_canvases_keep_a_usable_size_beside_the_synthesis_dock(make_napari_viewer,
                                                                   tiny_phantom, qtbot,
                                                                   synthesis_first):
    """Issue 19: at napari's default window size, the tall Slice synthesis dock left the
    orthogonal canvases no height when both were docked on the right."""
    from napari_xview._napari._io import layer_data

    viewer = make_napari_viewer(show=True)
    data, kwargs, _ = layer_data(tiny_phantom, "phantom")
    viewer.add_image(data, **kwargs)
    docks = ["Slice synthesis", "Orthogonal views"]
    widgets = {name: viewer.window.add_plugin_dock_widget("napari-xview", name)[1]
               for name in (docks if synthesis_first else docks[::-1])}
    ortho = widgets["Orthogonal views"]
    window = viewer.window._qt_window
    synthesis = widgets["Slice synthesis"]
    qtbot.waitUntil(lambda: ortho.canvas_height() >= 150 and synthesis.isVisible(),
                    timeout=5000)
    for view in (ortho.coronal, ortho.sagittal):
        canvas = view.qt_viewer.canvas.native
        assert canvas.width() >= 150 and canvas.height() >= 150
        assert canvas.height() <= window.height()
    # the synthesis dock keeps its room, and the viewer's own canvas too
    assert synthesis.height() > 300
    assert viewer.window._qt_viewer.canvas.native.height() >= 150
