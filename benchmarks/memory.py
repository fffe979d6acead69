"""Peak memory of synthesising a long volume, in two measured parts (issue 16's bound).

A whole synthesis of 512 x 512 x 300 at r = 4 with the real network takes too long on a CPU
to be a quick check, so the peak is measured in two processes and added:

- ``arrays``: the whole synthesis with PInt replaced by linear interpolation along rows
  (same shapes, negligible work): input, held views, fusion, HU mapping, the result;
- ``network``: the default model's PInt on whole coronal images of 300 x 512 as synthesis
  runs them (on a CPU, one pass per thread at a time), above the process's baseline.

    python benchmarks/memory.py --slices 300
    python benchmarks/memory.py --slices 300 --views --full   # one real run, to check the sum
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import numpy as np
import torch
from torch import nn


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class LinearRows(nn.Module):
    """PInt's shapes without its work: linear interpolation along rows."""

    def __init__(self, factor: int):
        super().__init__()
        self.factor = factor

    def forward(self, image):
        from napari_xview.models.blocks import linear_rows

        return linear_rows(image, self.factor)


def _long_volume(args):
    """A long int16 (or float32) scan: a few phantom slices repeated along z. Making a
    300-slice phantom directly peaks higher (float64 temporaries) than the synthesis."""
    from napari_xview.sample import make_phantom

    phantom = make_phantom(shape=(12, args.size, args.size), spacing=(5.0, 0.7, 0.7))
    repeats = -(-args.slices // 12)
    array = np.tile(phantom.array, (repeats, 1, 1))[:args.slices].astype(args.dtype)
    return phantom.with_array(array)


def _synthesis_peak(args, model) -> dict:
    """Peak RSS of synthesising the long volume with ``model`` (and its seconds)."""
    from napari_xview.engine import synthesize

    volume = _long_volume(args)
    before = peak_rss_mib()
    started = time.perf_counter()
    result = synthesize(volume, model, device="cpu", views=args.views)
    return {"peak_rss_mib": peak_rss_mib(), "peak_before_synthesis_mib": before,
            "seconds": time.perf_counter() - started,
            "output_shape": list(result.fused.shape),
            "output_dtype": str(result.fused.array.dtype)}


def part_arrays(args) -> dict:
    from napari_xview.config import resolve
    from napari_xview.engine import XViewModel

    model = XViewModel.create(resolve(args.preset, args.factor).model)
    model.pint = LinearRows(args.factor)
    return _synthesis_peak(args, model)


def part_full(args) -> dict:
    """The whole synthesis with the real model of ``--preset``, in one process."""
    from napari_xview.config import resolve
    from napari_xview.engine import XViewModel

    return _synthesis_peak(args, XViewModel.create(resolve(args.preset, args.factor).model))


def part_network(args) -> dict:
    from napari_xview.config import resolve
    from napari_xview.engine import XViewModel
    from napari_xview.engine.synthesis import _synthesize_pint_view, images_per_task

    model = XViewModel.create(resolve(args.preset, args.factor).model).eval()
    workers = torch.get_num_threads()  # as synthesis shares the images on a CPU
    images = images_per_task(model, args.slices, args.size, workers)
    # coronal images of a scan in HU as synthesis runs them: two passes per thread, one after
    # the other, each mapped to the networks' scale as it starts
    low, high = model.config.window
    hu = np.random.default_rng(0).integers(low, high, (args.slices, 2 * workers * images,
                                                      args.size), dtype=np.int16)
    baseline = peak_rss_mib()
    with torch.inference_mode():
        _synthesize_pint_view(model, hu, "coronal", torch.device("cpu"), False,
                              lambda fraction: None, workers, window=(low, high))
    return {"workers": workers, "images_per_pass": images,
            "peak_above_baseline_mib": peak_rss_mib() - baseline}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--factor", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--preset", default=None,
                        help="the model's preset (default: the default preset)")
    parser.add_argument("--views", action="store_true", help="keep the views (more memory)")
    parser.add_argument("--dtype", default="int16", choices=("int16", "float32"),
                        help="input data type (CT files hold int16; the output follows)")
    parser.add_argument("--full", action="store_true",
                        help="one whole synthesis with the real network instead of the two "
                             "parts (minutes on a CPU)")
    parser.add_argument("--part", choices=("arrays", "network", "full"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.part:
        parts = {"arrays": part_arrays, "network": part_network, "full": part_full}
        print(json.dumps(parts[args.part](args)))
        return
    if args.full:
        print(json.dumps(part_full(args)))
        return
    results = {}
    for part in ("arrays", "network"):
        command = [sys.executable, __file__, "--part", part, *sys.argv[1:]]
        output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        results[part] = json.loads(output.strip().splitlines()[-1])
        print(part, results[part], flush=True)
    total = results["arrays"]["peak_rss_mib"] + results["network"]["peak_above_baseline_mib"]
    print(f"{args.size} x {args.size} x {args.slices} at r = {args.factor}, views "
          f"{'kept' if args.views else 'not kept'}: peak about {total:.0f} MiB "
          f"({total / 1024:.2f} GiB)")


if __name__ == "__main__":
    main()
