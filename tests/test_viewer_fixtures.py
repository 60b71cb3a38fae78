"""Result folders as register / segment / classify write them (the contract), built small for viewer tests."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
from PIL import Image

from medsuite.data.samples import oblique_affine
from medsuite.io import write_json, write_nifti
from medsuite.provenance import new_report
from medsuite.viewer.results import find_results, read_result
from tests.conftest import SHARED_DATA

SHAPE = (24, 20, 12)
# Anisotropic voxels (1.5 x 1 x 3 mm) stored left-to-right flipped (LAS), so tests exercise reorientation.
AFFINE = np.array([[-1.5, 0, 0, 30.0], [0, 1.0, 0, -10.0], [0, 0, 3.0, -18.0], [0, 0, 0, 1]])
CLASSES = ["melanoma", "haemangioma"]
CONCEPT_NAMES = ["US:acoustic hollowing", "US:dome shape", "FUNDUS:orange pigment"]


class _Page(HTMLParser):
    """What a browser would show of the viewer's ``st.html`` tables and tiles: cell texts (entities
    decoded), each swatch as its ``src``, and every tag with its attributes (for the security tests)."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self.tiles: list[list[str]] = []
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self._cell: list[str] | None = None
        self._tile_part: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        classes = (dict(attrs).get("class") or "").split()
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "img" and self._cell is not None:
            self._cell.append(dict(attrs).get("src") or "")
        elif "tile" in classes:
            self.tiles.append([])
        elif self.tiles and classes and classes[0] in ("label", "value", "note"):
            self._tile_part = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self.rows[-1].append("".join(self._cell))
            self._cell = None
        elif tag == "div" and self._tile_part is not None:
            self.tiles[-1].append("".join(self._tile_part))
            self._tile_part = None

    def handle_data(self, data: str) -> None:
        for part in (self._cell, self._tile_part):
            if part is not None:
                part.append(data)


def read_html(body: str) -> _Page:
    page = _Page()
    page.feed(body)
    return page


def tables(at) -> list[dict[str, list[str]]]:
    """The page's ``small_table`` tables as {header: column of cell texts}."""
    found = []
    for element in at.get("html"):
        if element.proto.body.startswith('<table class="medsuite-table"'):
            header, *rows = read_html(element.proto.body).rows
            found.append({name: [row[k] for row in rows] for k, name in enumerate(header)})
    return found


def _tiles(at) -> list[list[str]]:
    return [tile for element in at.get("html") for tile in read_html(element.proto.body).tiles]


def tiles(at) -> dict[str, str]:
    """The page's key-figure tiles as {label: value}."""
    return {tile[0]: tile[1] for tile in _tiles(at)}


def tile_notes(at) -> dict[str, str]:
    """{label: note} of the tiles that carry a note."""
    return {tile[0]: tile[2] for tile in _tiles(at) if len(tile) > 2}


def phantom(shape: tuple[int, int, int] = SHAPE, shift: float = 0.0) -> np.ndarray:
    """A bright ellipsoid on a dim background, shifted along i by ``shift`` voxels."""
    i, j, k = np.meshgrid(*[np.arange(n, dtype=np.float32) for n in shape], indexing="ij")
    centre = np.array(shape, dtype=np.float32) / 2
    inside = ((i - centre[0] - shift) / 7) ** 2 + ((j - centre[1]) / 6) ** 2 + ((k - centre[2]) / 4) ** 2 <= 1
    return (100.0 + 800.0 * inside + i).astype(np.float32)


def make_register(root: Path) -> Path:
    out = root / "registration"
    out.mkdir(parents=True)
    fixed = write_nifti(root / "inputs" / "fixed.nii.gz", phantom(), AFFINE)
    moving = write_nifti(root / "inputs" / "moving.nii.gz", phantom(shift=2.0), AFFINE)
    write_nifti(out / "warped.nii.gz", phantom(shift=0.5), AFFINE)
    lesion = np.zeros(SHAPE, np.uint8)
    lesion[10:14, 8:12, 5:8] = 1
    write_nifti(out / "lesion_mask.nii.gz", lesion, AFFINE)
    write_nifti(out / "inpainted.nii.gz", phantom(shift=0.5) * (1 - 0.3 * lesion), AFFINE)
    write_nifti(out / "warped_labels.nii.gz", (phantom(shift=0.5) > 500).astype(np.uint8), AFFINE)
    # A uniform 10 % stretch along world x (LPS component 0): det J = 1.1 everywhere.
    i = np.arange(SHAPE[0], dtype=np.float32)[:, None, None]
    ddf = np.zeros(SHAPE + (1, 3), np.float32)
    ddf[..., 0, 0] = 0.1 * 1.5 * (i - SHAPE[0] / 2)  # RAS x = -1.5 i + 30, so LPS x = 1.5 i - 30
    write_nifti(out / "ddf.nii.gz", ddf, AFFINE, intent="vector")
    report = new_report("register", [fixed, moving], {"checkpoint": "girnet-test-v1"})
    report.update(
        outputs={"warped": "warped.nii.gz", "lesion_mask": "lesion_mask.nii.gz", "inpainted": "inpainted.nii.gz", "ddf": "ddf.nii.gz", "warped_labels": "warped_labels.nii.gz"},
        fixed=str(fixed.resolve()), moving=str(moving.resolve()), folding_percent=0.0, lesion_volume_ml=round(float(lesion.sum()) * 4.5 / 1000, 4), seconds=1.5,
    )
    write_json(out / "report.json", report)
    return out


