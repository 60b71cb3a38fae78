"""#14 items 5 and 6: the viewer stays inside its results folder, shows report text as text, caps
uploads and keeps them private, and `medsuite view` stops its Streamlit child."""

from __future__ import annotations

import gzip
import json
import os
import signal
import socket
import stat
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from medsuite.errors import MedsuiteError
from medsuite.io import write_json, write_nifti
from medsuite.viewer.results import RESULTS_ENV, find_results, read_result, safe_path
from medsuite.viewer.uploads import MAX_VOXELS, SessionUploads, check_declared_size
from tests.test_viewer_e2e import free_port, wait_until_serving
from tests.test_viewer_fixtures import AFFINE, make_results, phantom, read_html, tables

APPS = Path(__file__).resolve().parents[1] / "apps"


def test_typed_paths_with_nul_bytes_or_5000_characters_get_one_clear_line(tmp_path: Path) -> None:
    with pytest.raises(MedsuiteError, match="contains a NUL byte"):
        safe_path(tmp_path, "case\x00/../etc")
    with pytest.raises(MedsuiteError, match="is 5000 characters long") as long:
        safe_path(tmp_path, "a" * 5000)
    assert len(long.value.line()) < 300  # the path is shortened in the message
    os.symlink(tmp_path / "loop", tmp_path / "loop")
    with pytest.raises(MedsuiteError, match="cannot be resolved|outside"):
        safe_path(tmp_path, "loop/x")


def test_symlinked_result_folders_pointing_outside_are_not_listed(tmp_path: Path) -> None:
    root = make_results(tmp_path / "results")
    secret = make_results(tmp_path / "elsewhere")
    os.symlink(secret / "segmentation", root / "linked_segmentation")
    assert all(root.resolve() in r.path.parents or r.path == root.resolve() for r in find_results(root))
    assert len([r for r in find_results(root) if r.kind == "segment"]) == 1
    with pytest.raises(MedsuiteError, match="outside the results folder"):
        read_result("linked_segmentation", root)


