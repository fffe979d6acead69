"""How much the chest sample looks like real CT: the statistics of docs/benchmarks.md.

Compares the sample (``make_ct_sample``), the analytic test phantom (``make_phantom``) and a
real chest CT (the 2.5 mm benchmark scan), all at 2.5 mm slices: the sample's 1.25 mm truth
averaged in pairs (a 2.5 mm box, as a scanner makes them), the phantom sampled at 2.5 mm.

- HU histogram inside the body: the fraction of voxels per tissue range, the lung median;
- noise: standard deviation of the in-plane high-pass residual in soft tissue;
- texture along z against in-plane: the root-mean-square difference of voxels d mm apart
  along z and in-plane (in-plane interpolated between whole-pixel shifts), inside the body;
- difficulty for interpolation: each volume made 4 times thicker (10 mm boxes), then linear
  and cubic interpolation back to 2.5 mm scored against it (PSNR on the synthesised slices,
  the window of the evaluation).

    .venv/bin/python benchmarks/sample_statistics.py data/cxr.nii.gz --json out.json
"""

from __future__ import annotations

import argparse
import json

import numpy as np
from scipy import ndimage

from napari_xview.baselines import interpolate_z
from napari_xview.evaluate import simulate_thick_slices
from napari_xview.io import load_volume
from napari_xview.metrics import psnr, synthesized_mask
from napari_xview.sample import make_ct_sample, make_phantom

BINS = [(-1e9, -950), (-950, -600), (-600, -200), (-200, -30), (-30, 100), (100, 300),
        (300, 700), (700, 1e9)]
DISTANCES = (2.5, 5.0, 10.0)


def body_mask(hu: np.ndarray) -> np.ndarray:
    """Inside the body: slices of (HU > -400) with their holes (lungs, airways) filled."""
    mask = np.zeros(hu.shape, bool)
    for k in range(hu.shape[0]):
        solid = ndimage.binary_opening(hu[k] > -400, iterations=2)
        labels, count = ndimage.label(solid)
        if count:
            largest = 1 + int(np.argmax(ndimage.sum(solid, labels, range(1, count + 1))))
            mask[k] = ndimage.binary_fill_holes(labels == largest)
    return mask


def rms_difference(hu: np.ndarray, mask: np.ndarray, spacing, distance: float) -> dict:
    """RMS HU difference of voxel pairs ``distance`` mm apart along z and in-plane."""
    dz, dy, _ = spacing
    out = {}
    k = distance / dz
    if abs(k - round(k)) < 1e-6 and round(k) < hu.shape[0]:
        k = round(k)
        both = mask[k:] & mask[:-k]
        out["z"] = float(np.sqrt(np.mean((hu[k:] - hu[:-k])[both] ** 2)))

    def inplane(shift: int) -> float:
        values = []
        for axis in (1, 2):
            a = np.moveaxis(hu, axis, 0)
            m = np.moveaxis(mask, axis, 0)
            both = m[shift:] & m[:-shift]
            values.append(np.mean((a[shift:] - a[:-shift])[both] ** 2))
        return float(np.mean(values))

    pixels = distance / dy
    low = int(np.floor(pixels))
    weight = pixels - low
    squared = (1 - weight) * inplane(max(low, 1)) + weight * inplane(low + 1)
    out["in-plane"] = float(np.sqrt(squared))
    if "z" in out:
        out["z / in-plane"] = out["z"] / out["in-plane"]
    return out


def noise(hu: np.ndarray) -> float:
    """Std of the in-plane high-pass residual (minus a 2-pixel Gaussian) in soft tissue."""
    smooth = ndimage.gaussian_filter(hu, (0, 2, 2))
    soft = ndimage.binary_erosion((smooth > 0) & (smooth < 100), iterations=3)
    return float(np.std((hu - smooth)[soft]))


def interpolation_psnr(volume) -> dict:
    thick, truth = simulate_thick_slices(volume, 4, "box")
    synthesised = synthesized_mask(truth.shape[0], 4)
    return {method: psnr(interpolate_z(thick.array, 4, method), truth.array,
                         mask=synthesised) for method in ("linear", "cubic")}


def statistics(volume) -> dict:
    hu = np.clip(volume.array.astype(np.float32), -1024.0, 3072.0)
    mask = body_mask(hu)
    inside = hu[mask]
    lung = inside[(inside >= -950) & (inside < -600)]
    return {
        "shape": list(hu.shape), "spacing": list(volume.spacing),
        "fractions": {f"{lo:g}..{hi:g}": float(np.mean((inside >= lo) & (inside < hi)))
                      for lo, hi in BINS},
        "lung median": float(np.median(lung)) if lung.size else None,
        "noise": noise(hu),
        "rms difference": {f"{d:g} mm": rms_difference(hu, mask, volume.spacing, d)
                           for d in DISTANCES},
        "interpolation psnr (10 -> 2.5 mm)": interpolation_psnr(volume),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("real", help="a real chest CT with 2.5 mm slices (data/cxr.nii.gz)")
    parser.add_argument("--json", help="write the statistics here")
    args = parser.parse_args()
    sample = make_ct_sample()
    sample_25, _ = simulate_thick_slices(sample.truth, 2, "box")
    phantom = make_phantom((79, 128, 128), (2.5, 0.8, 0.8))
    results = {"real chest CT": statistics(load_volume(args.real)),
               "sample (make_ct_sample, 2.5 mm)": statistics(sample_25),
               "test phantom (make_phantom, 2.5 mm)": statistics(phantom)}
    text = json.dumps(results, indent=2)
    print(text)
    if args.json:
        with open(args.json, "w") as file:
            file.write(text + "\n")


if __name__ == "__main__":
    main()
