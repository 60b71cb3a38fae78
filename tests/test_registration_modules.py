"""GIRNet's modules, losses and co-learning trainer on tiny volumes (real numbers, a few steps)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from medsuite.commands.register import SHIPPED_CHECKPOINT
from medsuite.registration.config import RegistrationConfig
from medsuite.registration.fields import integrate, warp
from medsuite.registration.inference import clean_mask, field_of_view, load_model
from medsuite.registration.instance import grow_lesion, inpaint_around, inside_head
from medsuite.registration.losses import box_mean, generation_loss, lncc_map, masked_lncc_loss, stable_mean, stable_sum
from medsuite.registration.networks import GIRNet
from medsuite.registration.spatial import content_box, downsample_image, folding_percent, jacobian_determinant, resize_image, uncrop
from medsuite.registration.train import FINAL, train

torch.set_num_threads(1)


def test_velocity_is_antisymmetric_and_starts_at_identity():
    torch.manual_seed(0)
    model = GIRNet(RegistrationConfig())
    a, b = torch.rand(1, 1, 16, 20, 12), torch.rand(1, 1, 16, 20, 12)
    assert model.velocity(a, b).abs().max() == 0  # zero-initialised head: identity transform
    torch.nn.init.normal_(model.velocity_net.head.conv.weight, std=0.1)
    torch.testing.assert_close(model.velocity(a, b), -model.velocity(b, a))
    forward, inverse = model.flows(model.velocity(a, b))
    # exp(v) and exp(-v) are inverse maps: composing them returns (almost) the identity.
    composed = (inverse + warp(forward, inverse))[..., 2:-2, 2:-2, 2:-2]  # borders see zero padding
    assert composed.abs().mean() < 0.25 * forward.abs().mean()  # vs 2x for a non-inverse


def test_integration_and_jacobian_of_a_known_field():
    velocity = torch.zeros(1, 3, 12, 12, 12)
    velocity[:, 0] = 1.5  # constant shift: the integrated displacement is the same shift
    ddf = integrate(velocity, 7)
    assert torch.allclose(ddf[:, :, 4:8, 4:8, 4:8], velocity[:, :, 4:8, 4:8, 4:8], atol=1e-4)
    scaling = np.zeros((3, 10, 10, 10))
    scaling[0] = np.arange(10)[:, None, None] * -1.5  # compresses x by 2.5x... past a fold
    jac = jacobian_determinant(scaling)
    np.testing.assert_allclose(jac, -0.5)
    assert folding_percent(jac) == 100.0


@pytest.mark.parametrize("window", [5, 9])  # 9: wider than the 3-voxel axis
def test_box_mean_is_the_mean_over_each_box_clipped_at_the_borders(window: int):
    torch.manual_seed(0)
    t = torch.rand(1, 1, 7, 6, 3, dtype=torch.float64)
    r = window // 2
    expected = torch.empty_like(t)
    for x in range(7):
        for y in range(6):
            for z in range(3):
                expected[0, 0, x, y, z] = t[0, 0, max(x - r, 0) : x + r + 1, max(y - r, 0) : y + r + 1, max(z - r, 0) : z + r + 1].mean()
    torch.testing.assert_close(box_mean(t, window), expected)


def test_lncc_is_one_for_affinely_related_images():
    image = torch.rand(1, 1, 12, 12, 12)
    assert lncc_map(image, 3.0 * image + 2.0, 5)[..., 3:-3, 3:-3, 3:-3].min() > 0.95
    assert lncc_map(image, torch.rand(1, 1, 12, 12, 12), 5).mean() < 0.2


@pytest.mark.parametrize(("shape", "window", "weighted"), [((9, 11, 7), 5, False), ((9, 11, 7), 5, True), ((4, 5, 6), 9, True)])
def test_the_written_out_lncc_gradient_is_autograds(shape: tuple[int, ...], window: int, weighted: bool):
    # masked_lncc_loss carries its own backward (memory); it must be the gradient of the traced formula,
    # flat regions (zero variance: clamp_min's zero gradient) and windows wider than the grid included.
    generator = torch.Generator().manual_seed(0)
    a = torch.rand(1, 1, *shape, dtype=torch.float64, generator=generator, requires_grad=True)
    b = (0.5 * a.detach() + 0.3 * torch.rand(1, 1, *shape, dtype=torch.float64, generator=generator)).requires_grad_(True)
    b.data[..., :2] = 0.2
    weight = torch.rand(1, 1, *shape, dtype=torch.float64, generator=generator, requires_grad=True) if weighted else None
    ncc = lncc_map(a, b, window)
    traced = 1.0 - (stable_mean(ncc) if weight is None else stable_sum(ncc * weight) / stable_sum(weight).clamp_min(1.0))
    inputs = [a, b] + ([weight] if weighted else [])
    written = masked_lncc_loss(a, b, window, weight)
    torch.testing.assert_close(written, traced, rtol=1e-12, atol=1e-12)
    for expected, got in zip(torch.autograd.grad(traced, inputs), torch.autograd.grad(written, inputs)):
        torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)
    assert torch.autograd.gradcheck(lambda *x: masked_lncc_loss(x[0], x[1], window, x[2] if weighted else None), tuple(inputs))


def test_lncc_pulls_in_low_contrast_tissue():
    # White matter's local variance after [0, 1] scaling is ~1e-4: its correlation must still count.
    torch.manual_seed(0)
    flat = 0.8 + 0.15 * torch.rand(1, 1, 12, 12, 12)  # local variance ~2e-3
    assert lncc_map(flat, 2.0 * flat, 5)[..., 3:-3, 3:-3, 3:-3].mean() > 0.5


def test_downsampling_averages_instead_of_picking_voxels():
    checker = torch.zeros(1, 1, 33, 33, 33)
    checker[..., ::2, :, :] = 1.0  # a pattern finer than the coarse grid: it must blur to grey, not alias
    picked, smoothed = resize_image(checker, (9, 9, 9)), downsample_image(checker, (9, 9, 9))
    assert float(picked.min()) == 1.0  # every kept voxel is a bright one
    inner = smoothed[..., 1:-1, 1:-1, 1:-1]
    assert abs(float(inner.mean()) - 0.5) < 0.02 and inner.std() < 0.02


def test_content_box_crops_background_and_uncrop_restores_the_grid():
    image = torch.zeros(1, 1, 30, 30, 30)
    image[..., 10:15, 12:20, 5:8] = 1.0
    box = content_box([image, torch.zeros_like(image)], margin=2)
    assert box == (slice(8, 17), slice(10, 22), slice(3, 10))
    field = torch.rand(1, 3, *[s.stop - s.start for s in box])
    full = uncrop(field, box, (30, 30, 30), "replicate")
    assert full.shape == (1, 3, 30, 30, 30) and torch.equal(full[(slice(None), slice(None), *box)], field)
    assert torch.equal(full[..., 0, 10, 3], field[..., 0, 0, 0])  # edges replicated: no seam, no fold
    assert uncrop(field[:, :1], box, (30, 30, 30), "constant")[..., 0, 0, 0].item() == 0.0


def test_generation_loss_grows_the_mask_where_the_guide_fails():
    logits = torch.zeros(1, 1, 10, 10, 10, requires_grad=True)
    gap = torch.zeros(1, 1, 10, 10, 10)
    gap[..., 3:6, 3:6, 3:6] = 0.5
    generation_loss(torch.sigmoid(logits), gap, 0.15, 0.0).backward()
    assert logits.grad[0, 0, 4, 4, 4] < 0 < logits.grad[0, 0, 0, 0, 0]  # descent raises inside, lowers outside


def test_clean_mask_keeps_one_filled_region():
    probability = np.zeros((20, 20, 20))
    probability[5:12, 5:12, 5:12] = 0.9
    probability[8, 8, 8] = 0.1  # a hole
    probability[17, 17, 17] = 0.9  # speckle
    mask = clean_mask(probability)
    assert mask.sum() == 7**3 and mask[8, 8, 8]


def _ball(shape: tuple[int, ...], centre: tuple[int, ...], radius: float) -> np.ndarray:
    return np.linalg.norm(np.indices(shape) - np.array(centre)[:, None, None, None], axis=0) <= radius


def test_brain_interior_keeps_tissue_beside_csf_and_drops_the_outline():
    brain = np.where(_ball((40, 40, 40), (20, 20, 20), 16), 0.8, 0.0)
    brain[_ball((40, 40, 40), (20, 20, 20), 4)] = 0.1  # a ventricle: dark, but inside the brain
    head = inside_head(torch.from_numpy(brain).float()[None, None], window=5)[0, 0].numpy()
    assert head[20, 20, 25] == 1 and head[20, 20, 20] == 1  # beside and in the ventricle (a minimum filter dropped both)
    assert head[20, 20, 35] == 0 and head[20, 20, 33] == 1  # the outline's outer 2 voxels are out, the rest is in


def test_final_mask_holds_a_bright_core_and_its_dark_oedema_and_no_more():
    shape, centre = (40, 40, 40), (20, 20, 20)
    guide = np.where(_ball(shape, centre, 16), 0.8, 0.0)
    moving = guide.copy()
    lesion = _ball(shape, centre, 6)
    moving[lesion] = 0.6  # oedema
    moving[_ball(shape, centre, 3)] = 1.2  # the tumour: a signed local mean cancels these two at the rim
    as_tensor = lambda a: torch.from_numpy(a).float()[None, None]  # noqa: E731
    found = grow_lesion(as_tensor(moving), torch.zeros(1, 1, *shape), as_tensor(guide), 0.08, 2.0)[0, 0].numpy() > 0.5
    assert not (found & ~lesion).any()  # the 3-voxel mean's spill over the edge is trimmed
    assert (found & lesion).sum() >= 0.98 * lesion.sum()  # core and oedema (a few corner voxels of the digital ball fall short)


def test_field_of_view_drops_the_fill_of_a_cropped_scan():
    import SimpleITK as sitk

    from medsuite.io import Volume

    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    fixed = Volume(np.ones((20, 20, 20), np.float32), affine)
    moving = np.full((20, 20, 20), 0.5, np.float32)
    moving[:, :, 12:] = 0.0  # the zero fill of a resampled, cropped scan
    inside = field_of_view(Volume(moving, affine), fixed, sitk.AffineTransform(3))
    assert inside[10, 10, 8] and not inside[10, 10, 10] and not inside[10, 10, 15]  # 4 mm (2 voxels) in from the fill
    assert not inside[0, 10, 8]  # and from the grid's edge


def test_inpainting_runs_on_the_lesion_box_only():
    torch.manual_seed(0)
    model = GIRNet(RegistrationConfig()).eval()
    torch.nn.init.constant_(model.inpainter.head.conv.bias, 0.7)  # a fill that differs from the image
    image, guide = torch.rand(1, 1, 40, 40, 40), torch.rand(1, 1, 40, 40, 40)
    lesion = torch.zeros_like(image)
    with torch.no_grad():
        assert torch.equal(inpaint_around(model, image, lesion, guide), image)  # no lesion: no pass at all
        lesion[..., 18:22, 18:22, 18:22] = 1.0
        filled = inpaint_around(model, image, lesion, guide, margin=4)
    inside = lesion.bool()
    assert not torch.allclose(filled[inside], image[inside])
    assert torch.equal(filled[~inside], image[~inside])


def test_training_writes_a_resumable_checkpoint(tmp_path):
    config = RegistrationConfig()
    config.train.pairs, config.train.resolution_mm, config.train.iterations, config.train.checkpoint_every = 1, 8.0, 2, 1
    final = train(config, tmp_path)
    assert final == tmp_path / FINAL and len((tmp_path / "log.jsonl").read_text().splitlines()) == 2
    config.train.iterations = 3
    train(config, tmp_path, resume=True)  # continues at iteration 2: one more line
    lines = (tmp_path / "log.jsonl").read_text().splitlines()
    assert len(lines) == 3 and '"iteration": 3' in lines[-1]
    model, _ = load_model(tmp_path / FINAL, RegistrationConfig())
    assert isinstance(model, GIRNet) and not model.training
    from medsuite.checkpoints import load_checkpoint

    assert load_checkpoint(final, kind="registration")["config"]["intensity"] == config.intensity.model_dump(mode="json")


def test_training_runs_in_two_stages(tmp_path):
    """The velocity net alone for registration_warmup iterations, then frozen while inpainter and generator learn."""
    config = RegistrationConfig()
    config.train.pairs, config.train.resolution_mm, config.train.iterations, config.train.registration_warmup = 1, 8.0, 2, 2
    torch.manual_seed(config.train.seed)
    untouched = GIRNet(config).state_dict()  # train() seeds the same way: its initial weights
    train(config, tmp_path / "first_stage")
    first = load_model(tmp_path / "first_stage" / FINAL, RegistrationConfig())[0].state_dict()
    assert all(torch.equal(first[k], v) for k, v in untouched.items() if not k.startswith("velocity_net"))
    assert not all(torch.equal(first[k], v) for k, v in untouched.items() if k.startswith("velocity_net"))
    config.train.iterations = 4
    train(config, tmp_path / "both")
    lines = [json.loads(line) for line in (tmp_path / "both" / "log.jsonl").read_text().splitlines()]
    assert [sorted(k for k in line if k in ("reg", "inp", "gen")) for line in lines] == [["reg"], ["reg"], ["gen", "inp"], ["gen", "inp"]]
    both = load_model(tmp_path / "both" / FINAL, RegistrationConfig())[0].state_dict()
    assert all(torch.equal(both[k], v) for k, v in first.items() if k.startswith("velocity_net"))
    assert not all(torch.equal(both[k], v) for k, v in first.items() if k.startswith("inpainter"))
    assert not all(torch.equal(both[k], v) for k, v in first.items() if k.startswith("mask_generator"))


def test_one_intensity_rule_from_the_data_layer_stored_in_the_checkpoint():
    """Training and inference scale with medsuite.data.transforms; inference with a checkpoint uses the rule
    stored in it, whatever the pipeline says."""
    from medsuite.data.intensity import IntensityRule
    from medsuite.registration.config import REGISTRATION_INTENSITY

    _, config = load_model(SHIPPED_CHECKPOINT, RegistrationConfig(intensity=IntensityRule(kind="minmax")))
    assert config.intensity == REGISTRATION_INTENSITY
    assert load_model(None, RegistrationConfig(intensity=IntensityRule(kind="minmax")))[1].intensity.kind == "minmax"


def test_the_removed_schedule_option_is_refused():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="schedule"):
        RegistrationConfig.model_validate({"train": {"schedule": "co-learning"}})
    with pytest.raises(ValidationError, match="registration_warmup"):
        RegistrationConfig.model_validate({"train": {"registration_warmup": 0}})  # the velocity net would never learn


def test_a_checkpoint_holding_a_removed_option_upgrades_with_its_weights_unchanged(tmp_path):
    from medsuite.checkpoints import load_checkpoint, load_model as load_checkpoint_model, main as checkpoints_main, save_checkpoint, weights_digest
    from medsuite.errors import MedsuiteError

    shipped = load_checkpoint_model(SHIPPED_CHECKPOINT, "registration")  # the shipped one is upgraded already
    assert "schedule" not in shipped.payload["config"]["train"] and shipped.payload["retired_config"] == {"train.schedule": "staged"}
    config = shipped.payload["config"]
    old = dict(config, train=dict(config["train"], schedule="co-learning"))
    path = save_checkpoint(tmp_path / "old.pt", kind="registration", state=shipped.payload["state"], config=old)
    with pytest.raises(MedsuiteError, match="train.schedule.*medsuite.checkpoints upgrade"):
        load_checkpoint_model(path, "registration")
    assert checkpoints_main(["upgrade", str(path)]) == 0
    upgraded = load_checkpoint(path, kind="registration")
    assert upgraded["retired_config"] == {"train.schedule": "co-learning"} and upgraded["config"] == config
    assert weights_digest({"state": upgraded["state"]}) == weights_digest({"state": shipped.payload["state"]})
    assert isinstance(load_checkpoint_model(path, "registration").model, GIRNet)


def test_pipeline_yaml_names_every_loss_weight():
    from medsuite.config import PIPELINES_DIR, load_pipeline, read_yaml

    config = load_pipeline(PIPELINES_DIR / "registration_girnet.yaml", RegistrationConfig)
    assert set(read_yaml(PIPELINES_DIR / "registration_girnet.yaml")["losses"]) == set(type(config.losses).model_fields)
    assert config.losses.smooth > 0 and config.backbone.kind == "cnn" and config.instance.mask_level in config.instance.levels


@pytest.mark.parametrize(("working_mm", "finest"), [(0.0, (24, 20, 16)), (2.0, (12, 10, 8))])
def test_working_mm_optimises_a_fine_pair_on_a_coarser_grid(monkeypatch, working_mm: float, finest: tuple[int, ...]):
    # instance.working_mm 2 on a 1 mm pair: every level (and the velocity grid) twice as coarse, while the
    # fields, the mask and the fill come back on the input's grid.
    import medsuite.registration.instance as instance

    seen: list[tuple[int, ...]] = []
    lncc = instance.masked_lncc_loss
    monkeypatch.setattr(instance, "masked_lncc_loss", lambda a, *rest: seen.append(tuple(a.shape[2:])) or lncc(a, *rest))
    config = RegistrationConfig()
    config.instance.levels, config.instance.steps, config.instance.mask_level, config.instance.working_mm = [2, 1], [2, 2], 2, working_mm
    torch.manual_seed(0)
    fixed = torch.rand(1, 1, 24, 20, 16)
    result = instance.optimise_pair(fixed, fixed.roll(1, 2), config, voxel_mm=1.0)
    assert max(seen) == finest
    assert result.forward.shape[2:] == result.lesion.shape[2:] == result.inpainted.shape[2:] == (24, 20, 16)
