#!/usr/bin/env bash
# Install napari-xview into ./.venv on a fresh Debian machine.
#   bash scripts/install.sh            # the package (CLI, Python API, napari plugin) + DICOM/NRRD readers
#   bash scripts/install.sh --test     # the same plus the test tools, napari with PyQt6 (Qt 6), and Xvfb + Mesa
# torch is pinned first: an unpinned requirement would pull a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."

extras="dicom,nrrd"
want_gui_system_packages=0
if [[ "${1:-}" == "--test" ]]; then
  extras="testing"
  want_gui_system_packages=1
fi

apt_packages=(python3-venv python3-pip)
if (( want_gui_system_packages )); then
  # napari needs OpenGL even for Viewer(show=False): a virtual X display with Mesa, and Qt's xcb libraries.
  apt_packages+=(xvfb xauth libgl1-mesa-dri libegl1 libxkbcommon-x11-0 libxcb-icccm4 libxcb-image0
                 libxcb-keysyms1 libxcb-randr0 libxcb-render-util0 libxcb-xinerama0 libxcb-shape0
                 libxcb-cursor0 libdbus-1-3 libfontconfig1)
fi
if command -v apt-get >/dev/null 2>&1; then
  sudo_cmd=()
  if [[ $(id -u) -ne 0 ]]; then sudo_cmd=(sudo); fi
  export DEBIAN_FRONTEND=noninteractive
  "${sudo_cmd[@]}" apt-get update -qq
  "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${apt_packages[@]}" >/dev/null
fi

python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q "torch==2.13.0"
.venv/bin/python -m pip install -q -e ".[${extras}]"
echo "napari-xview installed in $(pwd)/.venv"
