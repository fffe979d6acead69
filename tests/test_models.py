"""Tests of the interpolation networks of section 3.1: SInt-A, the memory bank and PInt (no Qt)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from napari_xview.config import ModelConfig, resolve
from napari_xview.models import (
    FullResSliceNet,
    MemoryBank,
    MemoryLosses,
    PixelInterpNet,
    SliceInterpNet,
    build_models,
)
from napari_xview.models.blocks import (
    ChannelSpatialAttention,
    LayerAttention,
    linear_between,
    linear_rows,
    pad_to_multiple,
    shuffle_rows,
)
from napari_xview.models.memory import memory_losses, memory_update
from napari_xview.models.pixel_interp import composed_upsampler

HEIGHT, WIDTH, ROWS = 37, 45, 7  # odd on purpose: nothing divides by 8


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _config(factor: int = 2, **overrides) -> ModelConfig:
    sizes = dict(sint_channels=16, sint_blocks=1, space_to_depth=8, memory_items=4,
                 pint_channels=8, pint_groups=2, pint_blocks=1, reduction=4)
    return ModelConfig(factor=factor, networks="both", **{**sizes, **overrides})


def _models(factor: int = 2, seed: int = 0, **overrides) -> tuple[SliceInterpNet, PixelInterpNet]:
    torch.manual_seed(seed)
    return build_models(_config(factor, **overrides))


def _slices(batch: int = 2, height: int = HEIGHT, width: int = WIDTH, seed: int = 1):
    generator = torch.Generator().manual_seed(seed)
    first = torch.rand(batch, 1, height, width, generator=generator)
    return first, torch.rand(batch, 1, height, width, generator=generator)


def _image(batch: int = 2, rows: int = ROWS, width: int = WIDTH, seed: int = 2) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 1, rows, width, generator=generator)


def _fit_towards_grey(sint: torch.nn.Module, first: torch.Tensor, second: torch.Tensor, *,
                     steps: int, lr: float) -> None:
    """``steps`` Adam steps pulling SInt-A's slices between ``first`` and ``second`` to 0.5."""
    optimiser = torch.optim.Adam(sint.parameters(), lr=lr)
    for _ in range(steps):
        optimiser.zero_grad()
        slices, _ = sint(first, second)
        (slices - 0.5).square().mean().backward()
        optimiser.step()


def _zero_tail(*models: torch.nn.Module) -> None:
    with torch.no_grad():
        for model in models:
            model.tail.weight.zero_()
            model.tail.bias.zero_()


# --- shapes ---------------------------------------------------------------------------------

@pytest.mark.parametrize("factor", [2, 3, 4])
def test_slice_interp_shape_on_odd_sizes(factor):
    sint, _ = _models(factor)
    slices, losses = sint(*_slices())
    assert slices.shape == (2, factor - 1, HEIGHT, WIDTH)
    assert isinstance(losses, MemoryLosses)
    assert losses.compactness.shape == () and losses.separateness.shape == ()


@pytest.mark.parametrize("factor", [2, 3, 4])
def test_pixel_interp_shape_on_odd_sizes(factor):
    _, pint = _models(factor)
    assert pint(_image()).shape == (2, 1, factor * (ROWS - 1) + 1, WIDTH)


@pytest.mark.parametrize("size", [(1, 1), (2, 3), (5, 9), (8, 8), (9, 17)])
def test_slice_interp_any_small_size(size):
    sint, _ = _models(3)
    slices, _ = sint(*_slices(1, *size))
    assert slices.shape == (1, 2, *size)
    assert torch.isfinite(slices).all()


@pytest.mark.parametrize(("rows", "width"), [(2, 1), (2, 5), (3, 128)])
def test_pixel_interp_smallest_images(rows, width):
    _, pint = _models(4)
    assert pint(_image(1, rows, width)).shape == (1, 1, 4 * (rows - 1) + 1, width)


