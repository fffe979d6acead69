"""The scans training learns from, in memory all at once or a bounded, rotating few at a time.

A collection of thousands of scans does not fit in memory, and training does not need it to:
each step crops a few of them. :class:`VolumeStore` keeps at most ``in_memory`` scans on the
[0, 1] scale and reads the others when their turn comes. Which scans are in memory is a pure
function of the step (and of the seed and the rank): step ``s`` belongs to the block
``s // rotate_every``, and block ``e`` holds the ``e``-th group of ``in_memory`` scans in a
stream of seeded permutations of the collection. Every scan therefore gets its turn, equally
often in the long run; a resumed run, or another rank, computes the same sets without saving
them; and when everything fits (the default) the store draws exactly what a plain list of
scans would, so that results do not change.

Scans not yet read are :class:`ScanFile` s: a path with what training must know before the
voxels (shape, spacing, slice thickness), read once when the collection is opened.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from napari_xview.axes import check_slice_axis, reorient_slice_axis
from napari_xview.io import Volume, load_volume
from napari_xview.io.window import to_unit


@dataclass(frozen=True)
class ScanFile:
    """A scan on disk, read when training needs its voxels.

    ``shape``, ``spacing`` and the slice thickness are what
    :class:`~napari_xview.engine.Trainer` needs to know of a scan before its voxels (crop
    sizes, in-plane pairs, slice geometry): :meth:`open` reads the file once, keeps them and
    lets the voxels go. ``reorient`` and ``thickness_override`` are applied at every read.
    """

    path: Path
    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    slice_thickness: float | None
    reorient: bool = False
    thickness_override: float | None = None

    @classmethod
    def open(cls, path: str | Path, *, reorient: bool = False,
             slice_thickness: float | None = None) -> ScanFile:
        """Read ``path`` once (validating it) and keep its geometry, not its voxels."""
        volume = _read(Path(path), reorient, slice_thickness)
        return cls(Path(path), volume.shape, tuple(volume.spacing), volume.slice_thickness,
                   reorient, slice_thickness)

    @property
    def thickness(self) -> float:
        """The slice thickness, as :attr:`Volume.thickness` (the spacing where none is stated)."""
        return self.spacing[0] if self.slice_thickness is None else self.slice_thickness

    @property
    def source(self) -> str:
        """The file's path, as messages name it."""
        return str(self.path)

    def load(self) -> Volume:
        """The scan, read again (with the same reorientation and thickness)."""
        return _read(self.path, self.reorient, self.thickness_override)


def _read(path: Path, reorient: bool, slice_thickness: float | None) -> Volume:
    volume = load_volume(path)
    if reorient:
        volume = reorient_slice_axis(volume)
    if slice_thickness is not None:
        volume = volume.with_thickness(slice_thickness)
    return volume


#: What a trainer learns from: one scan, in memory or on disk, or a collection of them.
Scans = Volume | ScanFile | Sequence[Volume | ScanFile]


class VolumeStore(Sequence):
    """The training scans on the [0, 1] scale: ``store[i]`` is scan ``i`` as a float32 tensor.

    Parameters
    ----------
    scans : sequence of Volume or ScanFile
        The collection. Volumes are already in memory (their unit copies are what the store
        bounds); scan files are read when their turn comes.
    window : (float, float)
        The intensity window mapped to [0, 1].
    in_memory : int or None
        Most scans held at once; None holds all of them (converted up front, as before).
    rotate_every : int
        Steps during which the same scans are in memory.
    seed : int
        Seed of the rotation (the trainer gives each rank its own).
    """

    def __init__(self, scans: Sequence[Volume | ScanFile], window: tuple[float, float], *,
                 in_memory: int | None = None, rotate_every: int = 100, seed: int = 0):
        if not scans:
            raise ValueError("no volume to train on: give at least one")
        if in_memory is not None and in_memory < 1:
            raise ValueError(f"in_memory must be at least 1 or None, got {in_memory}")
        if rotate_every < 1:
            raise ValueError(f"rotate_every must be at least 1, got {rotate_every}")
        for scan in scans:
            # training learns to add slices along axis 0 (ScanFile has the spacing too)
            check_slice_axis(scan, purpose="training")
        self.scans = list(scans)
        self.window = window
        self.shapes = [tuple(scan.shape) for scan in self.scans]
        self.capacity = None if in_memory is None or in_memory >= len(scans) else in_memory
        self.rotate_every = rotate_every
        self.seed = seed
        self._cache: OrderedDict[int, torch.Tensor] = OrderedDict()
        self._resident: list[int] | None = None
        if self.capacity is None:
            for index in range(len(self.scans)):
                self._cache[index] = self._unit(index)
        else:
            self.set_step(0)

    @classmethod
    def from_tensors(cls, tensors: Sequence[torch.Tensor]) -> VolumeStore:
        """A store of scans already on the [0, 1] scale, all in memory (the samplers' tests)."""
        store = cls.__new__(cls)
        store.scans, store.window = list(tensors), (0.0, 1.0)
        store.shapes = [tuple(tensor.shape) for tensor in tensors]
        store.capacity, store.rotate_every, store.seed = None, 1, 0
        store._cache = OrderedDict(enumerate(tensors))
        store._resident = None
        return store

    def __len__(self) -> int:
        return len(self.scans)

    def __getitem__(self, index: int) -> torch.Tensor:
        if index in self._cache:
            self._cache.move_to_end(index)
            return self._cache[index]
        tensor = self._unit(index)
        self._cache[index] = tensor
        if self.capacity is not None:
            while len(self._cache) > self.capacity:  # least recently used first
                self._cache.popitem(last=False)
        return tensor

    def _unit(self, index: int) -> torch.Tensor:
        scan = self.scans[index]
        volume = scan.load() if isinstance(scan, ScanFile) else scan
        return torch.from_numpy(to_unit(volume.array, self.window))

    @property
    def resident(self) -> list[int] | None:
        """Indices of the scans that crops come from now; None when all are in memory."""
        return self._resident

    def resident_at(self, step: int) -> list[int] | None:
        """The scans in memory during ``step`` (None: all); a pure function of the step."""
        if self.capacity is None:
            return None
        count, size = len(self.scans), self.capacity
        groups = math.ceil(count / size)
        cycle, group = divmod(step // self.rotate_every, groups)
        order = torch.randperm(count, generator=torch.Generator().manual_seed(
            self.seed + 7919 * cycle)).tolist()
        members = order[group * size:(group + 1) * size]
        members += order[:size - len(members)]  # the last group is filled from the first
        return sorted(members)

    def set_step(self, step: int) -> None:
        """Hold the scans of ``step`` in memory (reading them now), and only those."""
        resident = self.resident_at(step)
        if resident == self._resident:
            return
        self._resident = resident
        for index in [i for i in self._cache if i not in resident]:
            del self._cache[index]
        for index in resident:
            self[index]

    def draw(self, generator: torch.Generator, among: Sequence[int] | None = None) -> int:
        """A random scan index for a crop: among the resident scans (of ``among``, if given).

        With everything in memory this is one ``torch.randint`` over ``among`` (or all), the
        draw a plain list of scans makes. Where no scan of ``among`` is resident, any of them
        is drawn (and read): the bound on memory holds, only the read costs time.
        """
        candidates = range(len(self)) if among is None else among
        if self._resident is not None:
            resident = [i for i in candidates if i in self._resident]
            candidates = resident or candidates
        return candidates[int(torch.randint(len(candidates), (1,), generator=generator))]
