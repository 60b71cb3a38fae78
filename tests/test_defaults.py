"""One source of defaults: the shipped pipeline YAMLs are package data, found from any folder; unknown keys fail."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from medsuite.config import PIPELINES_DIR, load_pipeline, pipeline_path, shipped_pipelines
from medsuite.data.cards import CARDS_DIR, list_card_ids
from medsuite.errors import MedsuiteError
from medsuite.pretext.synthetic import write_synthetic_exam

from .conftest import REPO_ROOT


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))  # this checkout's code, wherever the command runs
    return subprocess.run([sys.executable, "-m", "medsuite.cli", *args], capture_output=True, text=True, cwd=cwd, env=env)


def test_pipelines_and_cards_live_inside_the_package():
    package = REPO_ROOT / "medsuite"
    assert PIPELINES_DIR.is_relative_to(package) and CARDS_DIR.is_relative_to(package)
    assert {"registration_girnet", "segmentation_neunet_acdc", "pretext_cardiac", "concepts_choroid"} <= set(shipped_pipelines())
    assert {"acdc_h5", "mni152_sample", "choroid_synthetic"} <= set(list_card_ids())
    assert pipeline_path("registration_girnet") == PIPELINES_DIR / "registration_girnet.yaml"
    with pytest.raises(MedsuiteError, match="no such shipped pipeline"):
        pipeline_path("registration_girnett")


def test_shipped_pipelines_name_cards_never_paths():
    for name in shipped_pipelines():
        text = pipeline_path(name).read_text()
        assert "../" not in text and "shared/data" not in text, name


def test_a_command_from_an_empty_folder_behaves_as_from_the_repository_root(tmp_path):
    """Same default pipeline, same config in report.json, wherever the command is started."""
    exam = write_synthetic_exam(tmp_path / "data" / "exam", n_sax=3, size=24)
    reports = {}
    for where, cwd in (("root", REPO_ROOT), ("empty", tmp_path / "empty")):
        cwd.mkdir(exist_ok=True)
        out = tmp_path / f"run_{where}"
        result = run_cli("pretrain", "--card", "mnms_multiview", "--root", str(exam.parent), "--iterations", "1", "--threads", "2", "--device", "cpu", "-o", str(out), "--quiet", cwd=cwd)
        assert result.returncode == 0, result.stderr
        reports[where] = json.loads((out / "report.json").read_text())
    assert reports["empty"]["parameters"] == reports["root"]["parameters"]
    assert reports["empty"]["inputs"] == reports["root"]["inputs"]  # the packaged YAML, with its sha256
    assert reports["empty"]["n_samples"] == reports["root"]["n_samples"] > 0
    assert reports["empty"]["runtime"] == {"torch_threads": 2, "simpleitk_threads": 2}  # --threads 2 reached both
    shown = run_cli("pipelines", "show", "registration_girnet", cwd=tmp_path / "empty")
    assert shown.stdout.rstrip() == (PIPELINES_DIR / "registration_girnet.yaml").read_text().rstrip()


def test_unknown_pipeline_key_fails_with_one_line_naming_it(tmp_path):
    bad = tmp_path / "pretext.yaml"
    bad.write_text((PIPELINES_DIR / "pretext_cardiac.yaml").read_text() + "iteratons: 3\n")
    result = run_cli("pretrain", "--pipeline", str(bad), "-o", str(tmp_path / "run"), cwd=tmp_path)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "iteratons" in result.stderr and str(bad) in result.stderr
    assert not (tmp_path / "run").exists()


def test_unknown_nested_key_is_named_with_its_path(tmp_path):
    from medsuite.pretext.pretrain import PretextConfig

    bad = tmp_path / "pretext.yaml"
    bad.write_text("sources:\n  - {card: acdc_h5, exclud: [patient001_]}\n")
    with pytest.raises(MedsuiteError, match=r"sources\.0\.exclud"):
        load_pipeline(bad, PretextConfig)
