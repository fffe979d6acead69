"""The memory bank of SInt-A: read, update and regularisation (equations (1)-(6), (13)-(14)).

The bank follows Park et al., "Learning memory-guided normality for anomaly detection"
(CVPR 2020, [21] in the paper): m unit-norm items of dimension d. Every feature point
(a query) reads a softmax-weighted sum of the items (equations (1)-(2)); during training
each item is moved towards the queries for which it is the nearest item and renormalised
(equations (3)-(6)). The update is not a gradient step: the items are a buffer of the
module, saved and loaded with the weights in its ``state_dict``.

Choices where the paper is silent, following [21]:

* Queries are L2-normalised before reading, updating and computing the losses. The items
  are unit vectors and equation (14) uses the margin alpha = 1, a scale that only makes
  sense for queries on the unit sphere too; unnormalised inner products would also make
  the softmax of equation (2) arbitrarily sharp.
* The losses are *means* over query points where equations (13)-(14) write sums: a mean
  keeps the paper's weight of 0.1 independent of the patch size and the batch size.
* The distances of equations (13)-(14) are Euclidean norms (not squared), as written.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from napari_xview.models.blocks import autocast_disabled


class MemoryLosses(NamedTuple):
    """Compactness (equation (13)) and separateness (equation (14)) losses, scalar tensors.

    Both are means over query points (the paper writes sums; see the module docstring).
    """

    compactness: Tensor
    separateness: Tensor

    @classmethod
    def zeros(cls, like: Tensor) -> MemoryLosses:
        """Zero losses (no gradient) on the device of ``like``, for eval mode or no memory."""
        zero = torch.zeros((), device=like.device, dtype=torch.float32)
        return cls(zero, zero.clone())


def memory_scores(queries: Tensor, items: Tensor) -> Tensor:
    """Inner products ``E[x, y] o M[z]`` of equations (2)-(3): (N, d), (m, d) -> (N, m)."""
    return queries @ items.T


def memory_read(scores: Tensor, items: Tensor) -> Tensor:
    """Equations (1)-(2): each query becomes the softmax(scores)-weighted sum of the items."""
    return torch.softmax(scores, dim=1) @ items


def memory_update(items: Tensor, queries: Tensor, scores: Tensor) -> Tensor:
    """Equations (3)-(6): move every item towards the queries it is nearest to.

    Parameters
    ----------
    items : Tensor
        (m, d) unit-norm memory items M.
    queries : Tensor
        (N, d) unit-norm query features.
    scores : Tensor
        (N, m) inner products of queries and items.

    Returns
    -------
    Tensor
        (m, d) updated, unit-norm items. An item that is nobody's nearest is unchanged.

    Notes
    -----
    U_k holds the queries whose nearest item is M[k]. Equation (3) is a softmax over U_k and
    equation (4) divides it by its maximum over U_k, so the softmax denominator cancels and
    the weight is ``exp(s - max_{U_k} s)``: computed that way it cannot overflow.
    """
    count = items.shape[0]
    member = F.one_hot(scores.argmax(dim=1), count).bool()
    masked = scores.masked_fill(~member, float("-inf"))
    best = masked.amax(dim=0, keepdim=True)
    best = torch.where(torch.isfinite(best), best, torch.zeros_like(best))
    weights = torch.exp(masked - best)  # exactly 0 outside U_k
    return F.normalize(items + weights.T @ queries, dim=1)


def memory_losses(queries: Tensor, items: Tensor, scores: Tensor, margin: float) -> MemoryLosses:
    """Equations (13)-(14) as means over the N queries.

    The nearest item (largest score, i.e. largest p of equation (2)) is the positive; the
    second nearest is the negative of the triplet loss with margin alpha. With a single
    item there is no negative and the separateness loss is zero.
    """
    ranked = scores.topk(min(2, items.shape[0]), dim=1).indices
    positive_distance = torch.linalg.vector_norm(queries - items[ranked[:, 0]], dim=1)
    compactness = positive_distance.mean()
    if ranked.shape[1] < 2:
        return MemoryLosses(compactness, torch.zeros_like(compactness))
    negative_distance = torch.linalg.vector_norm(queries - items[ranked[:, 1]], dim=1)
    separateness = F.relu(positive_distance - negative_distance + margin).mean()
    return MemoryLosses(compactness, separateness)


class MemoryBank(nn.Module):
    """Memory bank M of m unit-norm items of dimension d, read and updated as in [21].

    Parameters
    ----------
    items : int
        Number m of memory items (10 in section 4.1).
    dim : int
        Item dimension d, the channel count of the feature map it reads.
    margin : float
        alpha of the separateness loss, equation (14) (1 in the paper).

    Attributes
    ----------
    items : Tensor
        (m, d) buffer of unit-norm items, part of the ``state_dict``; initialised as
        normalised Gaussian vectors (uniform on the sphere), so it follows torch.manual_seed.
    """

    items: Tensor

    def __init__(self, items: int, dim: int, margin: float = 1.0) -> None:
        super().__init__()
        if items < 1 or dim < 1:
            raise ValueError(f"a memory bank needs at least one item and one dimension, "
                             f"got items={items}, dim={dim}")
        self.margin = float(margin)
        self.register_buffer("items", F.normalize(torch.randn(items, dim), dim=1))

    def forward(self, features: Tensor, update: bool = False) -> tuple[Tensor, MemoryLosses]:
        """Read the memory at every point of ``features``; optionally update it.

        Parameters
        ----------
        features : Tensor
            (B, d, h, w) feature map E_3.
        update : bool
            Apply equations (3)-(6) after the read, under ``torch.no_grad``.

        Returns
        -------
        read : Tensor
            (B, d, h, w) map D_3 of equation (1), in the dtype of ``features``.
        losses : MemoryLosses
            Equations (13)-(14) in training mode, zeros in eval mode.
        """
        batch, dim, height, width = features.shape
        if dim != self.items.shape[1]:
            raise ValueError(f"memory items have dimension {self.items.shape[1]} but the "
                             f"features have {dim} channels")
        # Attention over items and the update are done in float32 even under autocast.
        with autocast_disabled(features.device):
            queries = features.float().permute(0, 2, 3, 1).reshape(-1, dim)
            queries = F.normalize(queries, dim=1)
            # A copy, so the in-place update below cannot touch tensors saved for backward.
            items = self.items.detach().float().clone()
            scores = memory_scores(queries, items)
            read = memory_read(scores, items)
            if self.training:
                losses = memory_losses(queries, items, scores, self.margin)
            else:
                losses = MemoryLosses.zeros(features)
            if update:
                with torch.no_grad():
                    new_items = memory_update(items, queries.detach(), scores.detach())
                    self.items.copy_(new_items.to(self.items.dtype))
        read = read.reshape(batch, height, width, dim).permute(0, 3, 1, 2)
        return read.to(features.dtype), losses

    def extra_repr(self) -> str:
        return f"items={self.items.shape[0]}, dim={self.items.shape[1]}, margin={self.margin}"
