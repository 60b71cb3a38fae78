"""DICOM-SEG and RTSTRUCT of `segment` on a DICOM series written from an oblique NIfTI: read back by highdicom /
pydicom, placed by their own geometry, they equal the NIfTI mask; references point into the source series."""

from __future__ import annotations

import json
import shutil
import subprocess

import highdicom as hd
import nibabel as nib
import numpy as np
import pydicom
import pytest
from skimage.draw import polygon2mask

from medsuite.errors import MedsuiteError
from medsuite.io import LPS_TO_RAS, sha256_file, write_nifti
from medsuite.segmentation.infer import DEFAULT_CHECKPOINT, segment_batch
from medsuite.segmentation.synthetic import synthetic_short_axis
from tests.conftest import REPO_ROOT
from tests.dicom_series import write_dicom_series

LABELS = {1: "RV", 2: "Myo", 3: "LV"}
DEFAULT_REGISTRATION = REPO_ROOT / "medsuite" / "assets" / "registration" / "girnet_mni152.pt"


@pytest.fixture(scope="module")
def segmented(tmp_path_factory):
    """The phantom as a DICOM series, segmented by the shipped model into all three formats."""
    root = tmp_path_factory.mktemp("dicom_export")
    vol, _ = synthetic_short_axis(shape=(96, 88, 6))
    files = write_dicom_series(vol.array, vol.affine, root / "series")
    assert segment_batch([root / "series"], root / "out", output_formats=["all"], quiet=True) == 0
    report = json.loads((root / "out" / "report.json").read_text())
    outputs = report["cases"]["series"]["outputs"]
    nifti = nib.load(str(root / "out" / outputs["nifti"]))
    return {"root": root, "vol": vol, "files": files, "outputs": outputs, "mask": np.asarray(nifti.dataobj), "affine": nifti.affine, "report": report}


def test_report_names_every_output(segmented):
    assert segmented["outputs"] == {"nifti": "series_seg.nii.gz", "dicom_seg": "series_seg.seg.dcm", "rtstruct": "series_seg.rtstruct.dcm"}
    assert set(np.unique(segmented["mask"])) == {0, 1, 2, 3}  # the shipped model finds all three structures


def test_seg_placed_by_its_own_geometry_equals_the_nifti_mask(segmented):
    seg = hd.seg.segread(segmented["root"] / "out" / segmented["outputs"]["dicom_seg"])
    volume = seg.get_volume(combine_segments=True)  # (slice, row, column) with an LPS affine of its own
    mask, affine = segmented["mask"], segmented["affine"]
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in mask.shape], indexing="ij"), -1).reshape(-1, 3)
    world_lps = (LPS_TO_RAS @ affine @ np.c_[ijk, np.ones(len(ijk))].T).T
    seg_index = (np.linalg.inv(volume.affine) @ world_lps.T).T[:, :3]
    assert np.abs(seg_index - np.round(seg_index)).max() < 1e-3  # the SEG's grid is the source grid
    seg_index = np.round(seg_index).astype(int)
    inside = np.all((seg_index >= 0) & (seg_index < volume.array.shape), axis=1)
    placed = np.zeros(len(ijk), np.uint8)  # frames highdicom omitted (empty slices) read as background
    placed[inside] = volume.array[tuple(seg_index[inside].T)]
    np.testing.assert_array_equal(placed.reshape(mask.shape), mask)


