"""The result assembled while the sagittal passes finish is the result of the whole views:
the same volumes to the bit, the disagreement map rounded like them; held pages go back."""

from __future__ import annotations

import mmap

import numpy as np
import pytest
import torch

from conftest import tiny_model
from napari_xview.engine import XViewModel, synthesis, synthesize
from napari_xview.engine.assembly import HeldView
from napari_xview.fusion import disagreement, fuse_views
from napari_xview.io.window import to_input_range, to_unit
from napari_xview.sample import make_phantom

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def whole_views_result(volume, model, ensemble, keep, dtype):
    """The result as synthesis made it before: three whole float32 views, fused, measured and
    converted a volume at a time."""
    window, factor = model.config.window, model.factor
    unit = to_unit(volume.array, window)
    with torch.inference_mode():
        views = synthesis._synthesize_views(model, unit, torch.device("cpu"), False, ensemble,
                                            None)
    fused = fuse_views(*views, factor)
    spread = disagreement(*views) * np.float32(window[1] - window[0])
    result = {"fused": to_input_range(fused, volume.array, window, factor, dtype,
                                      keep_input_slices=keep)}
    for name, view in zip(("axial", "coronal", "sagittal"), views, strict=True):
        result[name] = None if view is None else to_input_range(view, volume.array, window,
                                                                factor, dtype)
    return result, spread


@pytest.mark.parametrize(("networks", "ensemble", "dtype", "keep"), [
    ("pint", 1, "int16", False),
    ("both", 1, "int16", True),
    ("both", 2, "float32", False),  # the last pass flipped along x: columns come reversed
    ("pint", 4, "int16", True),
])
def test_the_assembled_result_is_that_of_the_whole_views(monkeypatch, networks, ensemble,
                                                         dtype, keep):
    # one image per pass and slabs of a few slices: many blocks of columns, none whole
    monkeypatch.setattr(synthesis, "CHUNK_VOXELS", 2 * 3 * 6 * 20)
    torch.manual_seed(0)
    model = XViewModel.create(tiny_model(3, networks=networks)).eval()
    phantom = make_phantom(shape=(6, 20, 18), spacing=(5.0, 1.0, 1.0))
    volume = phantom.with_array(np.rint(phantom.array).astype(dtype))
    expected, spread = whole_views_result(volume, model, ensemble, keep, np.dtype(dtype))
    result = synthesize(volume, model, device="cpu", ensemble=ensemble, keep_input_slices=keep)
    for name, array in expected.items():
        got = getattr(result, name)
        if array is None:
            assert got is None, name
            continue
        assert got.array.dtype == np.dtype(dtype), name
        np.testing.assert_array_equal(got.array, array, err_msg=name)
    assert result.disagreement.array.dtype == np.dtype(dtype)
    # whole HU for an int16 result (the nearest one), the same float32 values otherwise
    tolerance = 0.5 if dtype == "int16" else 0.0
    np.testing.assert_allclose(result.disagreement.array, spread, rtol=0, atol=tolerance)
    assert spread.max() > 1.0  # the views differ: the map is not trivially zero
    # without the views, the same fused volume
    alone = synthesize(volume, model, device="cpu", ensemble=ensemble, keep_input_slices=keep,
                       views=False)
    np.testing.assert_array_equal(alone.fused.array, expected["fused"])
    assert alone.coronal is None and alone.disagreement is None


@pytest.mark.skipif(not hasattr(mmap.mmap, "madvise"), reason="no madvise on this platform")
def test_a_held_view_hands_back_whole_pages_of_the_slices_done_and_keeps_the_rest():
    plane = (3, mmap.PAGESIZE // 4 // 3 + 5)  # a slice of a page and a little more
    held = HeldView((4, *plane))
    held.array[...] = 1.0
    held.release_through(2)
    flat = held.array.reshape(-1)
    pages = 2 * held.array[0].nbytes // mmap.PAGESIZE * mmap.PAGESIZE // 4
    assert pages > 0 and (flat[:pages] == 0).all()  # handed back: zero pages again
    assert (flat[pages:] == 1.0).all()  # the straddling page and the slices after it kept
    held.release_through(4)
    assert (held.array[:3] == 0).all()
