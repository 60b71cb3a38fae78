"""Data cards: every shipped card validates, bad cards fail with a line per problem, MSD export."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml

from medsuite.data.cards import CARDS_DIR, card_problems, list_card_ids, load_card
from medsuite.errors import MedsuiteError

from .conftest import REPO_ROOT, shared_path

EXPECTED = {"mni152_sample", "acdc_h5", "acdc_nifti", "mnms_multiview", "cmr_plan_dicom"}


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "medsuite.cli", *args], capture_output=True, text=True, cwd=REPO_ROOT)


def test_every_shipped_card_is_valid():
    assert EXPECTED <= set(list_card_ids())
    for card_id in list_card_ids():
        assert card_problems(CARDS_DIR / f"{card_id}.yaml") == [], card_id


def test_acdc_card_facts():
    card = load_card("acdc_h5")
    assert card.label_map == {0: "background", 1: "rv_cavity", 2: "myocardium", 3: "lv_cavity"}
    assert card.geometry.index_space_only and card.geometry.nominal_spacing_mm == [1.5, 1.5, 8.0]
    assert not card.licence.redistribution_allowed
    assert sum(card.split.fractions.values()) == pytest.approx(1.0)


def _bad_card(tmp_path, **changes):
    data = yaml.safe_load((CARDS_DIR / "acdc_h5.yaml").read_text())
    data.update(changes)
    path = tmp_path / f"{data['id']}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_label_map_without_background_fails_with_a_clear_line(tmp_path):
    path = _bad_card(tmp_path, label_map={1: "rv_cavity", 2: "myocardium"})
    problems = card_problems(path)
    assert len(problems) == 1 and "label_map must map 0 to 'background'" in problems[0]
    result = run_cli("cards", "validate", str(path))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "background" in result.stderr and "Traceback" not in result.stderr


def test_each_problem_gets_its_own_line(tmp_path):
    path = _bad_card(tmp_path, intended_use=[], licence={"name": "x"}, unknown_field=1)
    result = run_cli("cards", "validate", str(path))
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 3
    assert any("intended_use" in line for line in lines) and any("redistribution_allowed" in line for line in lines)
    assert any("unknown_field" in line for line in lines)


def test_cli_validates_the_shipped_folder():
    result = run_cli("cards", "validate", "medsuite/data_cards/")
    assert result.returncode == 0, result.stderr
    assert f"{len(list_card_ids())} card(s) valid" in result.stdout


def test_unknown_card_names_the_known_ones():
    with pytest.raises(MedsuiteError, match="acdc_h5"):
        load_card("no_such_card")


def test_msd_export_from_acdc_h5(tmp_path):
    shared_path("acdc_h5")
    target = tmp_path / "dataset.json"
    result = run_cli("cards", "export", "acdc_h5", "--format", "msd", "-o", str(target))
    assert result.returncode == 0, result.stderr
    manifest = json.loads(target.read_text())
    assert manifest["labels"] == {"0": "background", "1": "rv_cavity", "2": "myocardium", "3": "lv_cavity"}
    assert manifest["modality"] == {"0": "MRI"}
    assert manifest["numTraining"] + manifest["numTest"] == 160  # 80 patients x (ED, ES)
    assert manifest["numTest"] == 32  # 20 % of 80 patients, two frames each