def test_seg_references_the_source_series_and_is_coded(segmented):
    seg = pydicom.dcmread(segmented["root"] / "out" / segmented["outputs"]["dicom_seg"])
    sources = [pydicom.dcmread(f, stop_before_pixels=True) for f in segmented["files"]]
    source_uids = {str(s.SOPInstanceUID) for s in sources}
    referenced = {str(i.ReferencedSOPInstanceUID) for i in seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence}
    per_frame = {str(src.ReferencedSOPInstanceUID) for f in seg.PerFrameFunctionalGroupsSequence for d in f.DerivationImageSequence for src in d.SourceImageSequence}
    assert referenced and per_frame and referenced <= source_uids and per_frame <= source_uids
    assert seg.FrameOfReferenceUID == sources[0].FrameOfReferenceUID and seg.StudyInstanceUID == sources[0].StudyInstanceUID
    assert seg.SeriesInstanceUID != sources[0].SeriesInstanceUID and str(seg.SOPInstanceUID) not in source_uids
    described = {int(s.SegmentNumber): s for s in seg.SegmentSequence}
    assert sorted(described) == [1, 2, 3]
    assert [described[n].SegmentedPropertyTypeCodeSequence[0].CodeValue for n in (1, 2, 3)] == ["53085002", "49848007", "87878005"]
    assert {s.SegmentedPropertyCategoryCodeSequence[0].CodeValue for s in described.values()} == {"91723000"}
    algorithm = described[1].SegmentationAlgorithmIdentificationSequence[0]
    params = dict(p.split("=", 1) for p in algorithm.AlgorithmParameters.split(","))
    assert algorithm.AlgorithmName == "neunet" and algorithm.AlgorithmVersion.startswith("medsuite ")
    assert params["model_sha256"] == sha256_file(DEFAULT_CHECKPOINT)


def _rasterise(rtstruct: pydicom.Dataset, affine: np.ndarray, shape: tuple[int, ...], uid_to_k: dict[str, int]) -> np.ndarray:
    """Contours back to a label volume: world points -> (i, j) on their slice, nested contours combined even-odd."""
    to_index = np.linalg.inv(LPS_TO_RAS @ affine)
    labels = np.zeros(shape, np.uint8)
    for roi in rtstruct.ROIContourSequence:
        layer = np.zeros(shape, bool)
        for contour in roi.ContourSequence:
            k = uid_to_k[str(contour.ContourImageSequence[0].ReferencedSOPInstanceUID)]
            points = np.asarray(contour.ContourData, float).reshape(-1, 3)
            index = (to_index @ np.c_[points, np.ones(len(points))].T).T
            assert np.allclose(index[:, 2], k, atol=1e-3)  # each contour lies in its slice's plane
            layer[:, :, k] ^= polygon2mask(shape[:2], index[:, :2])
        labels[layer] = int(roi.ReferencedROINumber)
    return labels


def test_rtstruct_contours_rasterise_back_to_the_mask(segmented):
    rt = pydicom.dcmread(segmented["root"] / "out" / segmented["outputs"]["rtstruct"])
    sources = [pydicom.dcmread(f, stop_before_pixels=True) for f in segmented["files"]]
    mask, affine = segmented["mask"], segmented["affine"]
    to_index = np.linalg.inv(LPS_TO_RAS @ affine)
    uid_to_k = {str(s.SOPInstanceUID): int(round((to_index @ [*map(float, s.ImagePositionPatient), 1])[2])) for s in sources}
    back = _rasterise(rt, affine, mask.shape, uid_to_k)
    for value, name in LABELS.items():
        dice = 2 * np.sum((back == value) & (mask == value)) / (np.sum(back == value) + np.sum(mask == value))
        assert dice >= 0.95, f"{name}: Dice {dice:.3f}"
    assert [r.ROIName for r in rt.StructureSetROISequence] == ["Right ventricle cavity", "Left ventricle myocardium", "Left ventricle cavity"]
    series_ref = rt.ReferencedFrameOfReferenceSequence[0].RTReferencedStudySequence[0].RTReferencedSeriesSequence[0]
    assert series_ref.SeriesInstanceUID == sources[0].SeriesInstanceUID
    assert {str(i.ReferencedSOPInstanceUID) for i in series_ref.ContourImageSequence} == set(uid_to_k)
    assert rt.FrameOfReferenceUID == sources[0].FrameOfReferenceUID and rt.ApprovalStatus == "UNAPPROVED"