def test_lite_and_paper_presets_build_and_run():
    torch.manual_seed(0)
    sint, pint = build_models(resolve("lite", 3).model)
    with torch.no_grad():
        assert sint(*_slices(1))[0].shape == (1, 2, HEIGHT, WIDTH)
        assert pint(_image(1)).shape == (1, 1, 3 * (ROWS - 1) + 1, WIDTH)
    with torch.device("meta"):  # the paper's sizes, without allocating 68M parameters
        sint, pint = build_models(resolve("paper", 4).model)
    assert sint.memory.items.shape == (10, 192)
    assert len(pint.groups) == 10 and len(pint.groups[0].body) == 21  # 20 RCAB + conv


# --- geometry helpers -----------------------------------------------------------------------

def test_pad_to_multiple_reflects_and_falls_back_to_replicate():
    x = torch.arange(6.0).reshape(1, 1, 2, 3)
    padded = pad_to_multiple(x, 4)
    assert padded.shape == (1, 1, 4, 4)
    assert padded[0, 0, 0].tolist() == [0.0, 1.0, 2.0, 2.0]  # pad 1 < 3 columns, but 2 rows
    assert padded[0, 0, :, 0].tolist() == [0.0, 3.0, 3.0, 3.0]  # cannot reflect: replicate
    reflected = pad_to_multiple(torch.arange(5.0).reshape(1, 1, 1, 5).expand(1, 1, 5, 5), 8)
    assert reflected.shape == (1, 1, 8, 8)
    assert reflected[0, 0, 0].tolist() == [0.0, 1.0, 2.0, 3.0, 4.0, 3.0, 2.0, 1.0]
    assert pad_to_multiple(x, 1) is x


def test_shuffle_rows_interleaves_channel_groups_into_rows():
    x = torch.arange(2 * 3 * 2 * 1.0).reshape(1, 6, 2, 1)  # C = 2 channels of r = 3 sub-rows
    out = shuffle_rows(x, 3)
    assert out.shape == (1, 2, 6, 1)
    # output row 3 i + t of channel c is input channel 3 c + t at row i
    assert out[0, 1, :, 0].tolist() == [6.0, 8.0, 10.0, 7.0, 9.0, 11.0]


def test_linear_helpers_put_input_row_i_at_r_times_i():
    image = torch.tensor([0.0, 3.0, 6.0]).reshape(1, 1, 3, 1)
    assert linear_rows(image, 3).flatten().tolist() == pytest.approx([0, 1, 2, 3, 4, 5, 6])
    first, second = torch.zeros(1, 1, 1, 1), torch.full((1, 1, 1, 1), 4.0)
    assert linear_between(first, second, 4).flatten().tolist() == [1.0, 2.0, 3.0]


def test_channel_spatial_attention_equals_the_3d_convolution_of_han():
    torch.manual_seed(0)
    attention = ChannelSpatialAttention()
    with torch.no_grad():
        attention.scale.fill_(0.7)
    x = torch.rand(2, 5, 6, 7)
    expected = x + 0.7 * torch.sigmoid(attention.conv(x.unsqueeze(1)).squeeze(1)) * x
    assert torch.allclose(attention(x), expected, atol=1e-6)
    with torch.inference_mode():  # in place on the convolution's output
        assert torch.allclose(attention(x), expected, atol=1e-6)


def test_layer_attention_keeps_its_gram_matrix_in_float32_under_autocast():
    torch.manual_seed(0)
    attention = LayerAttention()
    with torch.no_grad():
        attention.scale.fill_(1.0)
    layers = torch.rand(2, 3, 8, 16, 16) * 4  # Gram entries in the thousands
    expected = attention(layers)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = attention(layers)
    assert torch.allclose(mixed.float(), expected, rtol=1e-2, atol=1e-2)


