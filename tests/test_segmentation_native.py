"""Native in-plane mode: training patches cut image and label alike and find the heart; sliding-window
prediction stitches windows back onto the full slice grid."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from medsuite.segmentation.config import SegmentationConfig
from medsuite.segmentation.data import slice_transform
from medsuite.segmentation.predict import predict_volume

torch.set_num_threads(1)


def native_config(**train) -> SegmentationConfig:
    return SegmentationConfig.model_validate({"data": {"inplane": "native", "image_size": [32, 32]}, "train": train})


def test_training_patches_cut_image_and_label_alike_and_mostly_hold_foreground():
    label = np.zeros((1, 120, 100), np.int64)
    label[0, 70:80, 20:34] = 3  # a small structure off centre: a centre crop would miss it
    image = label.astype(np.float32) / 3.0
    transform = slice_transform(native_config(augment=True), train=True)
    transform.set_random_state(seed=0)
    with_foreground = 0
    for _ in range(40):
        out = transform({"image": torch.as_tensor(image), "label": torch.as_tensor(label)})
        patch_image, patch_label = np.asarray(out["image"]), np.asarray(out["label"])
        assert patch_image.shape == patch_label.shape == (1, 32, 32)
        # the same crop (and the same affine augmentation) went to both: image is the label's indicator
        assert np.mean((patch_image > 0.5) == (patch_label == 3)) > 0.97
        with_foreground += bool((patch_label == 3).any())
    assert with_foreground >= 16  # half the patches are centred on a labelled pixel


def test_zoom_augmentation_enlarges_the_heart_in_image_and_label_alike():
    label = np.zeros((1, 100, 100), np.int64)
    label[0, 45:55, 45:55] = 3  # 100 pixels; a patch centred on it holds it whole, zoomed or not
    image = label.astype(np.float32) / 3.0
    plain = dict(augment=True, zoom_range=(1.0, 1.0))
    zoomed = dict(augment=True, zoom_range=(2.0, 2.0), zoom_prob=1.0)
    areas = {}
    for name, train in (("plain", plain), ("zoomed", zoomed)):
        transform = slice_transform(native_config(**train), train=True)
        transform.set_random_state(seed=0)
        outs = [transform({"image": torch.as_tensor(image), "label": torch.as_tensor(label)}) for _ in range(10)]
        areas[name] = max([float((np.asarray(o["label"]) == 3).sum()) for o in outs])
        assert all(np.mean((np.asarray(o["image"]) > 0.5) == (np.asarray(o["label"]) == 3)) > 0.97 for o in outs)
    assert 3.0 < areas["zoomed"] / areas["plain"] < 5.0  # twice the side, four times the area (give or take the affine scale)


def test_sliding_window_prediction_equals_the_pointwise_model_on_the_whole_slice():
    """A pointwise (1x1) model gives the same logits in every window, so the stitched labels must equal the
    model applied to the whole slice: windows are placed and blended on the right pixels."""
    torch.manual_seed(0)
    model = nn.Conv2d(1, 4, 1)
    volume = torch.rand(70, 45, 3)  # larger than one 32x32 window in-plane, not a multiple of it
    labels = predict_volume(model, volume, native_config())
    expected = model(volume.movedim(2, 0)[:, None]).argmax(1).movedim(0, 2)
    assert labels.shape == volume.shape
    assert torch.equal(labels, expected)


def test_largest_component_postprocessing_drops_islands():
    """A pointwise model that calls every bright pixel LV: with postprocessing only the big blob stays."""
    model = nn.Conv2d(1, 4, 1)
    with torch.no_grad():
        model.weight.zero_()
        model.bias.copy_(torch.tensor([0.5, -9.0, -9.0, 0.0]))
        model.weight[3, 0] = 1.0  # LV logit = intensity, background 0.5: LV where intensity > 0.5
    volume = torch.zeros(40, 40, 3)
    volume[10:20, 10:20, :] = 1.0  # the heart
    volume[30:32, 30:32, 1] = 1.0  # an island
    config = native_config().model_copy(update={"postprocess": {"largest_component": True}})
    config = SegmentationConfig.model_validate(config.model_dump())
    with_post = predict_volume(model, volume, config)
    without = predict_volume(model, volume, native_config())
    assert int((without == 3).sum()) == 300 + 4 and int((with_post == 3).sum()) == 300