@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dciodvfy (Debian's dicom3tools) not installed")
@pytest.mark.parametrize("kind", ["dicom_seg", "rtstruct"])
def test_dciodvfy_reports_no_errors(segmented, kind):
    result = subprocess.run(["dciodvfy", str(segmented["root"] / "out" / segmented["outputs"][kind])], capture_output=True, text=True, timeout=60)
    errors = [line for line in (result.stdout + result.stderr).splitlines() if line.startswith("Error")]
    assert not errors, "\n".join(errors)


def test_dicom_format_of_nifti_inputs_is_a_usage_error(tmp_path):
    vol, _ = synthetic_short_axis(shape=(64, 56, 4))
    path = write_nifti(tmp_path / "sax.nii.gz", vol.array, vol.affine)
    with pytest.raises(MedsuiteError, match="dicom-seg need a DICOM series input; give DICOM series folders or use --output-format nifti"):
        segment_batch([path], tmp_path / "out", output_formats=["dicom-seg"], quiet=True)
    assert not (tmp_path / "out").exists()  # refused before any model ran


def test_dicom_format_of_a_nifti_case_in_a_mixed_batch_fails_that_case(segmented, tmp_path):
    from medsuite.export.masks import algorithm_for, write_mask_outputs

    vol = segmented["vol"]
    with pytest.raises(MedsuiteError, match="is not a DICOM series"):
        write_mask_outputs(segmented["mask"], vol, tmp_path, "x", formats=["rtstruct"], labels=LABELS, algorithm=algorithm_for("neunet", None))
    assert not list(tmp_path.iterdir())  # nothing written for that case


def test_series_without_frame_of_reference_is_refused(tmp_path):
    from medsuite.export.source import source_series
    from medsuite.io import read_3d

    vol, _ = synthetic_short_axis(shape=(32, 30, 3))
    write_dicom_series(vol.array, vol.affine, tmp_path / "series", with_frame_of_reference=False)
    with pytest.raises(MedsuiteError, match="no FrameOfReferenceUID"):
        source_series(read_3d(tmp_path / "series"))


def test_cine_series_segments_the_chosen_frame_and_says_which(tmp_path):
    vol, _ = synthetic_short_axis(shape=(64, 56, 4))
    files = write_dicom_series(vol.array, vol.affine, tmp_path / "cine", phases=3)
    assert segment_batch([tmp_path / "cine"], tmp_path / "no_frame", quiet=True) == 1  # phases are not slices
    assert "is 4D (64, 56, 4, 3)" in (tmp_path / "no_frame" / "errors.tsv").read_text()
    assert segment_batch([tmp_path / "cine"], tmp_path / "out", frame=1, quiet=True, output_formats=["all"]) == 0
    mask = nib.load(str(tmp_path / "out" / "cine_seg.nii.gz"))
    assert mask.shape == vol.array.shape
    np.testing.assert_allclose(mask.affine, vol.affine, atol=1e-4)
    phase_one = {str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID) for f in files if f.name.startswith("IM01")}
    seg = pydicom.dcmread(tmp_path / "out" / "cine_seg.seg.dcm")
    referenced = {str(i.ReferencedSOPInstanceUID) for i in seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence}
    assert referenced and referenced <= phase_one
    assert "cine frame 1 of 3 (trigger time 40 ms)" in seg.SeriesDescription
    rt = pydicom.dcmread(tmp_path / "out" / "cine_seg.rtstruct.dcm")
    contour_images = rt.ReferencedFrameOfReferenceSequence[0].RTReferencedStudySequence[0].RTReferencedSeriesSequence[0].ContourImageSequence
    assert {str(i.ReferencedSOPInstanceUID) for i in contour_images} == phase_one


def test_lesion_mask_is_coded_as_a_brain_lesion(segmented, tmp_path):
    from medsuite.export.masks import algorithm_for, write_mask_outputs
    from medsuite.io import read_3d

    source = read_3d(segmented["root"] / "series")
    lesion = (segmented["mask"] == 3).astype(np.uint8)
    names = write_mask_outputs(lesion, source, tmp_path, "lesion_mask", formats=["dicom-seg"], labels={1: "lesion"}, algorithm=algorithm_for("girnet", DEFAULT_REGISTRATION))
    seg = hd.seg.segread(tmp_path / names["dicom_seg"])
    description = seg.SegmentSequence[0]
    assert (description.SegmentedPropertyCategoryCodeSequence[0].CodeValue, description.SegmentedPropertyTypeCodeSequence[0].CodeValue) == ("49755003", "52988006")
    assert description.AnatomicRegionSequence[0].CodeValue == "12738006"  # Morphologically abnormal structure / Lesion / Brain
    assert int(seg.get_volume().array.sum()) == int(lesion.sum())


