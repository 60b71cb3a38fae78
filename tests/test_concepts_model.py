"""Synthetic cohort, the bounded bottleneck, intervention, missing modalities and the classify command."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from medsuite.concepts import generate_cohort, intervene, load_vocabulary, write_cohort
from medsuite.concepts.explain import build_prediction
from medsuite.concepts.model import Bottleneck
from medsuite.concepts.synthetic import class_counts
from medsuite.errors import MedsuiteError



def _cli(*args: str) -> int:
    """The CLI in-process (torch is imported once per test session, not once per call)."""
    from medsuite.cli import main

    with pytest.raises(SystemExit) as done:
        main(list(args))
    return done.value.code


@pytest.fixture(scope="module")
def vocabulary():
    return load_vocabulary()


def test_cohort_is_seeded_and_imbalanced_like_cti(vocabulary):
    a = generate_cohort(vocabulary, 75, size=32, seed=3)
    b = generate_cohort(vocabulary, 75, size=32, seed=3)
    assert np.array_equal(a.images["FA"], b.images["FA"]) and a.reports == b.reports
    assert np.bincount(a.labels).tolist() == class_counts(75) == [54, 13, 8]  # 542:128:80
    assert a.images["FA"].shape == (75, 3, 32, 32) and a.images["US"].shape == (75, 1, 32, 32)
    # findings follow the class priors: hollowing is a melanoma sign
    hollow = vocabulary.index("US:acoustic hollowing")
    assert a.truth[a.labels == 0, hollow].mean() > a.truth[a.labels == 1, hollow].mean()


def test_bottleneck_starts_at_half_and_stays_bounded():
    head = Bottleneck(5, 3)
    assert torch.allclose(head.bounded(), torch.full((3, 5), 0.5))
    with torch.no_grad():
        head.weight.fill_(50.0)
    assert float(head.bounded().detach().max()) <= 1.0
    scores = torch.tensor([[1.0, -2.0, 0.0, 0.5, 0.5]])
    assert torch.allclose(head(scores), scores @ head.bounded().T + head.bias)


def _toy_prediction():
    names = ["US:acoustic hollowing", "ICGA:washout"]
    weights = np.array([[0.9, 0.1], [0.1, 0.9], [0.5, 0.5]])  # hollowing -> melanoma, washout -> hemangioma
    return build_prediction("toy", ["melanoma", "hemangioma", "metastasis"], names, np.array([1.0, -1.0]), weights, np.zeros(3),
                            present_values=np.array([2.0, 2.0]), absent_values=np.array([-2.0, -2.0]), modalities_used=["US", "ICGA"], images={})


def test_intervention_moves_the_prediction_the_expected_way():
    before = _toy_prediction()
    assert before["predicted_class"] == "melanoma"
    after = intervene(before, {"US:acoustic hollowing": "absent", "ICGA:washout": "present"})
    assert after["predicted_class"] == "hemangioma"
    assert after["probabilities"]["melanoma"] < before["probabilities"]["melanoma"]
    # recomputed from the bottleneck alone: logit = sum score * weight + bias
    assert after["logits"]["hemangioma"] == pytest.approx(-2 * 0.1 + 2 * 0.9)
    assert after["before_intervention"]["predicted_class"] == "melanoma"
    assert before["check_first"][0] == "US:acoustic hollowing"  # |1 - 0| / 4 beats washout's |-1 - 0| / 4 by order only
    assert [c["certainty"] for c in before["concepts"]] == [0.25, 0.25]
    assert intervene(before, {"washout": 0.0})["interventions"]["ICGA:washout"]["score"] == 0.0  # modality may be left out
    with pytest.raises(MedsuiteError):
        intervene(before, {"US:no such concept": "present"})
    with pytest.raises(MedsuiteError):
        intervene(before, {"US:acoustic hollowing": "maybe"})


def test_contributions_rank_and_sum_to_logits():
    prediction = _toy_prediction()
    for cls in prediction["classes"]:
        assert sum(c["contributions"][cls] for c in prediction["concepts"]) == pytest.approx(prediction["logits"][cls])
    assert abs(sum(prediction["probabilities"].values()) - 1) < 1e-5


@pytest.fixture(scope="module")
def cases(tmp_path_factory, vocabulary):
    root = tmp_path_factory.mktemp("choroid")
    cohort = generate_cohort(vocabulary, 40, seed=77)
    picked = np.array([int(np.nonzero(cohort.labels == k)[0][0]) for k in range(3)])
    write_cohort(cohort.subset(picked), root / "cases")
    return root / "cases"


def test_shipped_model_classifies_with_intervention_and_missing_modality(cases, tmp_path):
    import shutil

    us_only = sorted(cases.iterdir())[0]
    for modality in ("FA", "ICGA"):
        shutil.rmtree(us_only / modality)
    out = tmp_path / "out"
    assert _cli("classify", str(cases), "-o", str(out), "--quiet") == 0
    report = json.loads((out / "report.json").read_text())
    assert report["kind"] == "classify" and len(report["cases"]) == 3
    name = us_only.name
    prediction = json.loads((out / report["cases"][name]["prediction"]).read_text())
    assert prediction["modalities_used"] == ["US"]
    assert all(c["score"] == 0 for c in prediction["concepts"] if c["modality"] != "US")  # missing modality: no evidence
    assert set(prediction["probabilities"]) == {"melanoma", "hemangioma", "metastasis"}
    assert (out / name / "explanation.png").stat().st_size > 1000
    b = prediction["bottleneck"]
    assert np.asarray(b["weights"]).shape == (3, len(b["concepts"])) and 0 < np.min(b["weights"]) and np.max(b["weights"]) < 1
    # the viewer's path: the JSON alone reproduces the probabilities
    same = intervene(prediction, {})
    for cls, p in prediction["probabilities"].items():
        assert same["probabilities"][cls] == pytest.approx(p, abs=1e-5)
    # clinician says hollowing is present: melanoma can only become more likely
    w = np.asarray(b["weights"])
    k = b["concepts"].index("US:acoustic hollowing")
    assert w[0, k] > w[1, k]  # the trained model ties hollowing to melanoma more than to hemangioma
    more = intervene(prediction, {"US:acoustic hollowing": "present"})
    less = intervene(prediction, {"US:acoustic hollowing": "absent"})
    assert more["probabilities"]["melanoma"] > less["probabilities"]["melanoma"]
    # the CLI's --set gives the same numbers
    out2 = tmp_path / "out2"
    assert _cli("classify", str(us_only), "-o", str(out2), "--quiet", "--set", "US:acoustic hollowing=absent") == 0
    corrected = json.loads((out2 / name / "prediction.json").read_text())
    assert corrected["probabilities"]["melanoma"] == pytest.approx(less["probabilities"]["melanoma"], abs=1e-5)


def test_bad_set_is_a_one_line_usage_error(cases, tmp_path, capsys):
    assert _cli("classify", str(cases), "-o", str(tmp_path / "o"), "--set", "hollowing") == 2
    assert capsys.readouterr().err.startswith("error: hollowing: is not NAME=VALUE")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert _cli("classify", str(empty), "-o", str(tmp_path / "o")) == 2
    assert "holds no case" in capsys.readouterr().err


def test_tiny_training_run_writes_model_and_figures(tmp_path):
    import yaml

    from medsuite.config import PIPELINES_DIR

    config = yaml.safe_load((PIPELINES_DIR / "concepts_choroid.yaml").read_text())
    config["synthetic"].update(patients=40, test_patients=30, image_size=32)
    config["image_size"] = 32
    config["train"].update(encoder_epochs=1, joint_epochs=1, bottleneck_steps=20)
    pipeline = tmp_path / "tiny.yaml"
    pipeline.write_text(yaml.safe_dump(config))
    from medsuite.concepts.train import train_concepts

    report = train_concepts(pipeline, tmp_path / "run", device="cpu", seed=3)  # --device and --seed of the command
    test = report["test"]
    assert report["kind"] == "train concepts" and (tmp_path / "run" / "model.pt").is_file()
    assert report["parameters"]["train"]["seed"] == 3
    assert test["patients"] == 30 and test["extraction"]["precision"] > 0.9 and test["extraction"]["recall"] > 0.9
    assert 0 <= test["f1_cbm_sequential"] <= 1 and 0 <= test["f1_cbm_joint"] <= 1 and set(test["f1_without_modality"]) == {"FA", "ICGA", "US"}
    assert 0.0 < test["concept_auc_sequential"] <= 1.0
    assert report["energy"] is None or report["energy"]["macs"] > 0


def test_training_from_hospital_folders_via_the_cti_card(tmp_path, vocabulary):
    """The choroid_cti card's layout (patient folders, report.txt, label.txt) read through the data layer."""
    import yaml

    from medsuite.concepts.train import train_concepts
    from medsuite.config import PIPELINES_DIR

    write_cohort(generate_cohort(vocabulary, 30, size=32, seed=5), tmp_path / "cti")
    config = yaml.safe_load((PIPELINES_DIR / "concepts_choroid.yaml").read_text())
    config.update(image_size=32, data={"card": "choroid_cti", "root": None})
    config["train"].update(encoder_epochs=1, joint_epochs=0, bottleneck_steps=5)
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(config))
    report = train_concepts(tmp_path / "p.yaml", tmp_path / "run", root=tmp_path / "cti")
    assert report["data_card"] == "choroid_cti" and report["synthetic"] is False
    assert report["test"]["patients"] == 6  # 20% of 30 patients, split by patient
    assert (tmp_path / "run" / "model.pt").is_file()


