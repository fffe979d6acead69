"""Recipe "inplane-distill": an in-plane-taught PInt distilled into SInt-A and back (stage 2)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import tiny_model, tiny_train, with_model
from napari_xview.config import resolve
from napari_xview.engine import (
    StageStarted,
    Step,
    Trainer,
    XViewModel,
    load_model,
    save_model,
    synthesize,
)
from napari_xview.engine.crossview import TeacherViews, distillation_terms, synthesised_slices
from napari_xview.fusion import fuse_views
from napari_xview.losses import consistency_loss
from napari_xview.models import FullResSliceNet
from napari_xview.sample import make_phantom

pytestmark = pytest.mark.usefixtures("one_torch_thread")

#: This module's settings over conftest's tiny ones: recipe "inplane-distill", N = 2.
DISTILL = dict(recipe="inplane-distill", crop_slices=5, inplane_images=4, stage2_crop_slices=3,
               stage2_patch_size=16, cmd_skip_copied=True, n_incremental=2)


@pytest.fixture(scope="module")
def phantom():
    # 4 mm slices over 0.5 mm pixels: fine enough for in-plane pairs at r = 2
    return make_phantom(shape=(9, 48, 48), spacing=(4.0, 0.5, 0.5))


def test_the_gamma_selection_ignores_the_copied_slices():
    """By hand: r = 2, five slices; the copied ones (z = 0, 2, 4) agree exactly, the two
    synthesised ones differ by 1 and 2."""
    a = torch.zeros(1, 5, 1, 1)
    b = torch.tensor([0.0, 1.0, 0.0, 2.0, 0.0]).reshape(1, 5, 1, 1)
    mask = synthesised_slices(5, 2)
    assert mask.tolist() == [False, True, False, True, False]
    mask = mask[None, :, None, None]
    # all points: ceil(0.5 * 5) = 3 kept, the three exact copies -> 0, nothing to learn
    assert consistency_loss(a, b, 0.5).item() == 0.0
    # copied slices left out: ceil(0.5 * 2) = 1 kept, the smaller squared difference, 1
    assert consistency_loss(a, b, 0.5, mask).item() == pytest.approx(1.0)
    # gamma = 1: the mean over the two synthesised slices, (1 + 4) / 2, not (1 + 4) / 5
    assert consistency_loss(a, b, 1.0, mask).item() == pytest.approx(2.5)
    # the selection is over the whole batch: a second crop adds its own synthesised slices
    two_a, two_b = torch.cat([a, a]), torch.cat([b, b + 0.5])
    assert consistency_loss(two_a, two_b, 0.5, mask).item() == pytest.approx((1 + 2.25) / 2)
    with pytest.raises(ValueError, match="mask that keeps none"):
        consistency_loss(a, b, 0.5, torch.zeros(1, 5, 1, 1, dtype=torch.bool))


@pytest.mark.parametrize(("with_teacher", "teach_gamma"), [(False, None), (True, None),
                                                          (False, 1.0), (True, 0.7)])
def test_the_distillation_loss_reaches_sint_a_and_pint(with_teacher, teach_gamma):
    """Gradients of L_c^cmd + L_s^cmd alone (no memory terms) reach both networks; with the
    stored teacher, PInt's live lines carry PInt's share."""
    torch.manual_seed(0)
    model = XViewModel.create(tiny_model(2)).train()
    crops = torch.rand(2, 3, 16, 16)
    config = tiny_train(DISTILL, teach_gamma=teach_gamma)
    rows = cols = slice(None)
    teacher = None
    if with_teacher:
        rows, cols = torch.tensor([2, 9]), torch.tensor([5])
        teacher = (torch.rand(2, 5, 16, 16), torch.rand(2, 5, 16, 16))
    terms = distillation_terms(model, crops, rows, cols, config, torch.device("cpu"), teacher)
    assert {"cmd_c", "cmd_s", "com", "sep"} <= set(terms)
    (terms["cmd_c"] + terms["cmd_s"]).backward()
    for name, network in model.named_modules():
        grads = [p.grad for p in network.parameters() if p.grad is not None]
        assert grads and sum(float(g.abs().sum()) for g in grads) > 0, name


def test_the_distillation_leaves_the_copied_slices_out(monkeypatch):
    """With ``cmd_skip_copied`` every consistency term gets the mask of the round's grid."""
    from napari_xview.engine import crossview

    masks = []
    real = crossview.consistency_loss

    def recording(a, b, gamma, mask=None):
        masks.append(mask)
        return real(a, b, gamma, mask)

    monkeypatch.setattr(crossview, "consistency_loss", recording)
    model = XViewModel.create(tiny_model(2)).train()
    distillation_terms(model, torch.rand(1, 3, 16, 16), slice(None), slice(None),
                       tiny_train(DISTILL), torch.device("cpu"))
    assert [m.flatten().tolist() for m in masks] == [
        [False, True, False, True, False]] * 2 + [[z % 2 == 1 for z in range(9)]] * 2


