"""Inference-time fusion of the three views, equation (7) (and, beyond the paper, weighted by
where the views agree), and where the views disagree.

Both functions take numpy arrays or torch tensors (all three of the same kind) and return the
same kind; torch is never imported here, so numpy callers do not pay for it. The slice axis is
the third from the end, so (z, y, x) volumes and (B, z, y, x) batches both work.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

_Z_AXIS = -3


def _is_tensor(value: Any) -> bool:
    # If torch was never imported, nothing can be a tensor: no need to import it to check.
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(value, torch.Tensor)


def _check_views(axial: Any, coronal: Any, sagittal: Any) -> bool:
    """Check that the views match in kind and shape; return whether they are tensors.

    ``axial`` may be None (a model without SInt-A, ``networks="pint"``).
    """
    present = [view for view in (axial, coronal, sagittal) if view is not None]
    kinds = {_is_tensor(view) for view in present}
    if len(kinds) != 1:
        raise ValueError("pass the three views all as numpy arrays or all as torch tensors")
    shapes = {tuple(view.shape) for view in present}
    if len(shapes) != 1:
        raise ValueError(f"the views must have one shape, got {sorted(shapes)}")
    if coronal.ndim < 3:
        raise ValueError(f"expected (z, y, x) volumes, got shape {tuple(coronal.shape)}")
    return kinds.pop()


def input_positions(n_slices: int, factor: int) -> np.ndarray:
    """Boolean mask over z, True at the input slice positions ``z % factor == 0``.

    These are the paper's 1-based ``z % r = 1`` positions of equation (7).
    """
    if isinstance(factor, bool) or int(factor) != factor or factor < 1:
        raise ValueError(f"factor must be a positive integer, got {factor!r}")
    return np.arange(n_slices) % factor == 0


def fuse_views(
    axial: Any,
    coronal: Any,
    sagittal: Any,
    factor: int,
    *,
    keep_input_slices: bool = False,
    input_slices: Any = None,
) -> Any:
    """Fuse the axial, coronal and sagittal results into one volume, equation (7).

    ``O = (O_c + O_s) / 2`` at the input slice positions (0-based ``z % r == 0``) and
    ``O = (O_a + O_c + O_s) / 3`` elsewhere. At the input positions SInt-A only copies its
    input slice, so it carries no synthesised information there and the paper leaves it out.
    Without an axial view (a PInt-only model) ``O = (O_c + O_s) / 2`` everywhere.

    Parameters
    ----------
    axial, coronal, sagittal : numpy.ndarray or torch.Tensor
        O_a, O_c, O_s of identical shape (..., z, y, x) on the output grid; ``axial`` may be
        None.
    factor : int
        Upsampling factor r.
    keep_input_slices : bool
        Beyond the paper: put ``input_slices`` back at ``z = r * i`` after fusion, so the
        result reproduces the acquired slices exactly. False (the default) is equation (7)
        as written.
    input_slices : numpy.ndarray or torch.Tensor, optional
        The acquired slices, shape (..., l, y, x) with ``r * (l - 1) + 1`` equal to the output's
        number of slices; required when ``keep_input_slices`` is True.

    Returns
    -------
    numpy.ndarray or torch.Tensor
        The fused volume, of the views' kind, shape and dtype (differentiable for tensors).
    """
    tensors = _check_views(axial, coronal, sagittal)
    if axial is None:
        fused = (coronal + sagittal) / 2
        if keep_input_slices:
            fused = _put_input_slices(fused, input_slices, factor, tensors)
        return fused
    n_slices = axial.shape[_Z_AXIS]
    at_input = input_positions(n_slices, factor)[:, None, None]
    if tensors:
        torch = sys.modules["torch"]
        at_input = torch.as_tensor(at_input, device=axial.device)
        fused = torch.where(at_input, (coronal + sagittal) / 2, (axial + coronal + sagittal) / 3)
    else:
        fused = np.where(at_input, (coronal + sagittal) / 2, (axial + coronal + sagittal) / 3)
    if keep_input_slices:
        fused = _put_input_slices(fused, input_slices, factor, tensors)
    return fused


def fuse_by_agreement(axial: Any, coronal: Any, sagittal: Any, factor: int,
                      scale: float) -> Any:
    """Beyond the paper: the three views weighted by how well each agrees with the others.

    At a synthesised position each view v gets the weight ``1 / (d_v^2 + scale^2)``, where
    ``d_v`` is its difference from the mean of the two other views, and the weights are
    normalised: where the three agree (all ``d_v`` below ``scale``) this is equation (7)'s
    mean; where one view departs from two that agree, it counts less, in proportion to the
    square of its departure (the same squared differences that equations (11)-(12) rank
    for T(gamma)). At the input positions equation (7)'s ``(O_c + O_s) / 2``.

    Parameters
    ----------
    axial, coronal, sagittal : numpy.ndarray or torch.Tensor
        O_a, O_c, O_s of identical shape (..., z, y, x); all three are needed.
    factor : int
        Upsampling factor r.
    scale : float
        Differences below it count as agreement, in the views' units (e.g. 20 HU, or
        20 / 4096 on the networks' [0, 1] scale).

    Returns
    -------
    numpy.ndarray or torch.Tensor
        The fused volume, of the views' kind and shape.
    """
    if axial is None:
        raise ValueError("fusion by agreement needs the axial view: use fuse_views without it")
    if not scale > 0:
        raise ValueError(f"scale must be positive, got {scale}")
    tensors = _check_views(axial, coronal, sagittal)
    views = (axial, coronal, sagittal)
    total = axial + coronal + sagittal
    weights = [1.0 / ((view - (total - view) / 2) ** 2 + scale ** 2) for view in views]
    weighted = sum(w * v for w, v in zip(weights, views, strict=True)) / sum(weights)
    at_input = input_positions(axial.shape[_Z_AXIS], factor)[:, None, None]
    if tensors:
        torch = sys.modules["torch"]
        at_input = torch.as_tensor(at_input, device=axial.device)
        return torch.where(at_input, (coronal + sagittal) / 2, weighted)
    return np.where(at_input, (coronal + sagittal) / 2, weighted).astype(coronal.dtype)


def _put_input_slices(fused: Any, input_slices: Any, factor: int, tensors: bool) -> Any:
    if input_slices is None:
        raise ValueError("keep_input_slices=True needs the acquired slices as input_slices")
    if _is_tensor(input_slices) != tensors:
        raise ValueError("input_slices must be of the same kind (numpy or torch) as the views")
    expected = list(fused.shape)
    expected[_Z_AXIS] = (fused.shape[_Z_AXIS] - 1) // factor + 1
    if list(input_slices.shape) != expected or (fused.shape[_Z_AXIS] - 1) % factor:
        raise ValueError(
            f"input_slices of shape {tuple(input_slices.shape)} do not fit a fused volume of "
            f"shape {tuple(fused.shape)} at factor {factor}: expected {tuple(expected)} on an "
            "output grid of r * (l - 1) + 1 slices"
        )
    if tensors:
        fused = fused.clone()
        fused[..., ::factor, :, :] = input_slices.to(fused.dtype)
    else:
        fused[..., ::factor, :, :] = input_slices
    return fused


def disagreement(axial: Any, coronal: Any, sagittal: Any) -> Any:
    """Per-voxel spread of the three views: their standard deviation (population, ddof = 0).

    The standard deviation is chosen over the range (max - min) because it weighs every pair
    of views: for three values its square is a ninth of the sum of the three squared pairwise
    differences, ``((a - c)**2 + (a - s)**2 + (c - s)**2) / 9``, i.e. it combines the two
    axial-versus-pixel-wise gaps that equations (11)-(12) penalise with the coronal-versus-
    sagittal gap, in the image's own units and on the same quadratic footing as the losses.
    It is zero where the views agree and large where synthesis is uncertain.

    Parameters
    ----------
    axial, coronal, sagittal : numpy.ndarray or torch.Tensor
        The three views' results, identical shape. ``axial`` may be None: the spread of the
        two pixel-wise views is then ``|O_c - O_s| / 2``.

    Returns
    -------
    numpy.ndarray or torch.Tensor
        Non-negative array of the views' shape.
    """
    tensors = _check_views(axial, coronal, sagittal)
    views = tuple(view for view in (axial, coronal, sagittal) if view is not None)
    if tensors:
        torch = sys.modules["torch"]
        return torch.stack(views).std(dim=0, correction=0)
    return np.std(np.stack(views), axis=0)