def make_segment(root: Path) -> Path:
    out = root / "segmentation"
    image = write_nifti(root / "inputs" / "heart.nii.gz", phantom(), AFFINE)
    labels = np.zeros(SHAPE, np.uint8)
    labels[4:10, 4:10, 2:6] = 1  # 6*6*4 = 144 voxels of 4.5 mm^3 = 0.648 ml
    labels[12:20, 8:14, 4:10] = 2  # 8*6*6 = 288 voxels = 1.296 ml
    write_nifti(out / "heart_seg.nii.gz", labels, AFFINE)
    report = new_report("segment", [image], {"model": "unet-test-v2"})
    report.update(labels={"1": "RV", "2": "LV"}, cases={"heart": {"input": str(image.resolve()), "status": "done", "output": "heart_seg.nii.gz", "label_volumes_ml": {"RV": 0.648, "LV": 1.296}, "seconds": 0.4}})
    write_json(out / "report.json", report)
    return out


def prediction_dict(scores: list[float]) -> dict:
    """A prediction.json per the classify contract: logits = W @ scores + b, softmax."""
    weights = np.array([[0.9, 0.2, 0.1], [0.1, 0.3, 0.8]])
    bias = np.array([0.0, 0.2])
    s = np.asarray(scores, float)
    logits = weights @ s + bias
    probs = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    return {
        "case": "eye1",
        "predicted_class": CLASSES[int(np.argmax(probs))],
        "classes": CLASSES,
        "probabilities": dict(zip(CLASSES, probs.round(6).tolist())),
        "modalities_used": ["US", "FUNDUS"],
        "concepts": [
            {"name": n, "modality": n.split(":")[0], "score": float(v), "contributions": {c: float(weights[j, k] * v) for j, c in enumerate(CLASSES)}}
            for k, (n, v) in enumerate(zip(CONCEPT_NAMES, s))
        ],
        "bottleneck": {"concepts": CONCEPT_NAMES, "classes": CLASSES, "weights": weights.tolist(), "bias": bias.tolist(), "present_values": [2.0, 1.5, 2.5], "absent_values": [-2.0, -1.5, -2.5]},
        "images": {"US": ["us.png"]},
    }


def make_classify(root: Path) -> Path:
    out = root / "concepts"
    (out / "eye1").mkdir(parents=True)
    pixels = (np.linspace(0, 255, 64 * 64).reshape(64, 64)).astype(np.uint8)
    Image.fromarray(pixels).save(out / "eye1" / "us.png")
    # Melanoma by its acoustic hollowing; correcting that concept to absent makes it a haemangioma.
    (out / "eye1" / "prediction.json").write_text(json.dumps(prediction_dict([3.0, 0.5, 0.5])))
    report = new_report("classify", [], {"checkpoint": "cbm-test-v3"})
    report["cases"] = {"eye1": {"input": str(out / "eye1"), "status": "done", "prediction": "eye1/prediction.json"}}
    write_json(out / "report.json", report)
    return out


def make_results(root: Path) -> Path:
    """RESULTS_DIR with one folder of each kind, plus a demo report pointing at them."""
    make_register(root)
    make_segment(root)
    make_classify(root)
    demo = new_report("demo")
    demo["parts"] = {"register": "registration", "segment": "segmentation", "classify": "concepts"}
    write_json(root / "report.json", demo)
    return root


def test_fixture_folders_are_recognised_by_kind(tmp_path: Path) -> None:
    root = make_results(tmp_path)
    kinds = sorted(r.kind for r in find_results(root))
    assert kinds == ["classify", "demo", "register", "segment"]
    assert read_result(root / "registration").report["outputs"]["ddf"] == "ddf.nii.gz"