def test_stored_teacher_views_crop_like_the_sampler(phantom):
    trainer = Trainer(phantom, tiny_train(DISTILL, teacher_refresh=3, model=tiny_model(2)))
    teacher = trainer.teacher
    assert teacher.due(0)
    teacher.refresh(trainer.model, trainer.device, False, step=0)
    assert not teacher.due(2) and teacher.due(3)
    never_again = TeacherViews([], 0)
    never_again.computed_at = 0
    assert not never_again.due(10 ** 6)
    coronal, sagittal = teacher.views[0]
    assert coronal.shape == (17, 48, 48)
    crops, sources, corners = trainer.sampler.sample_located(trainer.generator, 3, 16)
    stored_c, stored_s = teacher.crop(sources, corners, 3, 16, 2, trainer.device)
    z, y, x = corners[1]
    np.testing.assert_array_equal(stored_s[1].numpy(),
                                  sagittal[2 * z:2 * z + 5, y:y + 16, x:x + 16])
    # at the acquired slices PInt nearly reproduces its input (residual over linear)
    np.testing.assert_allclose(stored_c[1, ::2].numpy(), crops[1].numpy(), atol=0.05)


@pytest.mark.parametrize("architecture", ["cain", "fullres"])
def test_inplane_distill_trains_pint_first_then_both(phantom, architecture):
    config = tiny_train(DISTILL, steps=4, teacher_refresh=0)
    trainer = Trainer(phantom, with_model(
        config, tiny_model(2, sint_architecture=architecture)))
    sint_before = [p.detach().clone() for p in trainer.model.sint.parameters()]
    events = list(trainer.run())
    stages = [e.stage for e in events if isinstance(e, StageStarted)]
    losses = [e.losses for e in events if isinstance(e, Step)]
    assert stages == [1, 2]
    # stage 1: PInt alone on in-plane pairs; SInt-A untouched
    assert set(losses[0]) == {"int_p", "total"}
    assert set(losses[-1]) == {"int_p", "cmd_c", "cmd_s", "com", "sep", "total"}
    assert trainer.teacher.computed_at == 2  # once, at the first stage-2 step
    changed = [not torch.equal(a, b) for a, b in zip(sint_before, trainer.model.sint.parameters(),
                                                     strict=True)]
    assert any(changed)


def test_a_distilled_fullres_sint_a_is_saved_loaded_and_synthesises(phantom, tmp_path):
    """The full-resolution SInt-A goes through a checkpoint (weights only) and synthesis like
    the paper's: the same axial view before and after."""
    config = tiny_train(DISTILL, steps=3, teacher_refresh=0)
    model_config = tiny_model(2, sint_architecture="fullres", sint_start_scale=0.0)
    model = list(Trainer(phantom, with_model(config, model_config)).run())[-1].model
    path = save_model(model, tmp_path / "fullres.pt")
    raw = torch.load(path, weights_only=True)
    assert raw["model_config"]["sint_architecture"] == "fullres"
    loaded = load_model(path)
    assert isinstance(loaded.sint, FullResSliceNet)
    before = synthesize(phantom, model, device="cpu", views=True).axial.array
    after = synthesize(phantom, loaded, device="cpu", views=True).axial.array
    np.testing.assert_array_equal(before, after)
    # trained a few steps from exactly linear interpolation: no longer linear
    linear = synthesize(phantom, XViewModel.create(model_config), device="cpu",
                        views=True).axial.array
    assert not np.array_equal(after, linear)


