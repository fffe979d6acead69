"""Regenerate the screenshots of docs/napari.md from the real widgets, on a scan or the sample.

Usage (Xvfb is started for you when there is no display)::

    python scripts/make_screenshots.py                 # writes docs/images/*.png
    python scripts/make_screenshots.py --minutes 1     # quicker, less trained
    python scripts/make_screenshots.py --input data/chest_dicom   # a real CT (DATA.md)

It opens the scan given with ``--input`` (else the sample, from *File > Open Sample*), adds
the *Slice synthesis* dock, trains the default preset ("pixelwise"; ``--preset lite`` for the
paper's two networks at CPU size) at r = 4 with a wall-clock budget, and takes four
screenshots of the whole window:

- ``widget-training.png``: during training (progress, ETA, live loss plot);
- ``result-layers.png``: the fused result with the disagreement map over it, on a synthesised
  slice, and the result layers in the layer list;
- ``orthogonal-views.png``: the *Orthogonal views* dock (coronal and sagittal planes) beside
  the axial canvas;
- ``coronal-comparison.png``: the coronal plane of the input and of the fused result side by
  side (napari's grid mode), where the gain in through-plane resolution shows.

PNG files are kept under 300 KB (reduced to a 256-colour palette when needed).
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

from napari_xview.config import DEFAULT_PRESET, PRESETS

WINDOW_SIZE = (1500, 980)
SCREEN = "1600x1050x24"
MAX_PNG_BYTES = 300_000
REPOSITORY = Path(__file__).resolve().parents[1]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPOSITORY / "docs" / "images",
                        help="folder for the PNG files (default: docs/images)")
    parser.add_argument("--input", type=Path,
                        help="a scan to open with napari-xview's reader (a file or a DICOM "
                             "series folder; default: the sample, from File > Open Sample)")
    parser.add_argument("--minutes", type=float, default=4.0,
                        help="training budget in minutes (default: 4)")
    parser.add_argument("--factor", type=int, default=4, help="upsampling factor r (default 4)")
    parser.add_argument("--shot-at", type=float, default=0.7,
                        help="share of the budget after which the training screenshot is taken")
    parser.add_argument("--preset", choices=list(PRESETS), default=DEFAULT_PRESET,
                        help=f"networks and training settings (default {DEFAULT_PRESET})")
    # None keeps the preset's own value, as the widget shows it after choosing the preset
    parser.add_argument("--batch-size", type=int, default=None,
                        help="crops per step (default: the preset's)")
    parser.add_argument("--patch-size", type=int, default=None,
                        help="in-plane crop size (default: the preset's)")
    parser.add_argument("--pint-images", type=int, default=None,
                        help="coronal/sagittal images per crop for PInt, 0 for all "
                             "(default: the preset's)")
    parser.add_argument("--threads", type=int, default=0,
                        help="CPU threads for training, 0 for all cores (default 0)")
    return parser.parse_args(argv)


def ensure_display(argv: list[str]) -> None:
    """Re-run this script under ``xvfb-run`` when there is no X display (napari needs GL)."""
    if os.environ.get("DISPLAY") or os.environ.get("XVFB_SCREENSHOTS"):
        return
    xvfb_run = shutil.which("xvfb-run")
    if xvfb_run is None:
        sys.exit("no X display and no xvfb-run: install xvfb (apt-get install xvfb) or run "
                 "this script inside a desktop session")
    command = [xvfb_run, "-a", "-s", f"-screen 0 {SCREEN}", sys.executable, __file__, *argv]
    environment = {**os.environ, "XVFB_SCREENSHOTS": "1"}
    sys.exit(subprocess.call(command, env=environment))


def save_png(image: np.ndarray, path: Path) -> int:
    """Write an RGBA screenshot as PNG under MAX_PNG_BYTES; return the file size."""
    from PIL import Image

    picture = Image.fromarray(np.ascontiguousarray(image[..., :3]))
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG", optimize=True)
    if buffer.tell() > MAX_PNG_BYTES:
        buffer = io.BytesIO()
        picture.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(
            buffer, format="PNG", optimize=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buffer.getvalue())
    return buffer.tell()


def settle(seconds: float = 0.5) -> None:
    """Let Qt lay out and paint (screenshots otherwise catch half-drawn widgets)."""
    import time

    from qtpy.QtWidgets import QApplication

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        QApplication.processEvents()
        time.sleep(0.02)


def shoot(viewer, path: Path) -> None:
    settle()
    size = save_png(viewer.screenshot(canvas_only=False, flash=False), path)
    print(f"wrote {path} ({size // 1024} KB)")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    ensure_display(argv)

    # only errors as pop-ups: napari's notice that PyQt5 support is deprecated would otherwise
    # sit on top of every screenshot (napari reads its settings from NAPARI_* variables)
    os.environ.setdefault("NAPARI_APPLICATION_GUI_NOTIFICATION_LEVEL", "error")
    import napari

    from napari_xview.engine.events import Step

    viewer = napari.Viewer(title="napari-xview")
    viewer.window.resize(*WINDOW_SIZE)
    if args.input is None:
        [phantom] = viewer.open_sample("napari-xview", "ct_phantom")
    else:
        [phantom] = viewer.open(str(args.input), plugin="napari-xview")
    dock, widget = viewer.window.add_plugin_dock_widget("napari-xview", "Slice synthesis")
    widget.factor.setValue(args.factor)
    widget.preset.setCurrentText(args.preset)
    widget.budget_unit.setCurrentText("minutes")
    widget.budget_minutes.setValue(args.minutes)
    given = {"batch_size": args.batch_size, "patch_size": args.patch_size,
             "pint_lines": args.pint_images}
    widget.options.set_values({key: value for key, value in given.items() if value is not None})
    widget.options.set_values({"num_threads": args.threads})
    for kind in ("fused", "axial", "coronal", "sagittal", "disagreement"):
        widget.result_kinds[kind].setChecked(True)
    viewer.reset_view()

    worker = widget.start_training()

    def pause_for_the_shot(event) -> None:
        # pause first: painting the window runs the event loop, which would otherwise go on
        # to handle later events (up to the end of training) before the picture is taken
        if isinstance(event, Step) and event.fraction >= args.shot_at:
            worker.yielded.disconnect(pause_for_the_shot)
            worker.pause()

    def shoot_while_paused() -> None:
        widget.loss_plot.redraw()
        shoot(viewer, args.out / "widget-training.png")
        worker.resume()

    worker.yielded.connect(pause_for_the_shot)
    worker.paused.connect(shoot_while_paused)
    widget.wait_until_idle()

    # a synthesised slice half-way between two measured ones, where the method has to invent
    fused = viewer.layers[f"{phantom.name} [fused]"]
    middle_input_slice = phantom.data.shape[0] // 2
    viewer.dims.set_point(0, fused.data_to_world(
        (args.factor * middle_input_slice + args.factor // 2, 0, 0))[0])
    viewer.layers.selection.active = fused
    viewer.reset_view()
    shoot(viewer, args.out / "result-layers.png")

    dock.hide()
    viewer.layers[f"{phantom.name} [disagreement]"].visible = False
    ortho_dock, ortho = viewer.window.add_plugin_dock_widget("napari-xview", "Orthogonal views")
    extent = fused.extent.world
    ortho.set_point(tuple((extent[0] + extent[1]) / 2 + np.array([0.0, -8.0, 12.0])))
    viewer.reset_view()
    shoot(viewer, args.out / "orthogonal-views.png")

    # through-plane quality: the measured slices against the fused result, coronal plane
    viewer.window.remove_dock_widget(ortho_dock)
    for layer in viewer.layers:
        layer.visible = layer in (phantom, fused)
    viewer.dims.order = (1, 0, 2)
    viewer.canvas.grid.enabled = True
    viewer.reset_view()
    viewer.scene.camera.zoom *= 1.6
    caption = viewer.canvas.overlays["text"]
    caption.text = (f"coronal plane · left: input ({phantom.scale[0]:g} mm slices)"
                    f" · right: fused result ({fused.scale[0]:g} mm)")
    caption.font_size = 12
    caption.visible = True
    shoot(viewer, args.out / "coronal-comparison.png")
    viewer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
