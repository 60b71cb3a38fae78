"""4-chamber and 2-chamber planes of a short-axis stack: geometry on a phantom whose axes are known."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medsuite.data.samples import oblique_affine
from medsuite.io import write_nifti
from medsuite.viewer.longaxis import plane_grid, sample, screen_plane, standard_planes, unit
from medsuite.viewer.planes import Panel, grid_letters, long_axis_panels, panels_for
from medsuite.viewer.views import plane_click_to_voxel, render_plane

NAMES = {1: "RV", 2: "MYO", 3: "LV"}
SHAPE = (64, 64, 12)
AFFINE = oblique_affine(spacing=(2.0, 2.0, 8.0), angles_deg=(30.0, -20.0, 40.0), origin=(-60.0, -50.0, -40.0))
# The LV long axis is tilted 8 degrees from the stack normal (a real plan is never perfect); the RV
# lies 35 mm from it, towards a known direction.
NORMAL = unit(AFFINE[:3, 2])
TILT = unit(np.cross(NORMAL, AFFINE[:3, 0]))
AXIS = unit(np.cos(np.radians(8)) * NORMAL + np.sin(np.radians(8)) * TILT)
TOWARDS_RV = unit(AFFINE[:3, 0] - (AFFINE[:3, 0] @ AXIS) * AXIS)


def angle(a: np.ndarray, b: np.ndarray) -> float:
    """Angle in degrees between two plane normals (a normal's sign is arbitrary)."""
    return float(np.degrees(np.arccos(np.clip(abs(unit(a) @ unit(b)), 0, 1))))


def phantom() -> tuple[np.ndarray, np.ndarray]:
    """(image, labels) of a stack with an LV cylinder along AXIS and an RV cylinder beside it."""
    ijk = np.stack(np.meshgrid(*[np.arange(n, dtype=float) for n in SHAPE], indexing="ij"), axis=-1)
    world = ijk @ AFFINE[:3, :3].T + AFFINE[:3, 3]
    centre = AFFINE[:3, :3] @ ((np.array(SHAPE) - 1) / 2) + AFFINE[:3, 3]

    def distance_to(line_point: np.ndarray) -> np.ndarray:
        rel = world - line_point
        return np.linalg.norm(rel - (rel @ AXIS)[..., None] * AXIS, axis=-1)

    labels = np.zeros(SHAPE, np.uint8)
    labels[distance_to(centre + 35.0 * TOWARDS_RV) <= 12.0] = 1
    labels[distance_to(centre) <= 15.0] = 3
    labels[:, :, [0, -1]] = 0  # base and apex slices empty, as in a real mask
    return (100.0 + 500.0 * (labels > 0)).astype(np.float32), labels


def test_planes_from_the_mask_hold_the_long_axis_and_the_rv_within_a_degree() -> None:
    image, labels = phantom()
    planes = standard_planes(SHAPE, AFFINE, labels, NAMES, None, 2)
    assert [title for title, _ in planes.values()] == ["4-chamber (from mask)", "2-chamber (from mask)"]
    four, two = planes["4-chamber"][1], planes["2-chamber"][1]
    assert angle(four.normal, np.cross(AXIS, TOWARDS_RV)) < 1.0  # holds the axis and the RV centroid
    assert angle(two.normal, TOWARDS_RV) < 1.0  # holds the axis, orthogonal to the 4-chamber plane
    assert abs(angle(four.normal, two.normal) - 90.0) < 1.0
    assert angle(four.normal, NORMAL) > 80.0 and angle(two.normal, NORMAL) > 80.0  # long-axis planes
    for plane in (four, two):  # screen axes: orthonormal, right-handed with the normal
        assert np.allclose([plane.right @ plane.down, plane.right @ plane.right, plane.down @ plane.down], [0, 1, 1], atol=1e-9)

    # Resampled on the planes: the 4-chamber view cuts both ventricles, the 2-chamber view the LV only.
    seen = {view: set(np.unique(sample(labels, AFFINE, plane_grid(plane, SHAPE, AFFINE, 2.0), nearest=True)).tolist()) for view, (_, plane) in planes.items()}
    assert seen["4-chamber"] == {0, 1, 3} and seen["2-chamber"] == {0, 3}


def test_a_long_axis_image_beside_the_stack_gives_the_scanners_4_chamber_plane(tmp_path: Path) -> None:
    image, labels = phantom()
    sax = write_nifti(tmp_path / "sax_ed.nii.gz", image, AFFINE)
    centre = AFFINE[:3, :3] @ ((np.array(SHAPE) - 1) / 2) + AFFINE[:3, 3]
    # A 4-chamber acquisition rotated 5 degrees about the long axis from the mask's plane.
    four = unit(np.cross(AXIS, TOWARDS_RV))
    tilted = unit(np.cos(np.radians(5)) * four + np.sin(np.radians(5)) * np.cross(AXIS, four))
    lax = np.eye(4)
    lax[:3, 0], lax[:3, 1], lax[:3, 2] = 1.2 * AXIS, 1.2 * np.cross(tilted, AXIS), tilted
    lax[:3, 3] = centre - lax[:3, :2] @ np.array([49.5, 49.5])
    write_nifti(tmp_path / "lax_4c_ed.nii.gz", np.ones((100, 100, 1), np.float32), lax)
    far = lax.copy()
    far[:3, 3] += 500 * tilted  # a plane that misses the stack: another frame, ignored
    write_nifti(tmp_path / "lax_2c_ed.nii.gz", np.ones((100, 100, 1), np.float32), far)

    planes = standard_planes(SHAPE, AFFINE, labels, NAMES, sax, 2)
    assert planes["4-chamber"][0] == "4-chamber (plane of lax_4c_ed.nii.gz)"
    assert angle(planes["4-chamber"][1].normal, tilted) < 1.0
    assert planes["2-chamber"][0] == "2-chamber (from mask)"
    assert abs(angle(planes["2-chamber"][1].normal, tilted) - 90.0) < 1.0
    assert angle(planes["2-chamber"][1].normal, AXIS) > 89.0
    # Without a mask the scanner's plane still comes; the third panel stays a reformat.
    titles = [p.title for p in long_axis_panels(panels_for(np.array([2.0, 2.0, 8.0]), "short-axis"), SHAPE, AFFINE, None, NAMES, sax)]
    assert titles == ["short-axis (in-plane)", "4-chamber (plane of lax_4c_ed.nii.gz)", "through-plane reformat 2"]


def test_without_lv_and_rv_the_reformats_stay() -> None:
    image, labels = phantom()
    panels = panels_for(np.array([2.0, 2.0, 8.0]), "short-axis")
    assert long_axis_panels(panels, SHAPE, AFFINE, np.where(labels == 1, 0, labels), NAMES, None) == panels  # no RV
    assert long_axis_panels(panels, SHAPE, AFFINE, labels, {1: "a", 3: "b"}, None) == panels  # labels not named LV/RV
    isotropic = panels_for(np.array([1.0, 1.0, 1.2]))
    assert long_axis_panels(isotropic, SHAPE, AFFINE, labels, NAMES, None) == isotropic


def test_plane_panels_render_with_letters_and_clicks_land_on_the_world_point() -> None:
    image, labels = phantom()
    panels = long_axis_panels(panels_for(np.array([2.0, 2.0, 8.0]), "short-axis"), SHAPE, AFFINE, labels, NAMES, None)
    assert [p.title for p in panels] == ["short-axis (in-plane)", "4-chamber (from mask)", "2-chamber (from mask)"]
    grid = panels[1].grid
    assert isinstance(panels[1], Panel) and grid is not None and abs(grid.step - 2.0) < 1e-9
    voxel = (32, 32, 6)
    rgb = render_plane(image, AFFINE, grid, voxel, 300.0, 600.0, labels=labels)
    assert rgb.ndim == 3 and rgb.shape[2] == 3 and min(rgb.shape[:2]) >= 1
    # A click on the crosshair's own pixel comes back to (near) the same voxel.
    row, col = grid.pixel(AFFINE[:3, :3] @ np.array(voxel, float) + AFFINE[:3, 3])
    back = plane_click_to_voxel(grid, (row + 0.5) * rgb.shape[0] / grid.shape[0], (col + 0.5) * rgb.shape[1] / grid.shape[1], rgb.shape[:2], AFFINE, SHAPE)
    assert np.abs(np.subtract(back, voxel)).max() <= 1
    letters = grid_letters(grid)
    assert set(letters) == {"top", "bottom", "left", "right"} and all(letters.values())
    assert letters["top"][0] in "SA"  # up is the in-plane direction nearest superior


def test_screen_plane_of_an_axial_normal_matches_the_radiological_axial_view() -> None:
    plane = screen_plane(np.array([0.0, 0.0, 1.0]), np.zeros(3))
    assert np.allclose(-plane.down, [0, 1, 0]) and np.allclose(plane.right, [-1, 0, 0])  # anterior up, patient left on the right
