"""Choices of synthesis and evaluation (not part of a trained model's configuration)."""

from __future__ import annotations

#: How an evaluation makes thick slices from a thin-slice scan: the two strategies of section
#: 4.1, or each thick slice the average over a box / a Gaussian as thick as the new spacing.
SIMULATIONS = ("direct", "blur-noise", "box", "gaussian")

#: Passes of the synthesis self-ensemble that can be asked for (1 is the paper's single pass;
#: ``engine.synthesis.ENSEMBLE_FLIPS`` lists the flips of each pass).
ENSEMBLE_PASSES = (1, 2, 4)

#: Arithmetic of the networks in synthesis: float32 (the default) or, asked for, bfloat16
#: autocast on CUDA (8 bits of mantissa: steps of about 8 HU in soft tissue).
SYNTHESIS_PRECISIONS = ("float32", "bf16")