def test_the_intensity_rule_is_the_models_and_old_checkpoints_keep_the_one_they_trained_with(tmp_path):
    """A NIfTI picture is scaled by the rule in the model's checkpoint; the shipped checkpoint, saved before the
    rule was stored, validates with the rule it was trained with (0.5-99.5th percentile)."""
    from medsuite.concepts.data import read_picture
    from medsuite.concepts.infer import DEFAULT_MODEL
    from medsuite.concepts.pipeline import ConceptModel
    from medsuite.data.intensity import IntensityRule
    from medsuite.io import write_nifti

    shipped = ConceptModel.load(DEFAULT_MODEL)
    assert shipped.config.intensity == IntensityRule(kind="percentile", lower=0.5, upper=99.5)
    custom = shipped.config.model_copy(update={"intensity": IntensityRule(kind="minmax")})
    dataclasses.replace(shipped, config=custom).save(tmp_path / "model.pt")
    assert ConceptModel.load(tmp_path / "model.pt").config.intensity.kind == "minmax"
    picture = np.random.default_rng(0).gamma(2.0, 50.0, (32, 32, 1)).astype(np.float32)
    picture[0, 0] = 1e5  # one hot pixel: min-max scaling darkens the rest, percentiles ignore it
    write_nifti(tmp_path / "phase0.nii.gz", picture, np.eye(4))
    by_percentile = read_picture(tmp_path / "phase0.nii.gz", 32, shipped.config.intensity)
    by_minmax = read_picture(tmp_path / "phase0.nii.gz", 32, IntensityRule(kind="minmax"))
    assert by_percentile.mean() > 0.2 > 0.01 > by_minmax.mean()
