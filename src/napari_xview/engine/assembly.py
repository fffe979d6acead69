"""The result of a synthesis, assembled while the last view's passes finish (issue 16's bound).

Equation (7) and the disagreement map are per voxel, so any block of the volume can be fused
as soon as every view of it exists. The views come one after the other: O_a and O_c (and,
with a self-ensemble, the running sums of every view) are held whole, in float32 on the
networks' [0, 1] scale, exactly as the fusion reads them; O_s, the last, is never held. Each
pass of sagittal images hands over its columns, which are averaged, checked, fused, measured
and mapped to the scan's values at once. The held views are mapped to the scan's values last,
a slab of z at a time, each slab's float32 pages handed back to the system as soon as its
values are written (:class:`HeldView`).

Nothing of what a result holds changes: every voxel goes through the same float32 operations,
in the same order, as from whole views, so the fused volume and the views are the same to the
bit (``tests/test_assembly.py``). The disagreement map takes the result's data type: int16 HU
for an integer scan (rounded, as the fused volume whose reliability it shows is rounded),
float32 otherwise. For the default model, 512 x 512 x 300 int16 at r = 4 with the views kept
then peaks while the sagittal passes run, at the held O_c plus the three int16 volumes they
write: 3.8 GiB in all, against 6.1 GiB from whole views (docs/speed.md, "Memory").
"""

from __future__ import annotations

import mmap
from collections.abc import Sequence

import numpy as np

from napari_xview.fusion import disagreement, fuse_views
from napari_xview.io.window import to_input_range

_INT16_MAX = np.iinfo(np.int16).max


class HeldView:
    """A float32 volume in anonymous memory whose leading z slices can be handed back.

    numpy's own arrays come from malloc, which keeps or returns memory as it sees fit (and
    keeps all of it while :func:`~napari_xview.engine.allocator.heap_reuse` is active); a
    mapping of its own lets the pages of slices already converted go back to the system
    while the rest of the volume is still being read.
    """

    def __init__(self, shape: Sequence[int]):
        count = int(np.prod(shape))
        # private: Python maps anonymous memory shared by default, and shared pages handed
        # back stay in memory (and keep their values) for the other sharers there could be
        private = {"flags": mmap.MAP_PRIVATE} if hasattr(mmap, "MAP_PRIVATE") else {}
        self._map = mmap.mmap(-1, max(1, 4 * count), **private)
        #: the volume, ``shape``, C order (zero-filled until written)
        self.array = np.frombuffer(self._map, np.float32, count).reshape(shape)

    def release_through(self, stop: int) -> None:
        """Hand back the whole pages of slices ``[0, stop)``, which are never read again.

        Reading them afterwards gives zeros. Without ``madvise`` (Windows) nothing happens.
        Pages already handed back are skipped by the kernel, so the range always starts at 0
        and no page that straddles two calls is left behind.
        """
        advise = getattr(self._map, "madvise", None)
        if advise is None or not hasattr(mmap, "MADV_DONTNEED"):
            return
        end = stop * self.array[0].nbytes // mmap.PAGESIZE * mmap.PAGESIZE
        if end > 0:
            advise(mmap.MADV_DONTNEED, 0, end)


def check_finite_view(name: str, array: np.ndarray, where: str = "") -> None:
    """Raise FloatingPointError if a network output holds NaN or infinity.

    Checked before anything is converted: an int16 result would turn NaN into arbitrary
    integers that no later check could tell from tissue. A float64 sum is finite exactly
    when every value is (float32 values cannot overflow it), and needs no temporary array.
    """
    if np.isfinite(array.sum(dtype=np.float64)):
        return
    bad = int(array.size - np.isfinite(array).sum())
    raise FloatingPointError(
        f"the networks' {name} view holds {bad} NaN or infinite value(s){where}: the model's "
        "weights are corrupt or its training diverged; retrain it (or load another model). "
        "Nothing was produced")


