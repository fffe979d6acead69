"""Between napari layers and engine volumes: an image layer in, result layers out.

A napari image layer places voxel ``(k, j, i)`` at ``translate + scale * (k, j, i)`` in world
coordinates. An input of l slices with scale ``(dz, dy, dx)`` gives r * (l - 1) + 1 output
slices where input slice k lands at r * k (DESIGN.md), so every result layer has scale
``(dz / r, dy, dx)`` and the *same* translate: output slice r * k sits at
``translate_z + (dz / r) * r * k``, exactly on input slice k. That is all it takes for the
results to overlay the input in the viewer.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import numpy as np
from napari.layers import Image
from napari.utils.colormaps import Colormap

from napari_xview._napari._io import contrast_limits, volume_from_layer_data

if TYPE_CHECKING:
    import napari

    from napari_xview.engine import SynthesisResult
    from napari_xview.io import Volume

#: The layers a synthesis can give, in the order they are added to the viewer.
RESULT_KINDS: tuple[str, ...] = ("fused", "axial", "coronal", "sagittal", "disagreement")

#: Metadata key marking a layer as a result of this plugin (value: the result kind), so a
#: re-run replaces our own layers and never a user's layer that happens to share a name.
RESULT_KEY = "napari_xview_result"

#: Metadata key of the source layer name a result was computed from.
SOURCE_KEY = "napari_xview_source"


def volume_from_layer(layer: Image, spacing: Sequence[float] | None = None) -> Volume:
    """The engine's :class:`~napari_xview.io.Volume` for a 3-D image layer.

    Parameters
    ----------
    layer : napari.layers.Image
        A single-channel 3-D image layer, axes (z, y, x) with z the slice axis.
    spacing : sequence of 3 floats, optional
        Voxel spacing (dz, dy, dx) in mm; the layer's ``scale`` when None.

    Returns
    -------
    Volume
        The layer's data (float32, or its integer type) with that spacing, voxel (0, 0, 0)
        at the layer's ``translate``, and the orientation of the file the layer was read
        from (as the writers of :mod:`napari_xview._napari._io` do).

    Raises
    ------
    ValueError
        If the layer is not a 3-D single-channel image, or the spacing is not positive.
    """
    if not isinstance(layer, Image):
        raise ValueError(f"layer {layer.name!r} is a {type(layer).__name__} layer; "
                         "slice synthesis needs an image layer")
    if layer.rgb:
        raise ValueError(f"layer {layer.name!r} is an RGB image; slice synthesis needs a "
                         "single-channel CT or MR volume")
    if layer.multiscale:
        raise ValueError(f"layer {layer.name!r} is multiscale; open the full-resolution "
                         "volume as a single-scale layer")
    if layer.ndim != 3:
        raise ValueError(f"layer {layer.name!r} is {layer.ndim}-D with shape "
                         f"{tuple(layer.data.shape)}; slice synthesis needs a 3-D volume with "
                         "axes (z, y, x), z the slice axis to densify")
    spacing = tuple(float(value) for value in (layer.scale if spacing is None else spacing))
    if len(spacing) != 3 or not all(value > 0 for value in spacing):
        raise ValueError(f"spacing must be three positive numbers (dz, dy, dx) in mm, "
                         f"got {spacing}")
    data, state, _ = layer.as_layer_data_tuple()
    # the writer's conversion: the layer's translate as origin, and the orientation of the
    # affine the reader stored in the metadata, if any
    # integer layers stay integer, so that their results are int16 (engine.synthesize)
    return volume_from_layer_data(np.asarray(data), {**state, "scale": spacing})


def result_layer_name(source_name: str, kind: str) -> str:
    """Name of the result layer of ``kind`` computed from the layer ``source_name``."""
    return f"{source_name} [{kind}]"


def disagreement_colormap() -> Colormap:
    """Transparent where the views agree, through red to opaque yellow where they do not.

    Drawn over the fused result (with the limits of :func:`disagreement_limits`), reliable
    voxels stay as they are and only the regions where the axial, coronal and sagittal
    syntheses differ most light up.
    """
    return Colormap(
        colors=[[1.0, 0.0, 0.0, 0.0], [1.0, 0.1, 0.0, 0.6], [1.0, 1.0, 0.0, 1.0]],
        controls=[0.0, 0.4, 1.0],
        name="xview disagreement",
    )


def disagreement_limits(spread: np.ndarray) -> tuple[float, float]:
    """Contrast limits that colour only the voxels where the views disagree most.

    From the 90th to the 99.9th percentile of the spread: with
    :func:`disagreement_colormap`, nine voxels in ten stay transparent and the colour goes to
    the least reliable tenth, wherever the spread as a whole lies (it shrinks as training goes
    on). The user can widen the limits in the layer controls.
    """
    if spread.size == 0:
        return (0.0, 1.0)
    low, high = (float(value) for value in np.percentile(spread, [90.0, 99.9]))
    return (low, high) if high > low else (low, low + 1e-6)


def result_layer_kwargs(result: SynthesisResult, kind: str, *, source: Image) -> dict:
    """Keyword arguments of :meth:`napari.Viewer.add_image` for one result volume.

    Scale comes from the result's spacing ``(dz / r, dy, dx)``; translate from the source
    layer, which is what makes output slice r * k overlay input slice k (module docstring).
    Only the fused result starts visible: the views and the disagreement map (added on top,
    it would cover the result) are a click away in the layer list. Contrast limits follow
    :func:`display_limits`.
    """
    volume: Volume = getattr(result, kind)
    kwargs = dict(
        name=result_layer_name(source.name, kind),
        scale=tuple(float(value) for value in volume.spacing),
        translate=tuple(float(value) for value in source.translate),
        # the input's file (the DICOM writer copies its patient and study; every writer
        # protects it) and the factor (the DICOM writer's description) travel along
        metadata={RESULT_KEY: kind, SOURCE_KEY: source.name,
                  "spacing": tuple(float(value) for value in volume.spacing),
                  "affine": np.asarray(volume.affine, dtype=float),
                  "source": source.metadata.get("source"),
                  "factor": result.factor or round(float(source.scale[-3])
                                                   / volume.spacing[0])},
    )
    if kind == "disagreement":
        kwargs.update(colormap=disagreement_colormap(), blending="translucent",
                      contrast_limits=disagreement_limits(volume.array), visible=False)
    else:
        kwargs.update(colormap="gray", contrast_limits=display_limits(source, volume.array),
                      visible=kind == "fused")
    return kwargs


def display_limits(source: Image, result: np.ndarray) -> tuple[float, float]:
    """Contrast limits of a result layer: the source's, unless it was never windowed.

    A source opened by this plugin's reader, or windowed by the user, lends its limits, so
    the result and its input look alike. One that napari opened with its automatic limits
    (the full range of the data: air to metal, a washed-out grey) gets the reader's CT
    window for data in Hounsfield units (:func:`~napari_xview._napari._io.contrast_limits`).
    """
    limits = tuple(float(value) for value in source.contrast_limits)
    data = np.asarray(source.data)
    sample = data[::max(1, data.shape[0] // 16)]  # a few slices: a range at least as wide
    low, high = float(np.nanmin(sample)), float(np.nanmax(sample))
    margin = 0.01 * (high - low)
    automatic = high > low and limits[0] <= low + margin and limits[1] >= high - margin
    return contrast_limits(result) if automatic else limits


def find_result_layer(viewer: napari.Viewer, source_name: str, kind: str) -> Image | None:
    """The result layer of ``kind`` for ``source_name`` already in the viewer, if any."""
    name = result_layer_name(source_name, kind)
    for layer in viewer.layers:
        if layer.name == name and layer.metadata.get(RESULT_KEY) == kind:
            return layer
    return None


def add_result_layers(viewer: napari.Viewer, result: SynthesisResult, kinds: Iterable[str],
                      source: Image) -> list[Image]:
    """Add (or replace) the chosen result volumes as image layers over ``source``.

    Parameters
    ----------
    viewer : napari.Viewer
        The viewer holding ``source``.
    result : SynthesisResult
        What :func:`napari_xview.engine.synthesize` returned for ``source``'s volume.
    kinds : iterable of str
        A subset of :data:`RESULT_KINDS`; kinds the result lacks (views when synthesised with
        ``views=False``) are skipped.
    source : napari.layers.Image
        The input layer; its name and translate place the results.

    Returns
    -------
    list of napari.layers.Image
        The result layers, in :data:`RESULT_KINDS` order.

    Notes
    -----
    The fused layer ends up selected (the active layer), so its controls are the ones shown.
    A layer from an earlier run on the same source is updated in place rather than added
    again, so re-running never piles up layers and keeps the user's display settings (except
    the disagreement map's contrast, which follows the new values).
    """
    chosen = set(kinds)
    unknown = chosen - set(RESULT_KINDS)
    if unknown:
        raise ValueError(f"unknown result kinds {sorted(unknown)}; choose from {RESULT_KINDS}")
    layers: list[Image] = []
    for kind in RESULT_KINDS:
        if kind not in chosen or getattr(result, kind, None) is None:
            continue
        volume = getattr(result, kind)
        kwargs = result_layer_kwargs(result, kind, source=source)
        layer = find_result_layer(viewer, source.name, kind)
        if layer is None:
            layer = viewer.add_image(volume.array, **kwargs)
        else:
            _update_layer(layer, volume.array, kwargs)
        layers.append(layer)
    fused = [layer for layer in layers if layer.metadata.get(RESULT_KEY) == "fused"]
    if fused:  # the result is what the user looks at next: its controls come up
        viewer.layers.selection.active = fused[0]
    return layers


def _update_layer(layer: Image, data: np.ndarray, kwargs: dict) -> None:
    """Give an existing result layer new data and geometry, keeping its display settings."""
    layer.data = data
    layer.scale = kwargs["scale"]
    layer.translate = kwargs["translate"]
    layer.metadata.update(kwargs["metadata"])
    if layer.metadata[RESULT_KEY] == "disagreement":
        layer.contrast_limits = kwargs["contrast_limits"]