def test_equation_7_on_three_distilled_views(phantom):
    config = tiny_train(DISTILL, steps=4, teacher_refresh=0)
    events = list(Trainer(phantom, with_model(config, tiny_model(2))).run())
    model = events[-1].model
    result = synthesize(phantom, model, device="cpu", keep_input_slices=False)
    axial, coronal, sagittal = (getattr(result, v).array.astype(np.float64)
                                for v in ("axial", "coronal", "sagittal"))
    assert not np.allclose(axial, coronal, atol=1)  # three views, not one
    fused = result.fused.array.astype(np.float64)
    # the views are clipped to the network window on output (air at -1024 HU), the fusion
    # is computed before: compare where nothing was clipped; int16 rounds to 1 HU
    inside = np.minimum.reduce([axial, coronal, sagittal, fused]) > -1020
    assert inside[1::2].mean() > 0.2 and inside[::2].mean() > 0.2
    expected = fuse_views(axial, coronal, sagittal, 2)
    np.testing.assert_allclose(fused[inside], expected[inside], atol=1.0)
    three = (axial + coronal + sagittal) / 3
    np.testing.assert_allclose(fused[1::2][inside[1::2]], three[1::2][inside[1::2]], atol=1.0)
    two = (coronal + sagittal) / 2
    np.testing.assert_allclose(fused[::2][inside[::2]], two[::2][inside[::2]], atol=1.0)


def test_the_distill_preset():
    config = resolve("distill", 4)
    assert config.objective.recipe == "inplane-distill" and config.objective.cmd_skip_copied
    assert config.model.networks == "both"
    # the full-resolution SInt-A from exactly linear interpolation, taught by PInt's stored
    # views of the whole scan, one rate for both networks (docs/benchmarks.md)
    assert config.model.sint_architecture == "fullres" and config.model.sint_start_scale == 0
    assert config.objective.teacher_refresh == 1000 and config.optimisation.sint_lr is None
    assert config.objective.weight_memory == 0.0
    assert resolve("lite", 4).model.sint_architecture == "cain"
    # the paper's preset stays section 3.2 as written
    paper = resolve("paper", 4)
    assert paper.objective.recipe == "downsampled" and not paper.objective.cmd_skip_copied
    assert paper.objective.teacher_refresh is None and paper.objective.teach_gamma is None
    assert paper.model.sint_architecture == "cain"


def test_fusion_by_agreement_by_hand():
    from napari_xview.fusion import fuse_by_agreement

    shape = (3, 1, 2)  # r = 2: z = 0, 2 input positions, z = 1 synthesised
    coronal = np.full(shape, 10.0)
    sagittal = np.full(shape, 10.0)
    axial = np.full(shape, 10.0)
    axial[1, 0, 0] = 40.0  # departs by 30 from two views that agree
    axial[1, 0, 1] = 10.5  # agrees within the scale
    sagittal[0] = 12.0
    fused = fuse_by_agreement(axial, coronal, sagittal, 2, scale=1.0)
    # the outlier: weights 1 / (30^2 + 1) against 1 / (15^2 + 1) twice
    w_out, w_in = 1 / 901, 1 / 226
    assert fused[1, 0, 0] == pytest.approx((40 * w_out + 20 * w_in) / (w_out + 2 * w_in))
    assert fused[1, 0, 0] < fuse_views(axial, coronal, sagittal, 2)[1, 0, 0] - 5
    # agreement: close to the plain mean of equation (7)
    assert 10.0 < fused[1, 0, 1] <= 10.5 / 3 + 20 / 3
    assert fused[1, 0, 1] == pytest.approx(10.5 / 3 + 20 / 3, abs=0.05)
    # input positions: (O_c + O_s) / 2, as equation (7)
    np.testing.assert_allclose(fused[0], 11.0)
    as_tensor = fuse_by_agreement(*(torch.from_numpy(v) for v in (axial, coronal, sagittal)),
                                  2, scale=1.0)
    np.testing.assert_allclose(as_tensor.numpy(), fused)


def test_each_direction_has_its_own_share():
    """teach_gamma = 1: SInt-A learns from PInt on every point; PInt learns back only on the
    gamma share where they agree best."""
    from napari_xview.engine.crossview import _mutual

    axial = torch.zeros(4, requires_grad=True)
    pixelwise = torch.tensor([0.1, 0.2, 3.0, 4.0], requires_grad=True)
    loss = _mutual(axial, pixelwise, tiny_train(DISTILL, gamma=0.5, teach_gamma=1.0), None)
    loss.backward()
    assert loss.item() == pytest.approx((0.01 + 0.04 + 9 + 16) / 4 + (0.01 + 0.04) / 2)
    assert (axial.grad != 0).all()
    assert pixelwise.grad[:2].ne(0).all() and pixelwise.grad[2:].eq(0).all()
