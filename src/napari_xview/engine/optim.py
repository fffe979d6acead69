"""Adam's parameter groups: one for both networks, or SInt-A's and PInt's apart.

With ``optimisation.sint_lr`` set, SInt-A learns at a rate of its own. Adam moves every weight
by about its learning rate whatever the size of the gradient, so the rate that suits PInt (16
channels, 3 x 3 x 16 inputs a convolution) moves SInt-A (3 x 3 x 64 to 3 x 3 x 384) several
times further each step. With the "distill" preset, whose SInt-A starts fresh in stage 2 at
PInt's 1e-3, five stage-2 steps took SInt-A from 31.6 dB (about linear interpolation) to
7.2 dB on a 5 mm scan at r = 2 (docs/benchmarks.md, "Why SInt-A stays below linear
interpolation").

The groups keep the order of ``XViewModel.parameters()`` (SInt-A's, then PInt's), so that a
saved optimiser state maps by position onto either layout (:func:`fit_groups`) and a run can
resume with or without ``sint_lr``.
"""

from __future__ import annotations

import itertools
from typing import Any

from napari_xview.config import Config


def parameter_groups(model, config: Config) -> list[dict[str, Any]]:
    """One group of all parameters, or with ``optimisation.sint_lr`` SInt-A's and then PInt's."""
    if config.optimisation.sint_lr is None or not model.has_axial:
        return [{"params": model.parameters()}]
    return [{"params": list(model.sint.parameters())},
            {"params": list(model.pint.parameters())}]


def group_rates(config: Config, groups: int, fraction: float) -> list[float]:
    """The learning rate of each of ``groups`` groups once ``fraction`` of the budget is used.

    The schedule (section 4.1): Adam at ``lr``, decayed once by ``lr_decay`` after
    ``lr_decay_at`` of the budget; SInt-A's group, if it has one, at ``sint_lr`` decayed alike.
    """
    adam = config.optimisation
    lr = adam.lr * (adam.lr_decay if fraction >= adam.lr_decay_at else 1.0)
    if groups == 1:
        return [lr]
    return [lr * config.optimisation.sint_lr / config.optimisation.lr, lr]


def fit_groups(saved: dict[str, Any], sizes: list[int]) -> dict[str, Any]:
    """An optimiser state saved with one group, or one group per network, laid out as
    ``sizes`` (parameters per group) asks.

    Adam's moments are per parameter, so only the grouping changes; the learning rates are
    set again before every step. A state whose parameters do not add up to ``sizes`` is
    returned unchanged, for ``load_state_dict`` to refuse.
    """
    groups = saved.get("param_groups", [])
    indices = [index for group in groups for index in group["params"]]
    if len(groups) == len(sizes) or not groups or len(indices) != sum(sizes):
        return saved
    bounds = list(itertools.accumulate(sizes, initial=0))
    return {"state": saved["state"],
            "param_groups": [dict(groups[0], params=indices[start:end])
                             for start, end in itertools.pairwise(bounds)]}
