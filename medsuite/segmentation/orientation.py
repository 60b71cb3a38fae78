"""Test-time in-plane orientation search for 2D slice models.

A short-axis slice reaches medsuite in whatever in-plane orientation its scanner and converter left it: ACDC's
own HDF5 volumes already mix quarter turns, and the M&Ms-2 example arrives transposed relative to what the
shipped model learned (its RV was labelled in 4 of 9 LV slices). The model was not trained on quarter turns or
transposes, so instead of averaging over them (which would blend in wrong answers, as mirroring did) the search
picks the one in-plane orientation under which the model is most certain:

1. the middle third of the slices (the ventricles, where the heart is) is predicted under each of the 8
   quarter-turn x transpose orientations (the dihedral group of the square);
2. the orientation with the lowest mean predictive entropy inside the predicted heart wins (no heart found
   counts as the worst);
3. the whole volume is predicted once in that orientation and mapped back to the input grid exactly (quarter
   turns and transposes are permutations of voxels, so no label can move).

Measured with the shipped neunet_acdc.pt (docs/segmentation.md has the commands): on the acdc_h5 validation
volumes mean Dice 0.880 as given -> 0.890 (3 of 16 volumes turned, 0.796 -> 0.915, 0.809 -> 0.850, 0.941 ->
0.949; the middle third was chosen over the whole volume there, which turned one more and lost 0.016); on the
test split 0.894 -> 0.893 (6 of 32 turned, the largest change -0.029) and LVEF error 4.6 -> 5.5 points, since
ED and ES of one patient may be turned differently. So it is off by default (`segment --orientation-search`):
it is for stacks whose in-plane orientation differs from the training data's, such as the M&Ms-2 example
(RV in 4 of 9 LV slices as given, 9 of 9 searched). Cost: 8 x 1/3 + 1 passes, about 2.7x the CPU time.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from medsuite.segmentation.predict import Member, Prediction, predict_ensemble
from medsuite.segmentation.uncertainty import entropy_inside_heart


@dataclass(frozen=True)
class Orientation:
    """Transpose the two in-plane axes (first), then turn ``quarter_turns`` x 90 degrees."""

    quarter_turns: int
    transposed: bool

    @property
    def name(self) -> str:
        return f"{'transposed, ' if self.transposed else ''}{90 * self.quarter_turns} degrees"

    def apply(self, x: torch.Tensor, axes: tuple[int, int]) -> torch.Tensor:
        if self.transposed:
            x = x.transpose(*axes)
        return torch.rot90(x, self.quarter_turns, dims=axes)

    def undo(self, x: torch.Tensor, axes: tuple[int, int]) -> torch.Tensor:
        x = torch.rot90(x, -self.quarter_turns, dims=axes)
        return x.transpose(*axes) if self.transposed else x


AS_GIVEN = Orientation(0, False)
ORIENTATIONS = tuple(Orientation(k, t) for t in (False, True) for k in range(4))


def in_plane_axes(slice_axis: int) -> tuple[int, int]:
    a, b = (axis for axis in range(3) if axis != slice_axis)
    return a, b


def middle_third(image: torch.Tensor, slice_axis: int) -> torch.Tensor:
    n = image.shape[slice_axis]
    return image.narrow(slice_axis, n // 3, max(1, n - 2 * (n // 3)))


def choose_orientation(members: Sequence[Member], image: torch.Tensor, *, slice_axis: int) -> tuple[Orientation, dict[str, float]]:
    """The orientation of lowest entropy on the middle third of the slices, and every candidate's entropy."""
    slab, axes = middle_third(image, slice_axis), in_plane_axes(slice_axis)
    entropies = {}
    for orientation in ORIENTATIONS:
        entropy = entropy_inside_heart(predict_ensemble(members, orientation.apply(slab, axes), slice_axis=slice_axis, tta=False))
        entropies[orientation.name] = entropy
    best = min(ORIENTATIONS, key=lambda o: (math.inf if math.isnan(entropies[o.name]) else entropies[o.name]))
    return best, entropies


def predict_oriented(members: Sequence[Member], image: torch.Tensor, *, slice_axis: int, tta: bool, search: bool) -> tuple[Prediction, dict[str, object]]:
    """``predict_ensemble`` on the input as given, or (``search``, 2D members) in the orientation the search
    chooses, mapped back to the input grid; with what was chosen and why, for report.json."""
    if not search or any(config.model.spatial_dims == 3 for _, config in members):
        return predict_ensemble(members, image, slice_axis=slice_axis, tta=tta), {"searched": False, "chosen": AS_GIVEN.name}
    best, entropies = choose_orientation(members, image, slice_axis=slice_axis)
    axes = in_plane_axes(slice_axis)
    prediction = predict_ensemble(members, best.apply(image, axes), slice_axis=slice_axis, tta=tta)
    shifted = (axes[0] + 1, axes[1] + 1)  # probabilities carry the class axis first
    restored = Prediction(best.undo(prediction.probabilities, shifted), best.undo(prediction.labels, axes), [best.undo(m, axes) for m in prediction.member_labels])
    return restored, {"searched": True, "chosen": best.name, "entropy_middle_third": {k: round(v, 4) for k, v in entropies.items()}}
