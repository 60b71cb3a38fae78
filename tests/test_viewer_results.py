"""Result-folder recognition, path safety, the review log and the `view` command line."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from tests.test_viewer_fixtures import make_results
from typer.testing import CliRunner

from medsuite.commands.view import streamlit_command
from medsuite.errors import MedsuiteError
from medsuite.io import sha256_file
from medsuite.viewer.results import find_results, model_version, of_kind, read_result, safe_path
from medsuite.viewer.reviews import append_review, read_reviews


def test_safe_path_refuses_anything_outside_the_results_folder(tmp_path: Path) -> None:
    root = tmp_path / "results"
    (root / "case").mkdir(parents=True)
    assert safe_path(root, "case") == (root / "case").resolve()
    assert safe_path(root, str(root / "case")) == (root / "case").resolve()
    for escape in ("..", "../other", "/etc", "case/../../x"):
        with pytest.raises(MedsuiteError, match="outside the results folder"):
            safe_path(root, escape)
    os.symlink(tmp_path, root / "sneaky")
    with pytest.raises(MedsuiteError, match="outside"):
        safe_path(root, "sneaky/elsewhere")  # a link out of the folder is followed, then refused


def test_result_folders_are_recognised_by_report_kind(tmp_path: Path) -> None:
    root = make_results(tmp_path)
    (root / "junk").mkdir()
    (root / "junk" / "report.json").write_text("{not json")
    (root / "train_run").mkdir()
    (root / "train_run" / "report.json").write_text(json.dumps({"kind": "train"}))
    results = find_results(root)
    assert [r.kind for r in of_kind(results, "register")] == ["register"]
    assert of_kind(results, "segment")[0].report["labels"] == {"1": "RV", "2": "LV"}
    with pytest.raises(MedsuiteError, match="not valid JSON"):
        read_result(root / "junk")
    with pytest.raises(MedsuiteError, match="kind 'train'"):
        read_result(root / "train_run")
    with pytest.raises(MedsuiteError, match="no report.json"):
        read_result(root / "inputs")
    with pytest.raises(MedsuiteError, match="outside"):
        of_kind(results, "register")[0].file("../../../etc/passwd")


def test_model_sha256_is_declared_or_hashed_from_the_checkpoint(tmp_path: Path) -> None:
    from medsuite.viewer.results import model_sha256

    checkpoint = tmp_path / "best.pt"
    checkpoint.write_bytes(b"weights")
    assert model_sha256({"model_sha256": "cd" * 32, "parameters": {"model": str(checkpoint)}}) == "cd" * 32
    assert model_sha256({"parameters": {"model": str(checkpoint)}}) == sha256_file(checkpoint)
    assert model_sha256({"parameters": {"model": "/etc/passwd"}}) is None  # only checkpoint files are hashed
    assert model_sha256({"parameters": {"model": "unet-test-v2"}}) is None


def test_model_version_prefers_the_model_over_the_software() -> None:
    assert model_version({"model_version": "girnet-2"}) == "girnet-2"
    assert model_version({"parameters": {"checkpoint": "/m/best.pt"}}) == "/m/best.pt"
    assert model_version({"versions": {"medsuite": "0.1.0"}}) == "medsuite 0.1.0"


def test_review_log_appends_one_traceable_line_per_decision(tmp_path: Path) -> None:
    output = tmp_path / "mask.nii.gz"
    output.write_bytes(b"mask bytes")
    first = append_review(tmp_path, case="c1", output=output, model_version="unet-1", model_sha256="ab" * 32, reviewer=" Dr Lee ", decision="approve", comment="good")
    append_review(tmp_path, case="c2", output=output, model_version="unet-1", model_sha256=None, reviewer="Dr Lee", decision="needs-edit")
    lines = (tmp_path / "reviews.jsonl").read_text().splitlines()
    assert len(lines) == 2 and json.loads(lines[0]) == first
    assert first["output_sha256"] == sha256_file(output) and first["reviewer"] == "Dr Lee"
    assert first["time_utc"].endswith("+00:00") and first["decision"] == "approve" and first["model_sha256"] == "ab" * 32
    assert [r["case"] for r in read_reviews(tmp_path)] == ["c1", "c2"]
    with pytest.raises(MedsuiteError, match="not a review decision"):
        append_review(tmp_path, case="c", output=output, model_version="m", model_sha256=None, reviewer="x", decision="maybe")
    with pytest.raises(MedsuiteError, match="Decision: is not chosen"):
        append_review(tmp_path, case="c", output=output, model_version="m", model_sha256=None, reviewer="x", decision=None)
    with pytest.raises(MedsuiteError, match="Reviewer"):
        append_review(tmp_path, case="c", output=output, model_version="m", model_sha256=None, reviewer="  ", decision="reject")
    assert len(read_reviews(tmp_path)) == 2


def test_view_binds_localhost_unless_told(tmp_path: Path) -> None:
    argv = streamlit_command(Path("app.py"), 9000, "127.0.0.1")
    assert argv[1:4] == ["-m", "medsuite.viewer.serve", "run"]  # Streamlit's CLI, page modules pre-imported
    assert argv[argv.index("--server.maxUploadSize") + 1] == "256"
    assert argv[argv.index("--server.address") + 1] == "127.0.0.1"
    assert argv[argv.index("--server.port") + 1] == "9000"
    from medsuite.cli import _build

    result = CliRunner().invoke(_build(), ["view", str(tmp_path / "missing")])
    assert result.exit_code != 0 and "is not a folder" in str(result.exception)


def test_energy_summary_reads_the_report_estimate():
    from medsuite.viewer.results import energy_summary

    report = {"energy": {"macs": 1_000_000, "acs": 250_000, "energy_mj": 0.004825, "convention": "45nm: 4.6 pJ/MAC, 0.9 pJ/AC", "per": "image"}}
    line = energy_summary(report)
    assert line.startswith("Estimated inference energy per image: 0.00483 mJ (1,000,000 MACs, 250,000 synaptic ACs; 45nm")
    assert energy_summary({}) is None and energy_summary({"energy": {"note": "no network"}}) is None


def test_a_predictions_images_resolve_absolute_or_relative_to_its_folder_the_result_or_the_results(tmp_path: Path) -> None:
    root = make_results(tmp_path)
    result = read_result(root / "concepts", root)
    near = root / "concepts" / "eye1"
    (root / "shared_pictures").mkdir()
    (root / "shared_pictures" / "fa.png").write_bytes(b"png")
    assert result.named_file("us.png", near=near) == (near / "us.png").resolve()  # beside prediction.json
    assert result.named_file("eye1/us.png", near=near) == (near / "us.png").resolve()  # relative to the result folder
    assert result.named_file("shared_pictures/fa.png", near=near) == (root / "shared_pictures" / "fa.png").resolve()  # to RESULTS_DIR
    assert result.named_file(str(near / "us.png"), near=near) == (near / "us.png").resolve()  # absolute
    assert result.named_file("gone.png", near=near) == (near / "gone.png").resolve()  # missing: the nearest reading, shown as missing
    outside = tmp_path.parent / "outside.png"
    with pytest.raises(MedsuiteError, match="outside the results folder"):
        result.named_file(str(outside), near=near)
    with pytest.raises(MedsuiteError, match="outside the results folder"):
        result.named_file("../../../outside.png", near=near)