@pytest.fixture
def hostile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A results folder whose reports name files outside it (relative escapes and absolute paths)."""
    root = make_results(tmp_path / "results")
    secret = tmp_path / "secret"
    write_nifti(secret / "private.nii.gz", phantom(), AFFINE)
    (secret / "private.png").write_bytes((root / "concepts" / "eye1" / "us.png").read_bytes())
    seg = json.loads((root / "segmentation" / "report.json").read_text())
    seg["labels"] = {"1": "<img src=x onerror=alert(1)>", "2": "**LV** [link](http://example.org)"}
    seg["cases"]["heart"]["input"] = "../../secret/private.nii.gz"
    seg["cases"]["outside"] = {"input": str(secret / "private.nii.gz"), "status": "done", "output": "heart_seg.nii.gz"}
    write_json(root / "segmentation" / "report.json", seg)
    reg = json.loads((root / "registration" / "report.json").read_text())
    reg["fixed"] = str(secret / "private.nii.gz")
    write_json(root / "registration" / "report.json", reg)
    prediction = json.loads((root / "concepts" / "eye1" / "prediction.json").read_text())
    prediction["images"] = {"US": ["../../../secret/private.png", str(secret / "private.png"), "us.png"]}
    (root / "concepts" / "eye1" / "prediction.json").write_text(json.dumps(prediction))
    monkeypatch.setenv(RESULTS_ENV, str(root))
    return root


def run(page: str) -> AppTest:
    at = AppTest.from_file(str(APPS / page), default_timeout=60).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_report_paths_outside_the_results_folder_are_refused(hostile: Path) -> None:
    at = run("pages/2_Mask.py")
    assert at.error and "outside the results folder" in at.error[0].value and not at.get("image")
    at = run("pages/1_Registration.py")
    assert at.error and "outside the results folder" in at.error[0].value
    at = run("pages/3_Concept.py")
    refused = [w.value for w in at.warning if "outside the results folder" in w.value]
    assert len(refused) == 2  # the relative escape and the absolute path; us.png inside is shown
    assert [c.caption for image in at.get("image") for c in image.proto.imgs if c.caption] == ["eye1/us.png"]  # the charts have no caption


def test_report_strings_never_reach_the_page_as_html(hostile: Path) -> None:
    seg = json.loads((hostile / "segmentation" / "report.json").read_text())
    seg["cases"]["heart"]["input"] = str((hostile / "inputs" / "heart.nii.gz").resolve())
    del seg["cases"]["outside"]
    write_json(hostile / "segmentation" / "report.json", seg)
    at = run("pages/2_Mask.py")
    assert tables(at)[0]["name"] == ["<img src=x onerror=alert(1)>", "**LV** [link](http://example.org)"]  # shown as typed
    # HTML reaches the page only from the app: its CSS, tables and tiles; no tag or link from the report
    assert not [m.value for m in at.markdown if m.proto.allow_html]
    tags = [tag for h in at.get("html") for tag in read_html(h.proto.body).tags]
    assert tags and not [(name, attrs) for name, attrs in tags if name in ("a", "script") or any(key.startswith("on") or "example.org" in (value or "") for key, value in attrs.items())]


def test_home_page_answers_a_nul_byte_or_a_huge_path_with_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(RESULTS_ENV, str(make_results(tmp_path)))
    at = run("medsuite_viewer.py")
    for typed, words in (("seg\x00mentation", "NUL byte"), ("x" * 5000, "5000 characters")):
        at.text_input(key="home_typed").input(typed)
        at.run()
        assert not at.exception and words in at.error[0].value


def header_only_nifti(path: Path, shape: tuple[int, ...]) -> Path:
    """A gzip of a few bytes whose NIfTI header declares ``shape`` float32 voxels."""
    header = nib.Nifti1Header()
    header.set_data_shape(shape)
    header.set_data_dtype(np.float32)
    header["vox_offset"] = 352
    path.write_bytes(gzip.compress(header.binaryblock + b"\x00" * 4 + b"\x00" * 64))
    return path


def test_uploads_declaring_huge_volumes_are_refused_from_the_header(tmp_path: Path) -> None:
    bomb = header_only_nifti(tmp_path / "bomb.nii.gz", (1024, 1024, 512))
    assert bomb.stat().st_size < 2000
    with pytest.raises(MedsuiteError, match="declares 1024 x 1024 x 512 voxels"):
        check_declared_size(bomb)
    check_declared_size(header_only_nifti(tmp_path / "fine.nii.gz", (256, 256, 200)))
    assert 256 * 256 * 200 < MAX_VOXELS


def test_uploads_live_in_a_private_folder_removed_with_the_session() -> None:
    import gc

    uploads = SessionUploads()
    folder = uploads.folder
    written = uploads.write("abc/upload.nii.gz", b"data")
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700 and stat.S_IMODE(written.stat().st_mode) == 0o600
    with pytest.raises(FileExistsError):
        uploads.write("abc/upload.nii.gz", b"other")  # never replaces a file
    del uploads
    gc.collect()
    assert not folder.exists()


def children_of(pid: int) -> list[int]:
    found = []
    for status in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = status.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(status.parent.name))
    return found


def test_kill_term_on_medsuite_view_stops_its_streamlit_child(tmp_path: Path) -> None:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "medsuite.cli", "view", str(tmp_path), "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1])),
    )  # fmt: skip
    wait_until_serving(f"http://127.0.0.1:{port}", process)
    children = children_of(process.pid)
    assert children  # the Streamlit server
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0
    assert all(not Path(f"/proc/{child}").exists() or "Z" in Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()[0] for child in children)
    with socket.socket() as sock, pytest.raises(OSError):
        sock.connect(("127.0.0.1", port))  # nothing listens any more


def test_inputs_outside_the_results_folder_open_only_from_folders_given_with_inputs(tmp_path: Path) -> None:
    root = make_results(tmp_path / "results")
    scans = tmp_path / "scans"
    write_nifti(scans / "heart.nii.gz", phantom(), AFFINE)
    result = read_result("segmentation", root)
    with pytest.raises(MedsuiteError, match="--inputs"):
        result.input_file(str(scans / "heart.nii.gz"))  # the refusal names the way to allow it
    allowed = read_result("segmentation", root, (scans.resolve(),))
    assert allowed.input_file(str(scans / "heart.nii.gz")) == (scans / "heart.nii.gz").resolve()
    with pytest.raises(MedsuiteError, match="outside"):
        allowed.input_file(str(tmp_path / "elsewhere.nii.gz"))


def test_malformed_reports_get_a_message_not_an_exception(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = make_results(tmp_path)
    for folder, cases in (("segmentation", ["heart"]), ("concepts", {"eye1": "prediction.json", "eye2": {"prediction": 7}})):
        report = json.loads((root / folder / "report.json").read_text())
        report["cases"] = cases
        report["labels"] = {"x": "RV", "1": ["not", "text"]}
        write_json(root / folder / "report.json", report)
    monkeypatch.setenv(RESULTS_ENV, str(root))
    assert "lists no segmented case" in run("pages/2_Mask.py").warning[0].value
    assert "lists no classified case" in run("pages/3_Concept.py").warning[0].value