def test_models_run_under_cpu_autocast():
    sint, pint = _models(2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        slices, losses = sint(*_slices())
        upscaled = pint(_image())
    assert torch.isfinite(slices).all() and torch.isfinite(upscaled).all()
    assert losses.compactness.dtype == torch.float32  # memory arithmetic stays float32
    assert torch.allclose(sint.memory.items.norm(dim=1), torch.ones(4), atol=1e-5)


# --- residual over linear interpolation -----------------------------------------------------

@pytest.mark.parametrize("factor", [2, 4])
def test_residual_to_linear_starts_from_linear_interpolation(factor):
    sint, pint = _models(factor)
    _zero_tail(sint, pint)
    first, second = _slices()
    slices, _ = sint(first, second)
    assert torch.allclose(slices, linear_between(first, second, factor), atol=1e-6)
    image = _image()
    upscaled = pint(image)
    assert torch.allclose(upscaled, linear_rows(image, factor), atol=1e-6)
    assert torch.equal(upscaled[..., ::factor, :], image)  # input row i lands at r * i


def test_sint_start_scale_zero_starts_exactly_at_linear_interpolation_and_learns():
    sint, _ = _models(4, sint_start_scale=0.0)
    first, second = _slices()
    slices, _ = sint(first, second)
    assert torch.equal(slices, linear_between(first, second, 4))
    # the last convolution gets a gradient at once; the earlier layers once it has moved
    _fit_towards_grey(sint, first, second, steps=2, lr=1e-3)
    assert sint.head.weight.grad.abs().sum() > 0
    assert not torch.equal(sint(first, second)[0], linear_between(first, second, 4))


def test_without_residual_to_linear_the_network_alone_predicts():
    sint, pint = _models(2, residual_to_linear=False)
    _zero_tail(sint, pint)
    assert torch.count_nonzero(sint(*_slices())[0]) == 0
    assert torch.count_nonzero(pint(_image())) == 0


# --- gradients, determinism, no_grad ---------------------------------------------------------

def test_gradients_reach_every_parameter():
    # reduction 1: channel attention with a 2-unit ReLU bottleneck may be dead for a batch
    sint, pint = _models(3, reduction=1)
    # HAN's attention scales start at zero, which zeroes the gradient of the CSAM kernel;
    # open them so every parameter must receive a gradient.
    with torch.no_grad():
        pint.layer_attention.scale.fill_(0.5)
        pint.channel_spatial_attention.scale.fill_(0.5)
    slices, losses = sint(*_slices())
    loss = slices.square().mean() + losses.compactness + losses.separateness
    loss = loss + pint(_image()).square().mean()
    loss.backward()
    for name, parameter in [*sint.named_parameters(), *pint.named_parameters()]:
        assert parameter.grad is not None, name
        assert torch.isfinite(parameter.grad).all(), name
        assert parameter.grad.abs().sum() > 0, name


def test_zero_initialised_attention_scales_still_learn():
    _, pint = _models(2)
    pint(_image()).square().mean().backward()
    assert pint.layer_attention.scale.grad.abs() > 0
    assert pint.channel_spatial_attention.scale.grad.abs() > 0


def test_initialisation_is_deterministic_under_a_seed():
    first, second = _models(4, seed=3), _models(4, seed=3)
    for one, other in zip(first, second, strict=True):
        state, other_state = one.state_dict(), other.state_dict()
        assert state.keys() == other_state.keys()
        assert all(torch.equal(state[key], other_state[key]) for key in state)


def test_eval_mode_is_deterministic_and_leaves_memory_alone():
    sint, pint = _models(3)
    sint.eval()
    pint.eval()
    items = sint.memory.items.clone()
    first, second = _slices()
    out1, losses = sint(first, second)
    out2, _ = sint(first, second)
    assert torch.equal(out1, out2)
    assert torch.equal(pint(_image()), pint(_image()))
    assert torch.equal(sint.memory.items, items)
    assert losses.compactness.item() == 0.0 and losses.separateness.item() == 0.0


def test_no_grad_keeps_no_graph():
    sint, pint = _models(2)
    with torch.no_grad():
        slices, losses = sint(*_slices())
        upscaled = pint(_image())
    for tensor in (slices, upscaled, *losses):
        assert not tensor.requires_grad and tensor.grad_fn is None


# --- memory bank ------------------------------------------------------------------------------

def test_memory_items_are_state_and_stay_unit_norm_after_updates():
    sint, _ = _models(2)
    sint.train()
    assert "memory.items" in sint.state_dict()
    assert "memory.items" not in dict(sint.named_parameters())
    before = sint.memory.items.clone()
    for seed in range(3):
        sint(*_slices(seed=seed))
    after = sint.memory.items
    assert not torch.equal(after, before)
    assert torch.allclose(after.norm(dim=1), torch.ones(len(after)), atol=1e-5)
    restored, _ = _models(2, seed=9)
    restored.load_state_dict(sint.state_dict())
    assert torch.equal(restored.memory.items, after)


def test_update_memory_false_freezes_the_items_in_training():
    sint, _ = _models(2)
    sint.update_memory = False
    items = sint.memory.items.clone()
    _, losses = sint(*_slices())
    assert torch.equal(sint.memory.items, items)
    assert losses.compactness.requires_grad  # the losses still train the encoder


def test_memory_update_follows_equations_3_to_6():
    items = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    queries = torch.tensor([[1.0, 0.0], [0.8, 0.6]])  # both nearest to item 0
    updated = memory_update(items, queries, queries @ items.T)
    # weights exp(s - max s) over U_0: 1 and exp(0.8 - 1); item 1 has no query: unchanged
    expected = F.normalize(items[0] + queries[0] + math.exp(-0.2) * queries[1], dim=0)
    assert torch.allclose(updated[0], expected, atol=1e-6)
    assert torch.equal(updated[1], items[1])


def test_memory_losses_zero_where_the_query_sits_on_its_item():
    items = torch.eye(3)
    losses = memory_losses(items.clone(), items, items @ items.T, margin=1.0)
    assert losses.compactness.item() == pytest.approx(0.0, abs=1e-7)
    # the negative is sqrt(2) away, farther than 0 + alpha: no separateness penalty either
    assert losses.separateness.item() == pytest.approx(0.0, abs=1e-7)


def test_memory_losses_margin_when_the_query_is_halfway_between_two_items():
    items = torch.eye(2)
    query = F.normalize(torch.tensor([[1.0, 1.0]]), dim=1)
    losses = memory_losses(query, items, query @ items.T, margin=1.0)
    assert losses.compactness.item() == pytest.approx(math.sqrt(2 - math.sqrt(2)), rel=1e-5)
    assert losses.separateness.item() == pytest.approx(1.0, rel=1e-5)


def test_memory_losses_in_training_are_finite_and_non_negative():
    sint, _ = _models(4)
    _, losses = sint(*_slices())
    for value in losses:
        assert torch.isfinite(value) and value.item() >= 0.0
    assert losses.compactness.item() > 0.0  # random features are not memory items


def test_single_item_bank_has_no_separateness():
    bank = MemoryBank(1, 4).train()
    item = bank.items[0].clone()
    read, losses = bank(torch.rand(2, 4, 3, 3), update=True)
    assert read.shape == (2, 4, 3, 3)
    assert losses.separateness.item() == 0.0
    # with one item the softmax read is that item (as it was before the update) everywhere
    assert torch.allclose(read, item.reshape(1, 4, 1, 1).expand_as(read), atol=1e-6)


def test_without_memory_the_losses_are_zero_and_the_bank_absent():
    sint, _ = _models(2, use_memory=False)
    slices, losses = sint(*_slices())
    assert sint.memory is None
    assert losses.compactness.item() == 0.0 and losses.separateness.item() == 0.0
    assert slices.shape == (2, 1, HEIGHT, WIDTH)


# --- the full-resolution SInt-A (model.sint_architecture = "fullres") ------------------------

@pytest.mark.parametrize("factor", [2, 3, 4])
@pytest.mark.parametrize("size", [(HEIGHT, WIDTH), (1, 1), (2, 3)])
def test_fullres_sint_keeps_the_interface_on_any_size(factor, size):
    sint, _ = _models(factor, sint_architecture="fullres")
    assert isinstance(sint, FullResSliceNet)
    slices, losses = sint(*_slices(2, *size))
    assert slices.shape == (2, factor - 1, *size) and torch.isfinite(slices).all()
    assert losses.compactness.item() == 0.0 and losses.separateness.item() == 0.0


def test_fullres_sint_starts_exactly_at_linear_interpolation_and_learns_everywhere():
    sint, _ = _models(3, sint_architecture="fullres", sint_start_scale=0.0, reduction=1)
    first, second = _slices()
    assert torch.equal(sint(first, second)[0], linear_between(first, second, 3))
    _fit_towards_grey(sint, first, second, steps=3, lr=1e-2)
    for name, parameter in sint.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name
    assert not torch.equal(sint(first, second)[0], linear_between(first, second, 3))


def test_fullres_sint_sees_both_slices_at_full_resolution():
    """A change of one pixel of either slice reaches the output near that pixel only (a
    receptive field at full resolution, not an 8 x 8 block's)."""
    sint, _ = _models(2, sint_architecture="fullres", sint_start_scale=1.0)
    first, second = _slices(1)
    base = sint(first, second)[0]
    for which in (0, 1):
        inputs = [first.clone(), second.clone()]
        inputs[which][0, 0, 18, 22] += 1.0
        change = (sint(*inputs)[0] - base).abs()[0, 0]
        assert change[18, 22] > 1e-3
        # head + 2 groups of (1 block: 2 convs, + 1 conv) + body end + tail: radius 9;
        # channel attention spreads a little everywhere, so look at the clear changes only
        rows, cols = torch.nonzero(change > 1e-3, as_tuple=True)
        assert (rows - 18).abs().max() <= 9 and (cols - 22).abs().max() <= 9


def test_an_unknown_sint_architecture_is_refused():
    with pytest.raises(ValueError, match="sint_architecture"):
        _config(sint_architecture="unet")


# --- bad input ------------------------------------------------------------------------------

def test_bad_inputs_are_refused_clearly():
    sint, pint = _models(2)
    first, second = _slices()
    with pytest.raises(ValueError, match=r"\(B, 1, H, W\)"):
        sint(first[:, 0], second[:, 0])
    with pytest.raises(ValueError, match="same shape"):
        sint(first, second[..., :-1])
    with pytest.raises(ValueError, match="at least 2 rows"):
        pint(_image(rows=1))
    with pytest.raises(ValueError, match=r"\(B, 1, L, W\)"):
        pint(torch.rand(1, 2, 4, 4))
    with pytest.raises(TypeError, match="ModelConfig"):
        build_models({"factor": 2})
    with pytest.raises(ValueError, match="memory items have dimension"):
        MemoryBank(3, 8)(torch.rand(1, 4, 2, 2))


@pytest.mark.parametrize("factor", [2, 3, 4, 5])
@pytest.mark.parametrize("rows, width", [(ROWS, WIDTH), (2, 3), (5, 2), (2, 1)])
def test_pixel_interp_inference_path_equals_the_training_path(factor, rows, width):
    """Without gradients PInt composes its upsampler into one convolution and applies the
    attention in place: the same function, to float32 rounding, borders included."""
    _, pint = _models(factor)
    with torch.no_grad():  # the attention scales start at zero: give them work to do
        pint.layer_attention.scale.fill_(0.7)
        pint.channel_spatial_attention.scale.fill_(-0.4)
        for layer in (pint.upsample, pint.tail):
            layer.bias.uniform_(-0.5, 0.5)
        pint.tail.weight.mul_(10)
    image = _image(3, rows, width)
    with torch.enable_grad():
        expected = pint(image).detach()
    with torch.inference_mode():
        fast = pint(image)
    assert fast.shape == expected.shape == (3, 1, factor * (rows - 1) + 1, width)
    assert torch.allclose(fast, expected, atol=2e-6 * expected.abs().max().item())


def test_composed_upsampler_matches_the_layers_it_replaces_inside_the_borders():
    _, pint = _models(4)
    features = torch.rand(2, pint.upsample.in_channels, 6, 9)
    weight, bias = composed_upsampler(pint.upsample, pint.tail, 4)
    with torch.no_grad():
        composed = F.conv2d(features, weight, bias, padding=2)  # (B, r, L, W)
        expected = pint.tail(shuffle_rows(pint.upsample(features), 4))
    as_rows = composed.permute(0, 2, 1, 3).reshape(2, 1, 24, 9)
    inside = (slice(None), slice(None), slice(1, 21), slice(1, 8))
    assert torch.allclose(as_rows[inside], expected[inside], atol=1e-5)
    assert not torch.allclose(as_rows[..., :1], expected[..., :1], atol=1e-5)  # the border
