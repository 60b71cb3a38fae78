"""Pure rendering functions of the review station, checked on arrays with known numbers."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from medsuite.io import Volume
from medsuite.viewer.compare import compare_grey, flicker_png, to_png
from medsuite.data.labels import label_volumes_ml
from medsuite.viewer.overlay import label_colour, overlay_labels
from medsuite.viewer.slicing import (
    click_to_voxel,
    crosshair_at,
    crosshair_pixel,
    display_shape,
    plane_slice,
    plane_spacing,
    to_canonical,
    with_aspect,
    world_to_voxel,
)
from medsuite.viewer.views import render_view
from medsuite.viewer.windowing import CT_PRESETS, apply_window, auto_window, window_for

LAS = np.array([[-2.0, 0, 0, 10.0], [0, 1.0, 0, -5.0], [0, 0, 4.0, 7.0], [0, 0, 0, 1]])


def test_window_maps_level_and_width_to_grey_levels() -> None:
    hu = np.array([-1000.0, 0.0, 40.0, 80.0, 1000.0])
    assert apply_window(hu, *CT_PRESETS["CT brain"]).tolist() == [0, 0, 128, 255, 255]
    assert CT_PRESETS["CT lung"] == (-600.0, 1500.0) and CT_PRESETS["CT bone"] == (400.0, 1800.0)
    assert apply_window(np.array([-600.0]), *CT_PRESETS["CT lung"]).tolist() == [128]


def test_auto_window_spans_foreground_percentiles() -> None:
    volume = np.zeros((10, 10, 11), np.float32)
    volume[:, :, 1:] = np.arange(1, 1001, dtype=np.float32).reshape(10, 10, 10)  # zeros are background
    level, width = auto_window(volume)
    lo, hi = np.percentile(np.arange(1, 1001), [1, 99])
    assert level == pytest.approx((lo + hi) / 2) and width == pytest.approx(hi - lo)
    assert window_for("CT bone", volume) == (400.0, 1800.0)


def test_canonical_reorientation_keeps_world_positions() -> None:
    array = np.arange(5 * 4 * 3, dtype=np.float32).reshape(5, 4, 3)
    vol = Volume(array=array, affine=LAS)
    canonical = to_canonical(vol)
    assert np.all(np.diag(canonical.affine)[:3] > 0)
    # The voxel at a world point holds the same value before and after.
    world = np.array([6.0, -3.0, 11.0])  # voxel (2, 2, 1) of the LAS volume
    before = array[world_to_voxel(LAS, world, array.shape)]
    after = canonical.array[world_to_voxel(canonical.affine, world, canonical.array.shape)]
    assert before == after == array[2, 2, 1]


def test_planes_are_in_radiological_screen_orientation() -> None:
    # value = 100 i + 10 j + k in canonical RAS indices
    i, j, k = np.meshgrid(np.arange(4), np.arange(5), np.arange(6), indexing="ij")
    vol = (100 * i + 10 * j + k).astype(np.float32)
    axial = plane_slice(vol, "axial", 2)
    assert axial.shape == (5, 4)  # rows = y (A->P), columns = x
    assert axial[0, 0] == 100 * 3 + 10 * 4 + 2  # top-left: most anterior, patient right
    coronal = plane_slice(vol, "coronal", 1)
    assert coronal.shape == (6, 4) and coronal[0, 0] == 100 * 3 + 10 * 1 + 5  # superior, patient right
    sagittal = plane_slice(vol, "sagittal", 0)
    assert sagittal.shape == (6, 5) and sagittal[0, 0] == 10 * 4 + 5  # superior, anterior


def test_anisotropic_voxels_get_true_aspect_and_clicks_map_back() -> None:
    spacing = np.array([1.0, 1.0, 3.0])
    assert plane_spacing(spacing, "coronal") == (3.0, 1.0)
    assert display_shape((10, 20), (3.0, 1.0)) == (30, 20)  # 30 mm by 20 mm on screen
    image = np.zeros((10, 20), np.uint8)
    assert with_aspect(image, (3.0, 1.0)).shape == (30, 20)
    shape = (20, 16, 10)
    voxel = (5, 7, 3)
    row, col = crosshair_pixel("coronal", voxel, shape)
    # a click at the centre of that pixel in a 3x taller display returns the same voxel
    assert click_to_voxel("coronal", 7, int((row + 0.5) * 3), col, shape, (30, 20)) == voxel


def test_crosshair_reports_world_mm_and_value() -> None:
    vol = to_canonical(Volume(array=np.arange(60, dtype=np.float32).reshape(5, 4, 3), affine=LAS))
    cross = crosshair_at(vol, (0, 2, 1))
    assert cross.world_mm == pytest.approx((2.0, -3.0, 11.0))  # canonical i=0 is LAS i=4: x = -8 + 10
    assert cross.value == 4 * 12 + 2 * 3 + 1


def test_render_view_draws_the_crosshair_at_true_aspect() -> None:
    vol = np.full((8, 6, 4), 50.0, np.float32)
    rgb = render_view(vol, np.array([1.0, 1.0, 2.0]), "coronal", (2, 3, 1), 50.0, 100.0, scale=1.0)
    assert rgb.shape == (8, 8, 3) and rgb.dtype == np.uint8
    # voxel z=1 of 4 (2 mm) -> screen row (4-1-1 + 0.5) * 2 = 5; x=2 of 8 -> column 8-1-2 = 5
    yellow = (rgb == (255, 215, 0)).all(-1)
    assert np.flatnonzero(yellow[5]).tolist() == [0, 2, 4, 6] and np.flatnonzero(yellow[:, 5]).tolist() == [0, 2, 4, 6]
    assert tuple(rgb[1, 1]) == (128, 128, 128)  # grey of level 50 elsewhere
    enlarged = render_view(vol, np.array([1.0, 1.0, 2.0]), "coronal", (2, 3, 1), 50.0, 100.0)
    assert enlarged.shape == (256, 256, 3)  # small views are enlarged to 256 px, crosshair still 1 px
    assert np.flatnonzero((enlarged == (255, 215, 0)).all(-1)[:, 0]).tolist() == [int(2.5 * 64)]  # centre of voxel row 2 of 4, 64 px each


def test_label_overlay_blends_and_outlines() -> None:
    rgb = np.zeros((6, 6, 3), np.uint8)
    labels = np.zeros((6, 6), np.int16)
    labels[1:5, 1:5] = 1
    blended = overlay_labels(rgb, labels, opacity=0.5)
    assert tuple(blended[2, 2]) == tuple(int(c * 0.5 + 0.5) for c in label_colour(1))
    assert tuple(blended[0, 0]) == (0, 0, 0)
    outline = overlay_labels(rgb, labels, outline=True)
    assert tuple(outline[1, 1]) == label_colour(1) and tuple(outline[2, 2]) == (0, 0, 0)
    assert label_colour(1) != label_colour(2) != label_colour(9)


def test_label_volumes_in_ml() -> None:
    labels = np.zeros((10, 10, 10), np.uint8)
    labels[:2] = 1  # 200 voxels
    labels[5:] = 3  # 500 voxels
    rows = label_volumes_ml(labels, voxel_volume_ml=0.0045, names={1: "RV"})
    assert rows == [
        {"label": 1, "name": "RV", "voxels": 200, "volume_ml": 0.9},
        {"label": 3, "name": "label 3", "voxels": 500, "volume_ml": 2.25},
    ]


def test_checkerboard_difference_and_fade() -> None:
    a = np.zeros((8, 8), np.uint8)
    b = np.full((8, 8), 200, np.uint8)
    board = compare_grey(a, b, "checkerboard", tiles=2)
    assert board[0, 0] == 0 and board[0, 7] == 200 and board[7, 7] == 0
    assert np.all(compare_grey(a, b, "difference") == 200)
    assert np.all(compare_grey(a, b, "fade", fade=0.25) == 50)
    with pytest.raises(ValueError):
        compare_grey(a, b[:4], "fade")


def test_png_is_lossless_and_flicker_is_animated() -> None:
    rgb = np.random.default_rng(0).integers(0, 255, (7, 9, 3), dtype=np.uint8)
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(to_png(rgb)))), rgb)
    animated = Image.open(io.BytesIO(flicker_png([rgb, 255 - rgb], 500)))
    assert animated.format == "PNG" and animated.n_frames == 2
    animated.seek(1)
    assert np.array_equal(np.asarray(animated.convert("RGB")), 255 - rgb)


def test_grid_view_draws_a_millimetre_grid_moved_by_the_field() -> None:
    from medsuite.viewer.views import grid_view

    vol = np.zeros((16, 16, 8), np.float32)
    still = grid_view(vol, np.array([1.0, 1.0, 2.0]), "axial", (8, 8, 4), 0.0, 1.0, np.zeros((16, 16, 8, 3), np.float32), grid_mm=4.0)
    assert still.shape == (256, 256, 3)  # 16 mm shown at 16 px/mm
    cyan = (still == (0, 220, 255)).all(-1)
    assert np.flatnonzero(cyan.sum(axis=1) > 250).tolist() == list(range(0, 256, 64))  # a line every 4 mm (crosshair crosses it)
    field = np.zeros((16, 16, 8, 3), np.float32)
    field[..., 1] = -1.0  # one voxel (1 mm) posterior: lines move 16 px down the screen
    moved = grid_view(vol, np.array([1.0, 1.0, 2.0]), "axial", (8, 8, 4), 0.0, 1.0, field, grid_mm=4.0)
    assert np.flatnonzero((moved == (0, 220, 255)).all(-1).sum(axis=1) > 250).tolist() == [16, 80, 144, 208]