def make_cardiac(root: Path) -> Path:
    """A segment result of one patient's ED and ES frames with the figures the segmentation report
    adds (cardiac_function per patient, uncertainty / qc per case) and a DICOM-SEG export of ED."""
    out = root / "cardiac"
    report = new_report("segment", [], {"model": "unet-test-v2", "model_sha256": "ef" * 32})
    report["labels"] = {"1": "RV", "2": "MYO", "3": "LV"}
    report["cases"] = {}
    for phase, shift in (("ED", 0.0), ("ES", 1.0)):
        image = write_nifti(root / "inputs" / f"patient01_{phase}.nii.gz", phantom(shift=shift), AFFINE)
        labels = np.zeros(SHAPE, np.uint8)
        labels[14:18, 8:12, 3:9] = 3
        labels[8:12, 8:12, 3:9] = 1
        write_nifti(out / f"patient01_{phase}_seg.nii.gz", labels, AFFINE)
        report["cases"][f"patient01_{phase}"] = {"input": str(image.resolve()), "status": "done", "output": f"patient01_{phase}_seg.nii.gz", "patient": "patient01"}
    report["cases"]["patient01_ES"]["uncertainty"] = {"score": 0.31, "threshold": 0.2}
    report["cases"]["patient01_ED"]["qc"] = {"passed": True}
    report["cases"]["patient01_ED"]["outputs"] = {"dicom_seg": "patient01_ED_seg.dcm"}
    (out / "patient01_ED_seg.dcm").write_bytes(b"DICM placeholder")
    report["patients"] = {"patient01": {"cardiac_function": {"LVEDV_ml": 152.4, "LVESV_ml": 61.0, "LVEF_percent": 60.0, "RVEDV_ml": 160.2, "RVESV_ml": 75.5, "RVEF_percent": 52.9, "LV_mass_g": 110.3, "ed_case": "patient01_ED", "es_case": "patient01_ES"}}}
    write_json(out / "report.json", report)
    return out


MNMS2_SAX = SHARED_DATA / "cardiac_multiview" / "cinema_examples" / "mnms2" / "sax_ed.nii.gz"


def oblique_sax() -> tuple[np.ndarray, np.ndarray, str]:
    """(array, affine, file name) of an oblique short-axis stack: the M&Ms-2 example when present,
    else a generated one (1 x 1 x 10 mm, tilted 30 and 40 degrees like a cardiac plan)."""
    if MNMS2_SAX.is_file():
        import nibabel as nib

        image = nib.load(str(MNMS2_SAX))
        return np.asarray(image.dataobj, dtype=np.float32), image.affine, "sax_ed.nii.gz"
    affine = oblique_affine(spacing=(1.0, 1.0, 10.0), angles_deg=(30.0, -20.0, 40.0))
    i, j = np.meshgrid(np.arange(128), np.arange(128), indexing="ij")
    disc = ((i - 64) ** 2 + (j - 60) ** 2 <= 400)[..., None] & np.ones(10, bool)
    return (200.0 + 600.0 * disc).astype(np.float32), affine, "sax_generated.nii.gz"


def make_oblique(root: Path) -> Path:
    """A segment result on an oblique short-axis stack: an LV disc in every slice, centred in-plane,
    an RV disc off it (diagonally: clear of the e2e test's brush stroke), and for the M&Ms-2 example
    its 4-chamber image beside it, as the dataset ships them."""
    out = root / "oblique"
    array, affine, name = oblique_sax()
    image = write_nifti(root / "inputs" / name, array, affine)
    if name == MNMS2_SAX.name:
        lax = MNMS2_SAX.with_name("lax_4c_ed.nii.gz")
        (root / "inputs" / lax.name).write_bytes(lax.read_bytes())
    labels = np.zeros(array.shape, np.uint8)
    ni, nj = array.shape[:2]
    i, j = np.meshgrid(np.arange(ni), np.arange(nj), indexing="ij")
    disc = (i - ni // 2) ** 2 + (j - nj // 2) ** 2 <= (min(ni, nj) // 12) ** 2
    rv = (i - ni // 2 - ni * 0.18) ** 2 + (j - nj // 2 - nj * 0.18) ** 2 <= (min(ni, nj) // 16) ** 2
    labels[disc, 2 : array.shape[2] - 2] = 3
    labels[rv, 2 : array.shape[2] - 2] = 1
    case = name.split(".")[0]
    write_nifti(out / f"{case}_seg.nii.gz", labels, affine)
    report = new_report("segment", [image], {"model": "unet-test-v2"})
    report.update(labels={"1": "RV", "2": "MYO", "3": "LV"}, cases={case: {"input": str(image.resolve()), "status": "done", "output": f"{case}_seg.nii.gz"}})
    write_json(out / "report.json", report)
    return out
