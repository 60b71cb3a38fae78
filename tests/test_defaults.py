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


def test_pipelines_list_names_pipelines_only_and_the_vocabulary_is_found_from_any_folder(tmp_path):
    """Every name listed validates as its task's pipeline; the concept vocabulary (data, not a pipeline) lives
    beside the concepts package and is the default wherever the command runs."""
    from medsuite.concepts.pipeline import load_concepts_pipeline
    from medsuite.concepts.vocabulary import DEFAULT_VOCABULARY
    from medsuite.pretext.pretrain import PretextConfig
    from medsuite.registration.config import RegistrationConfig
    from medsuite.segmentation.config import SegmentationConfig

    (tmp_path / "empty").mkdir()
    listed = run_cli("pipelines", "list", cwd=tmp_path / "empty")
    names = listed.stdout.split()
    assert listed.returncode == 0 and names == shipped_pipelines() and not any("vocabulary" in n for n in names)
    models = {"registration": RegistrationConfig, "segmentation": SegmentationConfig, "pretext": PretextConfig}
    for name in names:
        task = name.split("_")[0]
        load_concepts_pipeline(name) if task == "concepts" else load_pipeline(name, models[task])
    assert DEFAULT_VOCABULARY.is_file() and DEFAULT_VOCABULARY.parent == REPO_ROOT / "medsuite" / "concepts"
    report = tmp_path / "report.txt"
    report.write_text("FA: hyperfluorescent lesion. US: acoustic hollowing present.")
    extracted = run_cli("concepts", "extract", str(report), cwd=tmp_path / "empty")
    assert extracted.returncode == 0 and "acoustic hollowing" in extracted.stdout


def test_a_users_root_is_relative_to_the_current_folder_a_cards_to_the_repository(tmp_path, monkeypatch):
    """--root and $MEDSUITE_DATA_<ID> are the user's paths (the demo passes its relative results folder);
    only the card's own layout.root is relative to the folder above the package."""
    from medsuite.data.cards import load_card

    monkeypatch.chdir(tmp_path)
    card = load_card("mnms_multiview")
    assert card.data_root("exams") == tmp_path.resolve() / "exams"
    monkeypatch.setenv("MEDSUITE_DATA_MNMS_MULTIVIEW", "elsewhere")
    assert card.data_root() == tmp_path.resolve() / "elsewhere"
    monkeypatch.delenv("MEDSUITE_DATA_MNMS_MULTIVIEW")
    assert card.data_root() == (REPO_ROOT / card.layout.root).resolve()


def test_code_defaults_equal_the_shipped_yaml_of_single_pipeline_tasks():
    """A library user calling RegistrationConfig() or PretextConfig() gets what the commands get from the YAML
    (pretext's sources excepted: which data to pretrain on has no default outside a pipeline)."""
    from medsuite.pretext.pretrain import PretextConfig
    from medsuite.registration.config import RegistrationConfig

    assert RegistrationConfig() == load_pipeline("registration_girnet", RegistrationConfig)
    shipped = load_pipeline("pretext_cardiac", PretextConfig)
    assert PretextConfig(sources=shipped.sources) == shipped