class ResultAssembler:
    """Fuses, measures and converts a synthesis a block of columns at a time.

    Parameters
    ----------
    hu_input : numpy.ndarray
        The input ``(l, y, x)`` as read (HU for CT), not clipped.
    window : sequence of float
        The networks' window ``(low, high)``.
    factor : int
        The upsampling factor r.
    dtype : numpy.dtype
        int16 or float32, of every volume of the result.
    passes : int
        Passes of the self-ensemble: the held views are sums of that many outputs.
    views : bool
        Keep O_a, O_c, O_s and the disagreement map (else only the fused volume is made).
    keep_input_slices : bool
        Put the input slices back at ``z = r * i`` of the fused volume.
    slab_voxels : int
        Voxels per slab of the conversion to the scan's values.
    """

    def __init__(self, hu_input: np.ndarray, window: Sequence[float], factor: int,
                 dtype: np.dtype, *, passes: int, views: bool, keep_input_slices: bool,
                 slab_voxels: int):
        self.hu_input, self.window, self.factor = hu_input, window, factor
        self.dtype, self.passes, self.views = np.dtype(dtype), passes, views
        self.keep_input_slices, self.slab_voxels = keep_input_slices, slab_voxels
        n_slices, height, width = hu_input.shape
        shape = (factor * (n_slices - 1) + 1, height, width)
        # written a block of columns at a time, so every page is touched by the first block
        self.fused = np.empty(shape, self.dtype)
        self.sagittal = np.empty(shape, self.dtype) if views else None
        self.spread = np.empty(shape, self.dtype) if views else None
        self._held: dict[str, HeldView] = {}

    def hold(self, view: str, shape: Sequence[int]) -> np.ndarray:
        """A new held float32 volume for ``view`` (its output, or the sum of its passes)."""
        held = self._held[view] = HeldView(shape)
        return held.array

    def _mean(self, view: str, columns: tuple[slice, ...],
              last: np.ndarray | None = None) -> np.ndarray:
        """A view's block averaged over the passes as the whole view was: ``(sum + last) / n``."""
        total = self._held[view].array[columns] if view in self._held else None
        if last is not None:
            total = last if total is None else total + last
        return total / np.float32(self.passes) if self.passes > 1 else total

    def _to_scan(self, unit: np.ndarray, columns: tuple[slice, ...],
                 keep_input_slices: bool = False) -> np.ndarray:
        return to_input_range(unit, self.hu_input[columns], self.window, self.factor,
                              self.dtype, keep_input_slices=keep_input_slices,
                              slab_voxels=self.slab_voxels)

    def add_columns(self, start: int, stop: int, sagittal: np.ndarray) -> None:
        """Columns ``x`` in ``[start, stop)`` of the last pass of O_s, ``(z, y, stop - start)``
        in the volume's orientation: their share of every volume of the result."""
        columns = (slice(None), slice(None), slice(start, stop))
        axial = self._mean("axial", columns) if "axial" in self._held else None
        coronal = self._mean("coronal", columns)
        sagittal = self._mean("sagittal", columns, sagittal)
        where = f" (in the columns x = {start} to {stop - 1})"
        for name, block in (("axial", axial), ("coronal", coronal), ("sagittal", sagittal)):
            if block is not None:
                check_finite_view(name, block, where)
        # equation (7): one new array, in HU (and the input's values outside the window)
        fused = fuse_views(axial, coronal, sagittal, self.factor)
        self.fused[columns] = self._to_scan(fused, columns, self.keep_input_slices)
        if not self.views:
            return
        spread = disagreement(axial, coronal, sagittal)
        spread *= np.float32(self.window[1] - self.window[0])  # a spread in HU: no offset
        if self.dtype == np.int16:
            # a spread beyond int16 only comes from a network far outside its window
            spread = np.minimum(np.rint(spread, out=spread), _INT16_MAX, out=spread)
        self.spread[columns] = spread
        # O_s's block is this method's own (a new array, or the pass's output): converted in place
        self.sagittal[columns] = self._to_scan(sagittal, columns)

    def finish(self) -> dict[str, np.ndarray | None]:
        """Every volume of the result by name (None where not kept); call after the last
        :meth:`add_columns`. The held views are converted, or dropped when not kept."""
        arrays: dict[str, np.ndarray | None] = {
            "fused": self.fused, "axial": None, "coronal": None, "sagittal": self.sagittal,
            "disagreement": self.spread}
        held, self._held = self._held, {}
        for view in ("axial", "coronal"):
            if not self.views or view not in held:
                continue
            kept = held.pop(view)
            if self.passes > 1:
                kept.array /= np.float32(self.passes)
            # float32: converted in place, the held volume is the result; int16: each slab's
            # float32 pages go back to the system once its values are in the int16 volume
            arrays[view] = to_input_range(kept.array, self.hu_input, self.window, self.factor,
                                          self.dtype, slab_voxels=self.slab_voxels,
                                          converted=kept.release_through)
            del kept
        held.clear()  # the sagittal sums and the views not kept: unmapped once unreferenced
        return arrays
