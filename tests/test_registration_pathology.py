"""The pathology family: every case has the lesion it names, in the place it names, with an exact answer."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from medsuite.registration.pathology import FAMILY, PathologyCase, make_family_pair


@pytest.mark.parametrize("name", ["glioblastoma (hyper rim, necrosis, oedema, mass effect)", "resection cavity (CSF, collapse)", "healthy"])
def test_family_case_has_its_lesion_and_a_consistent_answer(name):
    case = FAMILY[name]
    pair = make_family_pair(case, 5, resolution_mm=4.0)
    lesion = pair.lesion_mask.array > 0
    if case.kind == "healthy":
        assert not lesion.any() and not pair.lesion_fixed.array.any()
    else:
        low, high = case.volume_ml
        assert low * 0.7 <= pair.parameters["drawn_volume_ml"] <= high
        assert pair.parameters["lesion_volume_ml"] >= 0.5 * low  # the mask holds the drawn lesion (oedema adds to it)
        inside = ndimage.binary_fill_holes(pair.moving_labels.array > 0)
        assert lesion[inside].sum() >= 0.9 * lesion.sum()
    # The true field maps the fixed labels onto the moving ones (outside the lesion) up to nearest-neighbour error.
    moving_world = pair.fixed.affine[:3, :3] @ np.indices(pair.fixed.spatial_shape).reshape(3, -1) + pair.fixed.affine[:3, 3:4]
    moving_world = moving_world + pair.displacement.array.reshape(-1, 3).T
    index = np.linalg.solve(pair.moving.affine[:3, :3], moving_world - pair.moving.affine[:3, 3:4]).reshape(3, *pair.fixed.spatial_shape)
    carried = ndimage.map_coordinates(pair.moving_labels.array, index, order=0)
    keep = (pair.lesion_fixed.array == 0) & (pair.fixed_labels.array > 0)
    assert np.mean(carried[keep] == pair.fixed_labels.array[keep]) > 0.9


def test_tumour_contrast_follows_the_case():
    hypo, hyper = (make_family_pair(PathologyCase("tumour", kind, volume_ml=(20, 20), location="deep"), 2, resolution_mm=4.0) for kind in ("hypo", "hyper"))
    for pair, sign in ((hypo, -1), (hyper, 1)):
        scale = pair.parameters["intensity_scale"]
        wm = np.median(pair.moving.array[(pair.moving_labels.array == 2) & (pair.lesion_mask.array == 0)]) / scale
        tumour = np.median(pair.moving.array[pair.lesion_mask.array > 0]) / scale
        assert sign * (tumour - wm) > 0


def test_given_lesion_mask_is_kept_and_no_mask_is_generated():
    from medsuite.commands.register import _config
    from medsuite.registration.inference import lesion_summary, register_volumes

    pair = make_family_pair(FAMILY["low-grade glioma (hypo, solid), deep"], 7, resolution_mm=4.0)
    config = _config(None)
    given = pair.lesion_mask.array > 0
    result = register_volumes(pair.fixed, pair.moving, config, steps=4, lesion_mask=given.astype(np.uint8))
    assert np.array_equal(result.lesion, given)
    assert lesion_summary(result, config, given=True).startswith("given by --lesion-mask")
    empty = register_volumes(pair.fixed, pair.moving, config.model_copy(update={"instance": config.instance.model_copy(update={"min_lesion_ml": 1e6})}), steps=4)
    assert not empty.lesion.any() and lesion_summary(empty, config, given=False).startswith("no lesion found")