def test_register_hook_with_a_dicom_moving_series_and_an_empty_lesion(tmp_path):
    """At 6 mm and 2 steps the shipped GIRNet finds no lesion in this pair (measured): the NIfTI is written and the
    report says why no SEG is."""
    from medsuite.data.samples import make_pathological_pair
    from medsuite.registration.inference import register_files
    from tests.test_registration_pipeline import small_config

    pair = make_pathological_pair(0, resolution_mm=6.0)
    fixed = write_nifti(tmp_path / "fixed.nii.gz", pair.fixed.array, pair.fixed.affine)
    write_dicom_series(pair.moving.array, pair.moving.affine, tmp_path / "moving")
    config = small_config()
    config.prealign_iterations = 5
    out, report = register_files(fixed, tmp_path / "moving", tmp_path / "out", config, checkpoint=DEFAULT_REGISTRATION, steps=2, output_formats=["all"])
    lesion = np.asarray(nib.load(str(out / "lesion_mask.nii.gz")).dataobj)
    if lesion.any():  # registration improved since this was written: then the SEG must hold the lesion
        assert report["outputs"]["lesion_mask_dicom_seg"] == "lesion_mask.seg.dcm"
        assert int(hd.seg.segread(out / "lesion_mask.seg.dcm").get_volume().array.sum()) == int(lesion.sum())
    else:
        assert report["outputs"]["lesion_mask_dicom_note"] == "the mask is empty: no DICOM objects written"
        assert "lesion_mask_dicom_seg" not in report["outputs"] and not list(out.glob("*.dcm"))


def test_rerun_differs_only_in_new_uids_and_creation_times(segmented, tmp_path):
    from medsuite.export.masks import algorithm_for, write_mask_outputs
    from medsuite.io import read_3d

    source = read_3d(segmented["root"] / "series")
    runs = [write_mask_outputs(segmented["mask"], source, tmp_path / str(i), "case", formats=["all"], labels=LABELS, algorithm=algorithm_for("neunet", DEFAULT_CHECKPOINT)) for i in (0, 1)]
    for kind in ("dicom_seg", "rtstruct"):
        first, second = (pydicom.dcmread(tmp_path / str(i) / runs[i][kind]) for i in (0, 1))
        assert first.SOPInstanceUID != second.SOPInstanceUID and first.SeriesInstanceUID != second.SeriesInstanceUID

        def stable(ds: pydicom.Dataset) -> list[str]:
            # UIDs made for this object (not the source's) and creation dates/times are allowed to differ
            own = {str(ds.SOPInstanceUID), str(ds.SeriesInstanceUID), str(ds.file_meta.MediaStorageSOPInstanceUID)}
            lines = []
            for element in ds.iterall():
                if element.VR in ("DA", "TM", "DT") or str(element.value) in own or element.keyword in ("DimensionOrganizationUID", "TrackingUID"):
                    continue
                lines.append(f"{element.tag} {element.value!r}" if element.VR != "SQ" else str(element.tag))
            return lines

        assert stable(first) == stable(second)


def test_cli_takes_repeated_output_formats(segmented, tmp_path):
    from medsuite.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["segment", str(segmented["root"] / "series"), "-o", str(tmp_path), "--output-format", "rtstruct", "--output-format", "nifti", "--quiet"])
    assert exit_info.value.code == 0
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["cases"]["series"]["outputs"] == {"nifti": "series_seg.nii.gz", "rtstruct": "series_seg.rtstruct.dcm"}
    assert report["parameters"]["output_formats"] == ["nifti", "rtstruct"]


def test_an_ensemble_is_identified_by_its_members_digests(tmp_path):
    import hashlib

    from medsuite.export.masks import algorithm_for

    members = [tmp_path / "fold_0.pt", tmp_path / "fold_1.pt"]
    for i, member in enumerate(members):
        member.write_bytes(bytes([i]) * 10)
    algorithm = algorithm_for("neunet", members)
    expected = hashlib.sha256((sha256_file(members[0]) + sha256_file(members[1])).encode()).hexdigest()
    assert algorithm.model_sha256 == expected and algorithm.model_file == "fold_0.pt+fold_1.pt"
    assert algorithm_for("neunet", members[0]).model_sha256 == sha256_file(members[0])
