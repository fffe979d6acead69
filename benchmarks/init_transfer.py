"""A model trained on other scans, applied to the benchmark scan as it is and fine-tuned.

Issue 15's target: a model trained only on the other dev scans (never the benchmark scan),
fine-tuned for 2 minutes on 2 CPU cores, reaches at least the from-scratch 15-minute result;
applied with no fine-tuning at all it beats linear interpolation by >= 1.0 dB.

    napari-xview train lung1_image.nrrd lung2_image.nrrd chest_dicom/ --factor 4 \
        --train-degradation direct --steps 7349 --threads 1 -o collection_x4_direct.pt
    python benchmarks/init_transfer.py data/cxr.nii.gz --init collection_x4_direct.pt \
        --steps 980 --threads 1 --out benchmarks/results/init_transfer_r4_direct.json

``--steps`` stands for the fine-tuning budget in steps rather than minutes, so that a loaded
machine gives the same result as an idle one (the from-scratch 15-minute run took 7349 steps
on one idle thread: 2 minutes are about 980).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from napari_xview.engine import Finished, load_model
from napari_xview.evaluate import prepare_evaluation
from napari_xview.io import load_volume


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("truth")
    parser.add_argument("--init", required=True, help="the model trained on other scans")
    parser.add_argument("--steps", type=int, default=980, help="fine-tuning steps")
    parser.add_argument("--degradation", default="direct")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out")
    args = parser.parse_args()

    truth = load_volume(args.truth)
    model = load_model(args.init)
    config = model.training_config().replace(steps=args.steps, num_threads=args.threads,
                                             checkpoint_every=0, degradation=args.degradation)
    setup = prepare_evaluation(truth, config, degradation=args.degradation, init=model)
    model.eval()
    as_is = setup.score(Finished(0, False, 0.0, model))
    print(as_is.to_markdown(), flush=True)
    fine_tuned = setup.score(setup.train())
    print(fine_tuned.to_markdown(), flush=True)
    report = {"init": args.init, "steps": args.steps, "degradation": args.degradation,
              "threads": args.threads,
              "no fine-tuning": json.loads(as_is.to_json()),
              "fine-tuned": json.loads(fine_tuned.to_json())}
    for name, result in (("no fine-tuning", as_is), ("fine-tuned", fine_tuned)):
        fused = result.rows[result.fused_row]
        print(f"{name}: PSNR {fused['psnr']:.2f} (all slices {fused['psnr_all']:.2f}); "
              f"{result.gain_db():+.2f} dB over {result.best_baseline()}, "
              f"linear {result.rows['linear']['psnr']:.2f}")
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
