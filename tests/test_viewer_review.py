"""Pure parts of the review station (#21): acquisition-plane panels and edge letters, the crosshair's
start, brush strokes to voxels, undo, writing back in the input's voxel order, the clinical readers,
and the corrections data card that closes the loop to training."""

from __future__ import annotations

import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medsuite.data.samples import oblique_affine
from medsuite.io import Volume
from medsuite.viewer.clinical import (
    cardiac_function,
    dicom_seg_of,
    doubtful_first,
    patient_of,
    qc_flag,
)
from medsuite.viewer.correction import MaskEdit, painted_voxels, to_original_order
from medsuite.viewer.planes import (
    acquisition_view,
    direction_letters,
    edge_letters,
    panels_for,
    slice_axis,
)
from medsuite.viewer.slicing import centre_voxel, plane_slice, to_canonical
from tests.test_viewer_fixtures import make_cardiac


def test_axis_aligned_views_get_the_letters_a_radiologist_expects() -> None:
    ras = np.diag([1.0, 1.0, 1.0, 1.0])
    # Radiological convention: patient right on screen left; anterior / superior at the top.
    assert edge_letters(ras, "axial") == {"top": "A", "bottom": "P", "left": "R", "right": "L"}
    assert edge_letters(ras, "coronal") == {"top": "S", "bottom": "I", "left": "R", "right": "L"}
    assert edge_letters(ras, "sagittal") == {"top": "S", "bottom": "I", "left": "A", "right": "P"}
    assert direction_letters(np.array([0.8, 0.0, -0.6])) == "RI"  # oblique: both axes named, larger first
    assert direction_letters(np.array([0.95, 0.05, 0.0])) == "R"


def test_an_oblique_short_axis_stack_gets_its_acquisition_planes_in_plane_first() -> None:
    affine = oblique_affine(spacing=(1.25, 1.25, 8.0), angles_deg=(30.0, -20.0, 40.0))
    vol = to_canonical(Volume(array=np.zeros((40, 36, 9), np.float32), affine=affine))
    axis = slice_axis(vol.spacing)
    assert vol.spacing[axis] == pytest.approx(8.0)
    panels = panels_for(vol.spacing, acquisition_view("sax_ed.nii.gz"))
    assert [p.title for p in panels] == ["short-axis (in-plane)", "through-plane reformat 1", "through-plane reformat 2"]
    in_plane = plane_slice(vol.array, panels[0].plane, 4)
    assert sorted(in_plane.shape) == [36, 40]  # the acquired slice, whatever world plane is nearest
    assert panels_for(vol.spacing)[0].title == "in-plane"
    assert [p.title for p in panels_for(np.array([1.0, 1.0, 1.2]))] == ["axial", "coronal", "sagittal"]
    assert acquisition_view(["4CH"]) == "long-axis" and acquisition_view("Cine SAX stack") == "short-axis" and acquisition_view("t1_mprage") is None


def test_crosshair_starts_at_the_mask_centre_else_the_content() -> None:
    image = np.zeros((30, 20, 10), np.float32)
    image[5:15, 2:8, 1:5] = 100.0
    labels = np.zeros(image.shape, np.uint8)
    labels[20:25, 10:13, 6:9] = 2
    assert centre_voxel(labels, image) == (22, 11, 7)
    assert centre_voxel(None, image) == (9, 4, 2)
    assert centre_voxel(np.zeros_like(labels), np.zeros_like(image)) == (15, 10, 5)


def test_a_stroke_paints_the_voxels_under_it_and_undo_restores_them() -> None:
    shape = (12, 10, 6)  # canonical; the axial view shows rows = axis 1 (flipped), columns = axis 0 (flipped)
    canvas = np.zeros((100, 120, 4), np.uint8)  # 10 px per voxel
    canvas[20:30, 30:60, 3] = 255  # screen row 2, screen columns 3..5
    voxels = painted_voxels(canvas, "axial", 4, shape)
    assert sorted(zip(*[v.tolist() for v in voxels])) == [(6, 7, 4), (7, 7, 4), (8, 7, 4)]
    edit = MaskEdit(np.zeros(shape, np.int16))
    assert edit.paint(voxels, 3) == 3 and edit.paint(voxels, 3) == 0  # painting twice changes nothing more
    assert edit.paint((np.array([7]), np.array([7]), np.array([4])), 0) == 1  # eraser
    assert edit.undo() == 1 and int(edit.labels.sum()) == 9
    assert edit.undo() == 3 and not edit.labels.any() and edit.undo() == 0


def test_corrections_go_back_in_the_files_voxel_order() -> None:
    affine = np.array([[0.0, 0, -3.0, 10], [-1.5, 0, 0, 30], [0, 1.0, 0, -10], [0, 0, 0, 1]])  # a PIL/LAS-like file
    original = np.random.default_rng(0).integers(0, 4, (8, 7, 5)).astype(np.int16)
    canonical = to_canonical(Volume(array=original, affine=affine)).array
    assert canonical.shape != original.shape
    assert np.array_equal(to_original_order(canonical, affine), original)


def test_clinical_readers_tolerate_missing_and_malformed_keys(tmp_path: Path) -> None:
    import json

    report = json.loads((make_cardiac(tmp_path) / "report.json").read_text())
    es = report["cases"]["patient01_ES"]
    assert patient_of("patient01_ES", {}) == "patient01" and patient_of("case7", {"patient": "P7"}) == "P7"
    function = cardiac_function(report, "patient01_ES", es)
    assert function["patient"] == "patient01" and function["figures"]["LVEF_percent"] == 60.0 and "RVSV_ml" not in function["figures"]
    assert cardiac_function({"cardiac_function": {"patient01": {"LVEF_percent": "n/a", "LVEDV_ml": float("nan")}}}, "patient01_ED", {}) is None
    assert cardiac_function({}, "x", {}) is None
    assert qc_flag(es) == (True, "uncertainty 0.31 > 0.2")
    assert qc_flag({"qc": {"flag": "doubtful", "reasons": ["LV volume outside 20-400 ml"]}}) == (True, "QC: LV volume outside 20-400 ml")
    assert qc_flag({"qc": "weird", "uncertainty": "high"}) == (False, "")
    assert doubtful_first({"a": {}, "b": {"uncertainty": 0.1}, "c": {"qc": {"passed": False}}}) == ["c", "b", "a"]
    assert dicom_seg_of(report["cases"]["patient01_ED"]) == "patient01_ED_seg.dcm" and dicom_seg_of(es) is None


def test_the_corrections_card_lists_what_reviewers_saved(tmp_path: Path) -> None:
    from medsuite.data.cards import load_card
    from medsuite.data.datasets import discover_records

    folder = make_cardiac(tmp_path)
    shutil.copy(folder / "patient01_ES_seg.nii.gz", folder / "patient01_ES_corrected.nii.gz")
    records = discover_records(load_card("review_corrections"), tmp_path)
    assert [(r["patient"], r["case"], Path(r["label"]).name) for r in records] == [("patient01", "patient01_ES", "patient01_ES_corrected.nii.gz")]
    assert nib.load(records[0]["image"]).shape == nib.load(records[0]["label"]).shape
