"""Review station flows under streamlit.testing.v1.AppTest, on generated result folders."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from medsuite.io import sha256_file
from medsuite.viewer.results import RESULTS_ENV
from tests.test_viewer_fixtures import make_cardiac, make_results, tables, tile_notes, tiles

APPS = Path(__file__).resolve().parents[1] / "apps"
TIMEOUT = 60  # the default 3 s is too short on a shared CPU (first load reads volumes, imports SimpleITK)


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_results(tmp_path_factory.mktemp("results"))


@pytest.fixture
def open_page(results: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv(RESULTS_ENV, str(results))

    def run(page: str) -> AppTest:
        at = AppTest.from_file(str(APPS / page), default_timeout=TIMEOUT).run()
        assert not at.exception, [e.value for e in at.exception]
        return at

    return run


def ok(at: AppTest) -> AppTest:
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def submit_review(at: AppTest, key: str, case: str, reviewer: str, decision: str | None, comment: str) -> AppTest:
    at.text_input(key=f"{key}_reviewer").input(reviewer)
    if decision is not None:
        at.radio(key=f"{key}_decision_{case}").set_value(decision)
    at.text_area(key=f"{key}_comment_{case}").input(comment)
    next(b for b in at.button if b.label == "Record decision").click()
    return ok(at)


def test_home_lists_results_and_refuses_paths_outside(open_page, results: Path) -> None:
    at = open_page("medsuite_viewer.py")
    assert tiles(at) == {"register results": "1", "segment results": "1", "classify results": "1", "demo results": "1"}
    at.text_input(key="home_typed").input("../")
    ok(at)
    assert at.error and "outside the results folder" in at.error[0].value
    at.text_input(key="home_typed").input("segmentation")
    ok(at)
    assert not at.error and "segmentation (segment)" in at.success[0].value


def test_registration_crosshair_views_and_approval(open_page, results: Path) -> None:
    at = open_page("pages/1_Registration.py")
    metrics = tiles(at)
    assert metrics["Folding (det J ≤ 0)"] == "0.000 %" and metrics["Lesion volume"] == "0.22 ml"
    assert metrics["Fixed voxel size"] == "1.5×1×3 mm"
    assert "voxel (11, 10, 6) · world (RAS) 12.0, 0.0, 0.0 mm" in at.caption[0].value  # the bright ellipsoid's centre
    at.slider(key="reg_ax0").set_value(3)
    at.slider(key="reg_ax2").set_value(8)
    ok(at)
    assert "voxel (3, 10, 8) · world (RAS) 0.0, 0.0, 6.0 mm" in at.caption[0].value  # 1.5 mm and 3 mm steps

    captions = {}
    for mode in ("Checkerboard", "Difference", "Fade", "Flicker", "Deformation grid", "Jacobian", "Lesion & inpainted", "Side by side"):
        at.radio(key="reg_mode").set_value(mode)
        ok(at)
        captions[mode] = [c for image in at.get("image") for c in image.proto.imgs for c in [c.caption]]
    assert captions["Jacobian"] == ["det J: blue < 1 (contraction), white = 1, red > 1 (expansion), green = folding (≤ 0); this slice 1.05 to 1.10"]
    assert captions["Side by side"] == ["Fixed", "Moving (same world point)", "Warped moving"]  # labels off by default
    at.checkbox(key="reg_labels").check()
    ok(at)
    assert [c.caption for image in at.get("image") for c in image.proto.imgs][2] == "Warped moving + warped labels"
    assert tables(at)[0]["label"] == ["1"]  # the labels' colour legend
    assert len(captions["Lesion & inpainted"]) == 2
    # 1.5 x 1 x 3 mm voxels: the 3 mm axis is the slice axis, so the panels are the acquisition planes.
    assert at.radio(key="reg_plane").options == ["in-plane", "through-plane reformat 1", "through-plane reformat 2"]
    at.radio(key="reg_plane").set_value("through-plane reformat 1")
    ok(at)

    submit_review(at, "reg", "registration", "Dr Ada", "approve", "good alignment")
    assert "Recorded: approve by Dr Ada" in at.success[0].value
    entry = json.loads((results / "reviews.jsonl").read_text().splitlines()[-1])
    warped = results / "registration" / "warped.nii.gz"
    assert entry["case"] == "registration" and entry["output_sha256"] == sha256_file(warped)
    assert entry["model_version"] == "girnet-test-v1" and entry["decision"] == "approve" and entry["comment"] == "good alignment"


def test_mask_overlay_and_label_volumes(open_page, results: Path) -> None:
    at = open_page("pages/2_Mask.py")
    table = tables(at)[0]
    assert table["name"] == ["RV", "LV"] and table["voxels"] == ["144", "288"]
    assert table["volume (ml)"] == ["0.65", "1.30"]  # 144 and 288 voxels of 4.5 mm^3
    assert table["in report (ml)"] == ["0.65", "1.30"]
    assert all(cell.startswith("data:image/png;base64,") for cell in table["colour"])
    at.slider(key="mask_opacity").set_value(0.8)
    at.checkbox(key="mask_outline").check()
    ok(at)
    submit_review(at, "mask", "heart", "Dr Bo", "needs-edit", "RV leaks into the atrium")
    entry = json.loads((results / "reviews.jsonl").read_text().splitlines()[-1])
    assert (entry["case"], entry["decision"], entry["model_version"]) == ("heart", "needs-edit", "unet-test-v2")


def test_concept_intervention_changes_the_prediction(open_page, results: Path) -> None:
    pytest.importorskip("medsuite.concepts.explain")
    at = open_page("pages/3_Concept.py")
    assert tiles(at)["Predicted class"] == "melanoma" and not [s for s in at.selectbox if s.key.startswith("concept_set")]  # the interventions are drawn when asked for
    at.toggle(key="concept_intervene_eye1").set_value(True)
    ok(at)
    at.selectbox(key="concept_set_eye1_0").set_value("absent")  # US:acoustic hollowing -> absent score -2
    ok(at)
    assert tiles(at)["Predicted class"] == "melanoma"  # nothing changes before Apply
    at.selectbox(key="concept_set_eye1_0").set_value("absent")
    next(b for b in at.button if b.label == "Apply").click()
    ok(at)
    # logits: melanoma 0.9*-2 + 0.2*0.5 + 0.1*0.5 = -1.65; haemangioma -0.2 + 0.15 + 0.4 + 0.2 = 0.55
    assert tiles(at)["Predicted class"] == "haemangioma" and tiles(at)["P(haemangioma)"] == "0.900"
    assert tile_notes(at)["Predicted class"] == "was melanoma"
    at.selectbox(key="concept_set_eye1_0").set_value("as the model says")
    next(b for b in at.button if b.label == "Apply").click()
    ok(at)
    assert tiles(at)["Predicted class"] == "melanoma"
    assert not at.dataframe
    at.toggle(key="concept_table").set_value(True)
    ok(at)
    assert at.dataframe[0].value["concept"].tolist()[0] == "US:acoustic hollowing"  # ranked by contribution
    submit_review(at, "concept", "eye1", "Dr Cy", "reject", "")
    entry = json.loads((results / "reviews.jsonl").read_text().splitlines()[-1])
    assert (entry["case"], entry["decision"]) == ("eye1", "reject")


def test_a_decision_needs_an_explicit_choice_and_names_model_and_output(open_page, results: Path) -> None:
    at = open_page("pages/2_Mask.py")
    assert at.radio(key="mask_decision_heart").value is None  # nothing pre-selected
    log = results / "reviews.jsonl"
    before = log.read_text().splitlines() if log.exists() else []
    submit_review(at, "mask", "heart", "Dr Bo", None, "looks fine")
    assert "Decision: is not chosen" in at.error[0].value
    submit_review(at, "mask", "heart", "", "approve", "")
    assert "Reviewer: is empty" in at.error[0].value
    assert (log.read_text().splitlines() if log.exists() else []) == before  # nothing recorded
    submit_review(at, "mask", "heart", "Dr Bo", "approve", "")
    entry = json.loads(log.read_text().splitlines()[-1])
    assert entry["output_sha256"] == sha256_file(results / "segmentation" / "heart_seg.nii.gz") and entry["model_sha256"] is None  # the fixture names no checkpoint file


def crosshair(at: AppTest) -> str:
    return next(c.value for c in at.caption if c.value.startswith("voxel ("))


@pytest.fixture
def cardiac_page(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    make_cardiac(tmp_path)
    monkeypatch.setenv(RESULTS_ENV, str(tmp_path))
    at = AppTest.from_file(str(APPS / "pages/2_Mask.py"), default_timeout=TIMEOUT).run()
    assert not at.exception, [e.value for e in at.exception]
    return at, tmp_path


def test_mask_page_shows_doubtful_cases_first_with_cardiac_function_and_dicom_seg(cardiac_page) -> None:
    at, _ = cardiac_page
    assert at.selectbox(key="mask_case").options == ["⚠ patient01_ES", "patient01_ED"]  # uncertainty 0.31 > 0.2
    assert "Flagged for careful review: uncertainty 0.31 > 0.2" in at.warning[0].value.replace("\\", "")  # shown escaped, as text
    metrics = tiles(at)
    assert metrics["LV ejection fraction"] == "60.0 %" and metrics["LV myocardial mass"] == "110.3 g" and metrics["RV end-systolic volume"] == "75.5 ml"
    # The crosshair starts at the centre of the mask (labels span i 8..17, j 8..11, k 3..8; i flips in canonical order).
    assert "voxel (10, 9, 5) ·" in crosshair(at)
    at.slider(key="mask_ax0").set_value(2)
    ok(at)
    assert not [b for b in at.get("download_button") if b.proto.label == "Mask as DICOM-SEG"]  # ES has none
    at.selectbox(key="mask_case").set_value("patient01_ED")
    ok(at)
    assert "voxel (10, 9, 5) ·" in crosshair(at)  # re-centred on the case switch
    assert not at.warning
    assert [b for b in at.get("download_button") if b.proto.label == "Mask as DICOM-SEG"]


def test_mask_correction_undo_and_save_keep_the_input_geometry(cardiac_page) -> None:
    import SimpleITK as sitk

    at, root = cardiac_page
    at.toggle(key="mask_correct").set_value(True)
    ok(at)
    edit_key = f"mask_edit|{(root / 'cardiac').resolve()}|patient01_ES"
    edit = at.session_state[edit_key]
    original = edit.labels.copy()
    painted = (np.array([3, 4, 5]), np.array([2, 2, 2]), np.array([6, 6, 6]))
    assert edit.paint(painted, 2) == 3 and edit.paint((np.array([3]), np.array([2]), np.array([6])), 0) == 1
    assert edit.undo() == 1  # the eraser stroke is undone
    at.text_input(key="mask_corrector").input("Dr Bo")
    next(b for b in at.button if b.label == "Save corrected mask").click()
    ok(at)
    assert "Saved patient01_ES_corrected.nii.gz: 3 voxels changed" in at.success[0].value
    saved = root / "cardiac" / "patient01_ES_corrected.nii.gz"
    source = root / "cardiac" / "patient01_ES_seg.nii.gz"
    written, model = sitk.ReadImage(str(saved)), sitk.ReadImage(str(root / "inputs" / "patient01_ES.nii.gz"))
    assert written.GetSize() == model.GetSize()
    assert np.allclose(written.GetDirection(), model.GetDirection()) and np.allclose(written.GetOrigin(), model.GetOrigin()) and np.allclose(written.GetSpacing(), model.GetSpacing())
    difference = sitk.GetArrayFromImage(written).astype(int) - sitk.GetArrayFromImage(sitk.ReadImage(str(source))).astype(int)
    assert np.count_nonzero(difference) == 3 and set(np.unique(sitk.GetArrayFromImage(written)[difference != 0])) == {2}
    logged = json.loads((root / "corrections.jsonl").read_text().splitlines()[-1])
    assert logged["voxels_changed"] == 3 and logged["reviewer"] == "Dr Bo" and logged["case"] == "patient01_ES"
    assert np.array_equal(original, at.session_state[edit_key].labels) is False


def test_the_demo_concept_page_shows_its_cases_images(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from rich.console import Console

    from medsuite.commands.concepts import run_demo

    run_demo(tmp_path / "demo", Console(quiet=True))
    (tmp_path / "demo").rename(tmp_path / "moved")  # a demo folder copied elsewhere keeps its images
    moved = tmp_path / "moved"
    prediction_path = next((moved / "concepts").glob("*/prediction.json"))
    named = [Path(p) for paths in json.loads(prediction_path.read_text())["images"].values() for p in paths]
    assert named and not any(p.is_absolute() for p in named)
    assert all((prediction_path.parent / p).is_file() and moved.resolve() in (prediction_path.parent / p).resolve().parents for p in named)
    monkeypatch.setenv(RESULTS_ENV, str(moved))
    at = AppTest.from_file(str(APPS / "pages/3_Concept.py"), default_timeout=TIMEOUT).run()
    assert not at.exception and not at.warning, [w.value for w in at.warning]
    shown = [c.caption for image in at.get("image") for c in image.proto.imgs if c.caption]  # the two charts have none
    assert len([i for image in at.get("image") for i in image.proto.imgs]) == len(named) + 2
    assert len(shown) == len(named) and {"FA/phase1.png", "US/phase1.png"} <= set(shown)
