"""Report -> concept extraction on hand-written reports: negation, uncertainty, synonyms, misspellings."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from medsuite.concepts import extract_concepts, load_vocabulary

REPORT = """B-scan ultrasound: Dome-shaped choroidal mass with low internal reflectivity and acoustic hollowng.
No choroidal excavation or subretinal fluid. Lumpy surface cannot be excluded.
FA: Early hyperfluorescence is not seen, but late leakage is present. Possible double circulation.
ICGA: Hypofluorescent lesion without washout; lace-like pattern absent. Tumor vasculature noted.
"""


@pytest.fixture(scope="module")
def vocabulary():
    return load_vocabulary()


@pytest.fixture(scope="module")
def found(vocabulary):
    return {k: f.status for k, f in extract_concepts(REPORT, vocabulary).items()}


@pytest.mark.parametrize(
    "concept, status",
    [
        ("US:dome shape", "present"),  # synonym 'dome-shaped'
        ("US:low internal reflectivity", "present"),
        ("US:acoustic hollowing", "present"),  # misspelt 'hollowng'
        ("US:choroidal excavation", "absent"),  # 'No X or Y': both negated
        ("US:exudative retinal detachment", "absent"),  # synonym 'subretinal fluid' under the same 'No'
        ("US:irregular surface", "uncertain"),  # 'cannot be excluded' is uncertainty, not negation
        ("FA:early hyperfluorescence", "absent"),  # post-negation 'is not seen'
        ("FA:late leakage", "present"),  # 'but' ends the negation's scope
        ("FA:double circulation", "uncertain"),
        ("ICGA:blocked fluorescence", "present"),  # synonym 'hypofluorescent lesion'
        ("ICGA:washout", "absent"),  # 'without'
        ("ICGA:lacy pattern", "absent"),  # synonym + post-negation 'absent'
        ("ICGA:intrinsic tumour vessels", "present"),  # American spelling synonym 'tumor vasculature'
        ("ICGA:early hyperfluorescence", "not mentioned"),  # said under FA only: sections keep modalities apart
        ("US:mushroom shape", "not mentioned"),
    ],
)
def test_statuses(found, concept, status):
    assert found[concept] == status


def test_evidence_span_points_at_the_phrase(vocabulary):
    finding = extract_concepts(REPORT, vocabulary)["US:acoustic hollowing"]
    start, end = finding.span
    assert REPORT[start:end] == "acoustic hollowng"
    assert "Dome-shaped" in finding.evidence


def test_unsectioned_report_and_other_cues(vocabulary):
    text = "Mushroom shaped mass, suspicious for choroidal excavation. Negative for retinal detachment. No evidence of acoustic quiet zone."
    found = {k: f.status for k, f in extract_concepts(text, vocabulary).items()}
    assert found["US:mushroom shape"] == "present"
    assert found["US:choroidal excavation"] == "uncertain"
    assert found["US:exudative retinal detachment"] == "absent"
    assert found["US:acoustic hollowing"] == "absent"


def test_negated_list_reaches_its_last_item_and_question_mark_stays_local(vocabulary):
    text = "FA: No early phase hyperfluorescence, late phase leakage or double circulation sign. Pinpoint leakage? Mottled pattern."
    found = {k: f.status for k, f in extract_concepts(text, vocabulary).items()}
    assert [found[f"FA:{c}"] for c in ("early hyperfluorescence", "late leakage", "double circulation")] == ["absent"] * 3
    assert found["FA:pinpoint leakage"] == "uncertain" and found["FA:mottled pattern"] == "present"


def test_longest_phrase_wins_overlap(vocabulary):
    found = extract_concepts("US: low-to-medium reflectivity.", vocabulary)
    assert found["US:low internal reflectivity"].status == "present"
    assert found["US:medium internal reflectivity"].status == "not mentioned"


def test_one_letter_tolerance_is_limited_to_long_words(vocabulary):
    found = extract_concepts("US: dune shape. Acoustic hollowing.", vocabulary)  # 'dune' is not 'dome'
    assert found["US:dome shape"].status == "not mentioned"
    assert found["US:acoustic hollowing"].status == "present"


def test_cli_extract_prints_json(tmp_path):
    report = tmp_path / "report.txt"
    report.write_text(REPORT)
    out = subprocess.run([sys.executable, "-m", "medsuite.cli", "concepts", "extract", str(report)], capture_output=True, text=True, check=True)
    data = json.loads(out.stdout)
    assert data["US:acoustic hollowing"]["status"] == "present"
    assert data["ICGA:washout"]["status"] == "absent"
    assert "US:mushroom shape" not in data  # not mentioned ones only with --all


def test_cli_extract_missing_file_is_one_line_error(tmp_path):
    out = subprocess.run([sys.executable, "-m", "medsuite.cli", "concepts", "extract", str(tmp_path / "none.txt")], capture_output=True, text=True)
    assert out.returncode == 2
    assert out.stderr.strip().startswith("error:") and len(out.stderr.strip().splitlines()) == 1
