"""Synthesis in chunks equals one pass of the networks over whole images (issue 16).

PInt's channel attention averages over a whole image and its layer attention correlates whole
feature maps, so no halo makes a tile along z exact: the chunks must hold whole images. These
tests wake the attention modules up (their learnt scales start at zero) so that the global
statistics matter, and use volumes longer than the 64 rows the engine once tiled at.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from napari_xview.config import resolve
from napari_xview.engine import XViewModel, synthesis, synthesize
from napari_xview.io.window import to_input_range
from napari_xview.models.blocks import ChannelAttention, ChannelSpatialAttention, LayerAttention
from napari_xview.sample import make_phantom
from napari_xview.views import coronal_upsample, sagittal_upsample

#: Per preset: a volume long along z (more than 64 slices) and small in-plane, so that even
#: the paper's network (hundreds of rows of receptive field) stays quick to run.
SHAPES = {"pixelwise": (72, 12, 10), "lite": (72, 12, 10), "paper": (66, 4, 3)}
#: Gain on the 3 x 3 convolutions of PInt's residual groups: at its initial scale the shallow
#: lite body barely changes its input, so neither its receptive field nor its attention would
#: show; the paper's deep body needs no help (and more would saturate it).
BODY_GAIN = {"pixelwise": 2.5, "lite": 2.5, "paper": 1.0}


def awake_model(preset: str, factor: int = 2) -> XViewModel:
    """An untrained model of ``preset`` whose attention modules are switched on and strong.

    The learnt scales of layer and channel-spatial attention start at zero; the channel
    attention's small initial weights barely react to an image's mean. A trained network
    does not have to be so mild, nor (with a residual over linear interpolation) so quiet.
    """
    torch.manual_seed(0)
    model = XViewModel.create(resolve(preset, factor).model).eval()
    with torch.no_grad():
        for module in model.pint.groups.modules():
            if isinstance(module, nn.Conv2d) and module.kernel_size == (3, 3):
                module.weight.mul_(BODY_GAIN[preset])
        for module in model.modules():
            if isinstance(module, (LayerAttention, ChannelSpatialAttention)):
                module.scale.fill_(0.5)
            if isinstance(module, ChannelAttention):
                module.squeeze.weight.mul_(8)
                module.excite.weight.mul_(8)
        if model.pint.residual_to_linear:  # undo the tenth its last convolution starts at
            model.pint.tail.weight.mul_(10)
    return model


def long_volume(shape):
    """A float32 phantom whose last slices are much brighter: an image's mean depends on how
    much of it a network pass sees."""
    phantom = make_phantom(shape=shape, spacing=(4.0, 1.0, 1.0))
    array = phantom.array.astype(np.float32)
    array[-shape[0] // 8:] += 1500
    return phantom.with_array(array)


def one_pass(model: XViewModel, volume, view: str) -> np.ndarray:
    """O_c or O_s in HU from a single call of PInt on every whole image of ``view``."""
    low, high = model.config.window
    unit = np.clip((volume.array.astype(np.float32) - low) / (high - low), 0, 1)
    upsample = coronal_upsample if view == "coronal" else sagittal_upsample
    with torch.inference_mode():
        out = upsample(model.pint, torch.from_numpy(unit)[None])[0].numpy().copy()
    return to_input_range(out, volume.array, (low, high), model.factor, np.dtype(np.float32))


@pytest.mark.parametrize("preset", sorted(SHAPES))
def test_chunked_synthesis_equals_one_pass(monkeypatch, preset):
    model = awake_model(preset)
    shape = SHAPES[preset]
    volume = long_volume(shape)
    # a few images per chunk: several chunks of lines and several network batches per view
    monkeypatch.setattr(synthesis, "CHUNK_VOXELS", 3 * shape[0] * max(shape[1:]))
    result = synthesize(volume, model, device="cpu", views=True)
    for view in ("coronal", "sagittal"):
        expected = one_pass(model, volume, view)
        error = np.abs(getattr(result, view).array - expected).max()
        assert error <= 1.0, f"{preset} {view}: chunked differs from one pass by {error:.2f} HU"


def test_one_image_per_batch_equals_all_images_at_once(monkeypatch):
    """The smallest memory bound (one image per forward pass) changes nothing."""
    model = awake_model("lite")
    volume = long_volume((70, 9, 8))
    whole = synthesize(volume, model, device="cpu")
    monkeypatch.setattr(synthesis, "CHUNK_VOXELS", 1)
    single = synthesize(volume, model, device="cpu")
    for name, layer in whole.layers():
        np.testing.assert_allclose(getattr(single, name).array, layer.array, atol=1.0,
                                   err_msg=name)


def test_synthesis_equals_the_networks_as_trained(monkeypatch):
    """Inference composes PInt's upsampler, runs its attention in place and shares the images
    among threads: within 1 HU of the layers as they are trained (with gradients), one pass
    over every whole image."""
    model = awake_model("pixelwise")
    volume = long_volume(SHAPES["pixelwise"])
    monkeypatch.setattr(synthesis, "CHUNK_VOXELS", 3 * SHAPES["pixelwise"][0] * 12)
    previous = torch.get_num_threads()
    try:
        result = synthesize(volume, model, device="cpu", views=True, num_threads=2)
    finally:
        torch.set_num_threads(previous)
    low, high = model.config.window
    unit = np.clip((volume.array.astype(np.float32) - low) / (high - low), 0, 1)
    for view in ("coronal", "sagittal"):
        upsample = coronal_upsample if view == "coronal" else sagittal_upsample
        with torch.enable_grad():
            trained = upsample(model.pint, torch.from_numpy(unit)[None])[0].detach().numpy()
        expected = to_input_range(trained.copy(), volume.array, (low, high), model.factor,
                                  np.dtype(np.float32))
        error = np.abs(getattr(result, view).array - expected).max()
        assert error <= 1.0, f"{view}: {error:.3f} HU from the networks as trained"
