"""Where SInt-A's gradient comes from in stage 2 of recipe "inplane-distill".

Trains the "distill" preset's stage 1 for ``--stage1-steps`` steps on the degraded scan, then,
on ``--probes`` stage-2 batches, prints the gradient norm that each weighted term of the
objective (section 3.2.3) sends into each network: 0.15 (L_c^cmd + L_s^cmd), 0.1 (L^com +
L^sep), and PInt's in-plane loss. Adam normalises each weight's step, so what matters is which
term dominates the weights two terms share: SInt-A's encoder receives both the distillation
and the memory terms (docs/benchmarks.md, "Why SInt-A stays below linear interpolation")::

    python benchmarks/distill_gradients.py data/lung2_image.nrrd --factor 2
"""

from __future__ import annotations

import argparse
import json

import torch

from napari_xview.config import resolve
from napari_xview.evaluate import prepare_evaluation
from napari_xview.io import load_volume


def _norm(loss: torch.Tensor, parameters: list[torch.Tensor]) -> float:
    grads = torch.autograd.grad(loss, parameters, retain_graph=True, allow_unused=True)
    return float(sum((g.detach() ** 2).sum() for g in grads if g is not None) ** 0.5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ground_truth")
    parser.add_argument("--factor", type=int, default=2)
    parser.add_argument("--stage1-steps", type=int, default=300)
    parser.add_argument("--probes", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    config = resolve("distill", args.factor, {
        "steps": args.stage1_steps + args.probes, "stage1_fraction": 1.0,
        "degradation": "direct", "num_threads": 1, "checkpoint_every": 0,
        "holdout_fraction": 0.0})
    setup = prepare_evaluation(load_volume(args.ground_truth), config)
    trainer = setup.trainer
    for _ in range(args.stage1_steps):
        trainer._timed_step(1)
    sint, pint = list(trainer.model.sint.parameters()), list(trainer.model.pint.parameters())
    trainer.model.train()
    for _ in range(args.probes):
        terms = trainer._distillation_terms()
        inplane = trainer._inplane_term()
        cmd = config.objective.weight_cmd * (terms["cmd_c"] + terms["cmd_s"])
        memory = config.objective.weight_memory * (terms["com"] + terms["sep"])
        print(json.dumps({
            "sint_from_cmd": _norm(cmd, sint), "sint_from_memory": _norm(memory, sint),
            "pint_from_cmd": _norm(cmd, pint), "pint_from_inplane": _norm(inplane, pint),
            "cmd": float(cmd.detach()), "memory": float(memory.detach())}), flush=True)


if __name__ == "__main__":
    main()
