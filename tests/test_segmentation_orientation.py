"""The in-plane orientation search: exact round trips, the choice of the orientation a model is sure of, and
results mapped back onto the input grid."""

from __future__ import annotations

import itertools

import torch
from torch import nn

from medsuite.segmentation.config import SegmentationConfig
from medsuite.segmentation.orientation import AS_GIVEN, ORIENTATIONS, middle_third, predict_oriented
from medsuite.segmentation.predict import predict_ensemble

torch.set_num_threads(1)


class SureInTopLeft(nn.Module):
    """Two-class scores from each pixel's intensity, confident in the top-left quadrant of its input and
    hesitant elsewhere: bright pixels are class 1 wherever they are, but only there with low entropy."""

    def __init__(self):
        super().__init__()
        self.gain = nn.Parameter(torch.tensor(8.0))  # a parameter tells the inferer the model's device

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        weight = torch.full((h, w), 0.3)
        weight[: h // 2, : w // 2] = 10.0
        score = weight * (self.gain * x - 4.0)
        return torch.cat([-score, score], dim=1)


def config() -> SegmentationConfig:
    return SegmentationConfig.model_validate({"data": {"inplane": "native", "image_size": [32, 32]}, "postprocess": {"largest_component": False}})


def square_bottom_right() -> torch.Tensor:
    image = torch.zeros(32, 32, 6)
    image[20:27, 22:29] = 1.0
    return image


def test_every_orientation_round_trips_and_all_eight_differ():
    x = torch.arange(5 * 7 * 3, dtype=torch.float32).reshape(5, 7, 3)
    for axes in [(0, 1), (1, 2), (0, 2)]:
        for orientation in ORIENTATIONS:
            assert torch.equal(orientation.undo(orientation.apply(x, axes), axes), x), orientation.name
    square = torch.arange(36.0).reshape(6, 6)
    outputs = [o.apply(square, (0, 1)) for o in ORIENTATIONS]
    assert all(not torch.equal(a, b) for a, b in itertools.combinations(outputs, 2))
    assert len({o.name for o in ORIENTATIONS}) == 8


def test_middle_third_keeps_at_least_one_slice():
    assert middle_third(torch.zeros(4, 4, 9), 2).shape[2] == 3
    assert middle_third(torch.zeros(4, 4, 2), 2).shape[2] == 2
    assert middle_third(torch.zeros(1, 4, 4), 0).shape[0] == 1


def test_search_picks_the_orientation_the_model_is_sure_of_and_maps_back():
    members = [(SureInTopLeft(), config())]
    image = square_bottom_right()
    given, given_info = predict_oriented(members, image, slice_axis=2, tta=False, search=False)
    searched, info = predict_oriented(members, image, slice_axis=2, tta=False, search=True)
    assert given_info == {"searched": False, "chosen": AS_GIVEN.name}
    chosen = next(o for o in ORIENTATIONS if o.name == info["chosen"])
    moved = chosen.apply(image, (0, 1))
    assert moved[:16, :16].sum() == image.sum()  # the square now lies where the model is sure
    assert info["entropy_middle_third"][chosen.name] < info["entropy_middle_third"][AS_GIVEN.name]
    truth = (image > 0.5).to(searched.labels.dtype)
    assert torch.equal(searched.labels, truth) and torch.equal(given.labels, truth)  # on the input grid
    assert searched.probabilities.shape == given.probabilities.shape
    inside = truth.bool()
    assert bool((searched.probabilities[1][inside] > given.probabilities[1][inside]).all())


def test_no_search_is_the_plain_prediction():
    members = [(SureInTopLeft(), config())]
    image = square_bottom_right()
    plain = predict_ensemble(members, image, slice_axis=2, tta=False)
    given, _ = predict_oriented(members, image, slice_axis=2, tta=False, search=False)
    assert torch.equal(plain.probabilities, given.probabilities) and torch.equal(plain.labels, given.labels)
