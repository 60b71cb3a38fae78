"""The figures issue 6 asks for, on a held-out cohort with known ground truth (synthetic)."""

from __future__ import annotations

import numpy as np

from medsuite.concepts.explain import certainty
from medsuite.concepts.extract import NOT_MENTIONED, extract_concepts
from medsuite.concepts.pipeline import ConceptModel
from medsuite.concepts.cohort import Cohort


def extraction_scores(cohort: Cohort, model_vocabulary) -> dict[str, float]:
    """Micro precision/recall of (patient, concept, status) over the statements the reports make."""
    tp = fp = fn = 0
    for report, stated in zip(cohort.reports, cohort.mentions):
        found = {k: f.status for k, f in extract_concepts(report, model_vocabulary).items() if f.status != NOT_MENTIONED}
        truth = {k: s for k, s in stated.items() if s != NOT_MENTIONED}
        tp += sum(1 for k, s in found.items() if truth.get(k) == s)
        fp += sum(1 for k, s in found.items() if truth.get(k) != s)
        fn += sum(1 for k, s in truth.items() if found.get(k) != s)
    return {"precision": tp / max(tp + fp, 1), "recall": tp / max(tp + fn, 1), "statements": tp + fn}


def concept_auc(scores: np.ndarray, truth: np.ndarray) -> tuple[float, dict[int, float]]:
    from sklearn.metrics import roc_auc_score

    per = {k: float(roc_auc_score(truth[:, k], scores[:, k])) for k in range(truth.shape[1]) if 0 < truth[:, k].sum() < len(truth)}
    return float(np.mean(list(per.values()))), per


def macro_f1(labels: np.ndarray, probs: np.ndarray) -> float:
    from sklearn.metrics import f1_score

    return float(f1_score(labels, probs.argmax(1), average="macro"))


def intervene_uncertain(model: ConceptModel, scores: np.ndarray, truth: np.ndarray, count: int = 3) -> np.ndarray:
    """Set each case's ``count`` least certain concepts (see explain.certainty) to the truth."""
    fixed = scores.copy()
    sure = certainty(scores, model.present_values[None], model.absent_values[None])
    for i in range(len(scores)):
        for k in np.argsort(sure[i], kind="stable")[:count]:
            fixed[i, k] = model.present_values[k] if truth[i, k] else model.absent_values[k]
    return fixed


def evaluate(model: ConceptModel, cohort: Cohort) -> dict:
    modalities = model.modalities
    labels = cohort.labels
    all_present = np.ones((len(cohort), len(modalities)), np.float32)
    features = model.features(cohort.images)
    scores = model.scores(features, all_present)
    result = {
        "patients": len(cohort),
        "class_counts": np.bincount(labels, minlength=len(model.config.classes)).tolist(),
        "extraction": extraction_scores(cohort, model.vocabulary) if any(cohort.mentions[0].values()) else None,
    }
    auc, per = concept_auc(scores, cohort.truth)
    result["concept_auc_sequential"] = auc
    result["concept_auc_per_concept"] = {model.vocabulary.keys[k]: v for k, v in per.items()}
    result["f1_cbm_sequential"] = macro_f1(labels, model.predict_scores(scores))
    result["f1_black_box"] = macro_f1(labels, model.predict_blackbox(features, all_present))
    result["f1_cbm_after_intervening_3_uncertain"] = macro_f1(labels, model.predict_scores(intervene_uncertain(model, scores, cohort.truth)))
    if model.joint is not None:
        probs, joint_scores = model.predict_joint(cohort.images, all_present)
        result["f1_cbm_joint"] = macro_f1(labels, probs)
        result["concept_auc_joint"] = concept_auc(joint_scores, cohort.truth)[0]
    missing = {}
    for m, modality in enumerate(modalities):
        present = all_present.copy()
        present[:, m] = 0
        missing[modality] = {"cbm": macro_f1(labels, model.predict_scores(model.scores(features, present))), "black_box": macro_f1(labels, model.predict_blackbox(features, present))}
    result["f1_without_modality"] = missing
    return result
