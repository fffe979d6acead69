"""Whole-volume synthesis: O_a, O_c, O_s, the fused volume O of equation (7), and where the
views disagree.

Memory stays bounded for any volume: SInt-A runs over a few slice pairs at a time (pairs are
independent), PInt over a few whole coronal or sagittal images at a time (images are
independent, but not the parts of one image: PInt's attention pools over the whole image).
Chunking therefore never changes the result (tests/test_tiling.py).

The networks' intensity window is internal: the results are mapped back to the input's own
range by the rule of :mod:`napari_xview.io.window` (values outside the window pass through
from the input) and come out as int16 for an integer input, float32 otherwise.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from napari_xview.axes import check_slice_axis
from napari_xview.config import ENSEMBLE_PASSES, SYNTHESIS_PRECISIONS
from napari_xview.engine.allocator import heap_reuse
from napari_xview.engine.assembly import ResultAssembler
from napari_xview.engine.device import autocast_for, configure_cpu_threads, resolve_device
from napari_xview.engine.model import XViewModel, load_model
from napari_xview.engine.result import (  # noqa: F401 (SynthesisCancelled: part of this API)
    Cancel,
    SynthesisCancelled,
    SynthesisResult,
    cancel_checker,
)
from napari_xview.engine.workers import cpu_workers, in_order
from napari_xview.grid import is_factor_grid, resample_z
from napari_xview.io import Volume
from napari_xview.io.window import output_dtype_for, to_unit
from napari_xview.texture import match_result_texture
from napari_xview.views import axial_upsample, output_length

#: Most input voxels handed to a network at once (16 MiB of float32 input). PInt's features
#: are r x 16 to 64 channels times larger, kept for its layer attention: this bounds them.
CHUNK_VOXELS = 1 << 22
#: Volume axes flipped in each pass of the self-ensemble, in the order passes are added: the
#: second pass reverses every axis at once; four passes give the coronal and sagittal views
#: every combination of a z flip and a flip of their in-plane axis.
ENSEMBLE_FLIPS: tuple[tuple[int, ...], ...] = ((), (0, 1, 2), (0,), (1, 2))

Progress = Callable[[float, str], None]


def _chunks(total: int, size: int) -> Iterator[tuple[int, int]]:
    for start in range(0, total, size):
        yield start, min(total, start + size)


def _network_scale(window: Sequence[float] | None) -> Callable[[np.ndarray], np.ndarray]:
    """How a part of the input becomes the networks' input: as given (None: it is already on
    the [0, 1] scale) or mapped from HU through ``window`` a part at a time. The mapping is
    per voxel, so the parts are those of the whole volume mapped at once, without its
    float32 copy."""
    if window is None:
        return lambda part: part
    return lambda part: to_unit(part, window)


def _synthesize_axial(model: XViewModel, unit: np.ndarray, device: torch.device,
                      amp: bool, report: Callable[[float], None], *,
                      window: Sequence[float] | None = None,
                      out: np.ndarray | None = None) -> np.ndarray:
    """O_a = SInt_a(V), a few slice pairs at a time (``window``: ``unit`` is in HU; ``out``:
    the array to write O_a into)."""
    factor = model.factor
    n_slices, height, width = unit.shape
    scale = _network_scale(window)
    output = np.empty((output_length(n_slices, factor), height, width), np.float32) \
        if out is None else out
    pairs_per_chunk = max(1, CHUNK_VOXELS // (height * width))
    with heap_reuse():  # the output above is allocated outside: only temporaries reuse
        for start, stop in _chunks(n_slices - 1, pairs_per_chunk):
            chunk = torch.from_numpy(scale(unit[start:stop + 1]))[None].to(device)
            with autocast_for(device, amp):
                upsampled, _ = axial_upsample(model.sint, chunk)
            output[factor * start:factor * stop + 1] = upsampled[0].float().cpu().numpy()
            report(stop / (n_slices - 1))
    return output


def images_per_pass(factor: int, rows: int, columns: int) -> int:
    """Coronal or sagittal images of ``rows`` x ``columns`` that PInt takes in one pass.

    Each image is always whole: HAN's channel attention averages over the whole image and its
    layer attention correlates whole feature maps, so a piece of an image (a tile along z,
    whatever its halo) would not give the result of the whole (issue 16). Memory is bounded by
    passing fewer images at a time instead: ``CHUNK_VOXELS / 2`` output voxels per pass, at
    least one image. The default model then peaks some 430 MiB above its baseline in a pass
    (measured on 300 x 512 images, docs/speed.md); smaller passes are no slower on CPU.
    """
    return max(1, CHUNK_VOXELS // (2 * factor * rows * columns))


#: Input pixels of one pass of a CPU worker thread, for 16 feature channels (fewer for wider
#: networks). glibc gives each thread its own arena, whose heaps hold at most 64 MiB; a pass
#: whose features outgrow one heap maps fresh pages every time (measured with the default
#: model: 4 images of 36 x 512 a pass, 1.5 ms of system time per image; 7 images, 7 ms).
WORKER_PASS_PIXELS = 1 << 16


def images_per_task(model: XViewModel, rows: int, columns: int, workers: int) -> int:
    """Whole images of ``rows`` x ``columns`` in one pass of one of ``workers`` threads."""
    most = max(1, images_per_pass(model.factor, rows, columns) // workers)
    if workers == 1:
        return most
    pixels = WORKER_PASS_PIXELS * 16 // max(16, model.config.pint_channels)
    return max(1, min(most, pixels // (rows * columns)))


def _pint_pass(model: XViewModel, images: torch.Tensor, device: torch.device,
               amp: bool) -> torch.Tensor:
    """PInt on whole images ``(N, L, C)`` (any strides): ``(N, r (L - 1) + 1, C)`` on the CPU.

    The images are copied into a fresh channels-last batch, the layout PInt's head asks for.
    Whatever their source's strides, every pass is then computed alike: a batch that happens
    to be contiguous already (one image mapped from HU on its own) would otherwise be left as
    it is, and oneDNN's other algorithm for it differs in the last bits.
    """
    with torch.inference_mode(), autocast_for(device, amp):  # modes of the calling thread
        batch = torch.empty((images.shape[0], 1, *images.shape[1:]), dtype=images.dtype,
                            device=device, memory_format=torch.channels_last)
        return model.pint(batch.copy_(images[:, None]))[:, 0].float().cpu()


#: What receives a view's passes instead of an output array: ``(start, stop, block)``, the
#: block being lines ``[start, stop)`` of the view (y for coronal, x for sagittal) as a
#: ``(z, y, x)`` array, called in the order of the lines, in the calling thread.
Sink = Callable[[int, int, np.ndarray], None]


def _synthesize_pint_view(model: XViewModel, unit: np.ndarray, view: str, device: torch.device,
                          amp: bool, report: Callable[[float], None],
                          workers: int = 1, *, window: Sequence[float] | None = None,
                          out: np.ndarray | None = None,
                          sink: Sink | None = None) -> np.ndarray | None:
    """O_c or O_s: PInt over coronal images (one per y) or sagittal images (one per x).

    Each pass reads its images straight from ``unit`` (in HU, mapped a pass at a time, when
    ``window`` is given) and writes its result straight into the output (one copy each way):
    a new array, ``out``, or, with ``sink``, nothing (None is returned). With ``workers`` > 1
    (a CPU) the passes go to that many threads of one torch thread each
    (:mod:`napari_xview.engine.workers`) and are at most ``1 / workers`` as large
    (:func:`images_per_task`), so the memory in flight is at most that of one pass alone.
    """
    n_slices, height, width = unit.shape
    scale = _network_scale(window)
    coronal = view == "coronal"
    output = None
    if sink is None:
        output = np.empty((output_length(n_slices, model.factor), height, width), np.float32) \
            if out is None else out
    lines, columns = (height, width) if coronal else (width, height)
    per_pass = images_per_task(model, n_slices, columns, workers)
    # (z, lines, columns) views of the input and the output, whichever the view
    source = unit if coronal else unit.transpose(0, 2, 1)
    target = None if output is None else output if coronal else output.transpose(0, 2, 1)

    def upsample_lines(start: int, stop: int) -> tuple[int, int, np.ndarray | None]:
        images = torch.from_numpy(scale(source[:, start:stop])).permute(1, 0, 2)
        upsampled = _pint_pass(model, images, device, amp).permute(1, 0, 2).numpy()
        if target is None:
            return start, stop, upsampled if coronal else upsampled.transpose(0, 2, 1)
        target[:, start:stop] = upsampled
        return start, stop, None

    # The output above is allocated outside heap_reuse: only the passes' temporaries reuse.
    # Passes queued ahead of the threads hold no memory until they start.
    with heap_reuse(), cpu_workers(workers) as pool:
        for start, stop, block in in_order(pool, upsample_lines, _chunks(lines, per_pass),
                                           in_flight=2 * workers):
            if sink is not None:
                sink(start, stop, block)
            report(stop / lines)
    return output


#: What the progress messages call each view, and the last stage: equation (7), the
#: disagreement map and the mapping back to the input's values.
VIEW_LABELS = {"axial": "axial (SInt-A)", "coronal": "coronal (PInt-C)",
               "sagittal": "sagittal (PInt-S)", "fusion": "fusion (equation 7)"}
#: Share of the progress bar for the networks' views; the fusion takes the rest (it measured
#: 2 to 5 % of a synthesis on CPU, docs/speed.md).
VIEWS_SHARE = 0.97


def _synthesize_view(model: XViewModel, unit: np.ndarray, view: str, device: torch.device,
                     amp: bool, report: Callable[[float], None], workers: int,
                     **where) -> np.ndarray | None:
    """O_a, O_c or O_s of ``unit``; ``where``: ``window``, ``out`` or (PInt) ``sink``."""
    if view == "axial":
        return _synthesize_axial(model, unit, device, amp, report, **where)
    return _synthesize_pint_view(model, unit, view, device, amp, report, workers, **where)


def _synthesize_views(model: XViewModel, unit: np.ndarray, device: torch.device, amp: bool,
                      passes: int, progress: Progress | None,
                      check_cancel: Callable[[], None] = lambda: None, workers: int = 1, *,
                      window: Sequence[float] | None = None,
                      assembler: ResultAssembler | None = None,
                      ) -> tuple[np.ndarray | None, np.ndarray, np.ndarray] | None:
    """O_a (None without SInt-A), O_c and O_s, each averaged over ``passes`` flips of the volume.

    A flip along z reverses the order of the slices, along y or x mirrors the anatomy; the
    networks are not equivariant to either, so their outputs on flipped inputs, flipped back,
    differ slightly and their mean has less error (the self-ensemble of super-resolution).
    ``check_cancel`` runs before each view and after each chunk of one, where stopping costs
    nothing but the chunk. ``unit`` is on the networks' scale, or in HU with ``window``.

    With an ``assembler`` nothing is returned: the views' sums are held in its volumes and the
    last pass of O_s goes to it a block of columns at a time, flipped back
    (:mod:`napari_xview.engine.assembly`).
    """
    views = ["axial", "coronal", "sagittal"] if model.has_axial else ["coronal", "sagittal"]
    parts = len(views) * passes
    shape = (output_length(unit.shape[0], model.factor), *unit.shape[1:])
    width = unit.shape[2]
    sums: dict[str, np.ndarray] = {}
    for pass_index, axes in enumerate(ENSEMBLE_FLIPS[:passes]):
        flipped = np.ascontiguousarray(np.flip(unit, axes)) if axes else unit
        for view_index, view in enumerate(views):
            done = pass_index * len(views) + view_index
            label = VIEW_LABELS[view] + (f", pass {pass_index + 1}/{passes}" if passes > 1 else "")

            def report(fraction: float, done: int = done, label: str = label) -> None:
                if progress:
                    progress(VIEWS_SHARE * min(1.0, (done + fraction) / parts), label)
                check_cancel()

            def columns(start: int, stop: int, block: np.ndarray, axes=axes) -> None:
                if 2 in axes:  # columns of the flipped volume, counted from the other side
                    start, stop = width - stop, width - start
                assembler.add_columns(start, stop, np.flip(block, axes) if axes else block)

            check_cancel()
            where: dict = {"window": window}
            if assembler is not None and done == parts - 1:
                where["sink"] = columns  # the last pass of O_s: never held whole
            elif assembler is not None and view not in sums:
                where["out"] = assembler.hold(view, shape)  # the first pass is never flipped
            output = _synthesize_view(model, flipped, view, device, amp, report, workers,
                                      **where)
            if output is None:
                continue
            if "out" in where:  # the held volume: later passes add to it
                sums[view] = where["out"]
                continue
            output = np.flip(output, axes) if axes else output
            if view in sums:
                sums[view] += output
            else:
                sums[view] = np.ascontiguousarray(output)
    if assembler is not None:
        return None
    for total in sums.values():
        total /= np.float32(passes)
    return sums.get("axial"), sums["coronal"], sums["sagittal"]


def keeps_input_slices(model: XViewModel, keep_input_slices: bool | str = "auto") -> bool:
    """The acquired-slices rule, shared by the CLI, the API and the widget.

    "auto" keeps the acquired slices where they are samples of the thin grid (a model that
    learnt point slices: "direct" degradation, or slices no thicker than the target spacing)
    and re-estimates them where the model learnt that each acquired slice is an average over
    a profile wider than the target spacing (a thick slice is not a thin one), as it also does
    for a model that does not record its geometry (equation (7) as written). True or False
    force either.
    """
    if keep_input_slices == "auto":
        return model.geometry is not None and not model.geometry.blurs(model.factor)
    if not isinstance(keep_input_slices, bool):
        raise ValueError(f"keep_input_slices must be True, False or 'auto', got "
                         f"{keep_input_slices!r}")
    return keep_input_slices


def geometry_mismatch(volume: Volume, model: XViewModel, rtol: float = 0.05) -> str | None:
    """Why ``model`` may not fit ``volume``'s slices (spacing, or the thickness of a profile it
    learnt), as a message; None when they agree within ``rtol`` or the model records nothing."""
    learnt = model.geometry
    if learnt is None:
        return None
    spacing_differs = not np.isclose(volume.spacing[0], learnt.spacing, rtol=rtol)
    thickness_differs = (learnt.shape != "point"
                         and not np.isclose(volume.thickness, learnt.thickness, rtol=rtol))
    if not (spacing_differs or thickness_differs):
        return None
    return (f"this model learnt {learnt.describe()}, but this scan has "
            f"{volume.thickness:.2f} mm slices every {volume.spacing[0]:.2f} mm: the result may "
            f"be off; train (or fine-tune) a model on this scan")


def synthesize(volume: Volume, model: XViewModel | str | os.PathLike, *, device: str = "auto",
               views: bool = True, keep_input_slices: bool | str = "auto",
               precision: str = "float32", progress: Progress | None = None,
               num_threads: int | None = None,
               ensemble: int = 1, target_spacing: float | None = None,
               output_dtype: str = "auto", cancel: Cancel | None = None,
               match_texture: float = 0.0) -> SynthesisResult:
    """Synthesise r - 1 slices between every two slices of ``volume``.

    Parameters
    ----------
    volume : Volume
        The thick-slice scan, in HU, its slices along axis 0 (the coarsest axis). It is not
        modified.
    model : XViewModel or path-like
        Trained networks, or the path of a saved model.
    device : str
        "auto", "cpu", "cuda", "cuda:N" or "mps".
    views : bool
        Keep O_a, O_c, O_s and the disagreement map in the result (more memory).
    keep_input_slices : bool or "auto"
        Put the input slices back at z = r * i of the fused volume. Equation (7) averages
        O_c and O_s there; keeping them (beyond the paper) makes the output agree exactly with
        the measured slices. "auto" (the default) keeps them only where the model learnt that
        they are thin (:func:`keeps_input_slices`).
        Re-estimated positions take the input where it lies outside the network window (below).
    precision : {"float32", "bf16"}
        Arithmetic of the networks: "float32" (the default) computes as the weights were
        trained to be used; "bf16" asks for bfloat16 autocast on CUDA GPUs that support it
        (faster, but 8 bits of mantissa: steps of about 8 HU in soft tissue, and the paper
        preset has no linear residual to keep the rest exact). Elsewhere both are float32.
    progress : callable, optional
        Called with (fraction in [0, 1], message) as the work advances.
    num_threads : int, optional
        CPU threads for torch; by default the process's current setting is left alone (a
        caller that trains with one thread keeps one). On a CPU, PInt's images are shared
        among that many threads that run one torch thread each (faster on a busy machine,
        :mod:`napari_xview.engine.workers`); the setting is the same again afterwards.
    ensemble : int
        Passes of the self-ensemble (beyond the paper): 1 (the paper), 2 (also the volume
        flipped along every axis) or 4 (z and the in-plane axes flipped separately too). Each
        view is the mean of its passes, before equation (7); time grows in proportion. The
        disagreement map is then the spread of the averaged views, smaller than one pass's.
    target_spacing : float, optional
        Slice spacing of the output in mm, at least ``dz / r``: the grid of the factor is
        interpolated linearly onto it (:mod:`napari_xview.grid`). None: ``dz / r``.
    output_dtype : {"auto", "int16", "float32"}
        Data type of the fused volume and the views: "auto" gives int16 (rounded) for an
        integer input and float32 for a floating one; "int16" raises ValueError when the
        values cannot fit ("auto" then falls back to float32 with a warning).
    cancel : threading.Event or callable, optional
        Checked before each view and after each chunk of images or slice pairs (and before
        the fusion): once the event is set, or the callable returns True, the synthesis stops
        by raising SynthesisCancelled. Another thread (a GUI, a signal handler) sets it.
    match_texture : float
        Beyond the paper, against banding: strength in [0, 1] with which the synthesised
        slices of the fused volume are given the fine texture of the acquired slices around
        them (:func:`napari_xview.texture.restore_texture`); 0, the default, leaves the fused
        volume as equation (7) makes it. Trades PSNR for texture beyond about 0.5
        (docs/benchmarks.md, "Banding remedy"). The views are not changed.

    Returns
    -------
    SynthesisResult
        Volumes with spacing ``(dz / r, dy, dx)`` (or the target spacing) and an affine that
        overlays the input; their ``source`` is the input's, so they are never saved over it.

    Warns
    -----
    UserWarning
        When the model learnt slices of another spacing or thickness than ``volume``'s.

    Raises
    ------
    VolumeError
        When axis 0 is not the coarsest axis (see :func:`napari_xview.reorient_slice_axis`).
    FloatingPointError
        When the networks produce NaN or infinite values (corrupt weights): nothing is
        returned, so nothing of it can be written.
    SynthesisCancelled
        When ``cancel`` was set.

    Notes
    -----
    The networks work on the window ``model.config.window`` (default [-1024, 3072] HU) and
    their results are clipped to it. The window stays internal: output slice
    ``z = r * i + k`` takes the linear interpolation along z of the *unclipped* input,
    ``V[i] + (k / r) (V[i + 1] - V[i])``, wherever ``V[i]`` (or, for ``k > 0``, ``V[i + 1]``)
    lies outside the window; at ``k = 0`` that is ``V[i]`` exactly. Metal (3500 HU) and
    padding outside the field of view (-3024 HU) therefore survive, and voxels next to metal
    between two slices are the linear interpolation of their neighbours (docs/io.md).
    """
    if isinstance(model, (str, os.PathLike, Path)):
        model = load_model(model)
    if volume.shape[0] < 2:
        raise ValueError("synthesis needs at least two slices")
    check_slice_axis(volume)
    whole_number = isinstance(ensemble, (int, np.integer)) and not isinstance(ensemble, bool)
    if not whole_number or ensemble not in ENSEMBLE_PASSES:
        raise ValueError(f"ensemble must be 1, 2 or 4 passes, got {ensemble!r}")
    if precision not in SYNTHESIS_PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(SYNTHESIS_PRECISIONS)}, got "
                         f"{precision!r}")
    if not 0.0 <= match_texture <= 1.0:
        raise ValueError(f"match_texture must lie in [0, 1], got {match_texture!r}")
    amp = precision == "bf16"
    dz_fine = volume.spacing[0] / model.factor
    if target_spacing is not None and not target_spacing >= dz_fine * (1 - 1e-6):
        raise ValueError(
            f"target spacing {target_spacing:g} mm is finer than this model's grid "
            f"{volume.spacing[0]:g} / {model.factor} = {dz_fine:.4g} mm: train a model for a "
            f"larger factor, or choose a spacing of at least {dz_fine:.4g} mm")
    mismatch = geometry_mismatch(volume, model)
    if mismatch:
        warnings.warn(mismatch, stacklevel=2)
    keep = keeps_input_slices(model, keep_input_slices)
    check_cancel = cancel_checker(cancel)
    started = time.perf_counter()
    if num_threads is not None:
        configure_cpu_threads(num_threads)
    torch_device = resolve_device(device)
    model.to(torch_device).eval()
    window, factor = model.config.window, model.factor
    dtype = output_dtype_for(output_dtype, volume.array, window)

    # on a CPU the coronal and sagittal images are shared among threads of one torch thread
    workers = torch.get_num_threads() if torch_device.type == "cpu" else 1
    assembler = ResultAssembler(volume.array, window, factor, dtype, passes=ensemble,
                                views=views, keep_input_slices=keep, slab_voxels=CHUNK_VOXELS)
    with torch.inference_mode():  # the fusion happens during the last view's passes
        _synthesize_views(model, volume.array, torch_device, amp, ensemble, progress,
                          check_cancel, workers, window=window, assembler=assembler)
    if progress:
        progress(VIEWS_SHARE, VIEW_LABELS["fusion"])
    check_cancel()
    arrays = assembler.finish()
    del assembler
    if match_texture:
        match_result_texture(arrays["fused"], volume.array, window, factor, match_texture,
                             keep_input_slices=keep)
    spacing, affine = volume.resampled_z_grid(factor)
    result = SynthesisResult(
        **{name: None if array is None else Volume(array, spacing, affine, volume.source)
           for name, array in arrays.items()},
        seconds=0.0,
        factor=factor,
    )
    if target_spacing is not None and not is_factor_grid(volume.spacing[0], factor,
                                                         target_spacing):
        for name, fine in result.layers():
            setattr(result, name, resample_z(fine, target_spacing))
    result.seconds = time.perf_counter() - started
    if progress:
        progress(1.0, VIEW_LABELS["fusion"])
    return result
