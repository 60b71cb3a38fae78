"""Explanations and clinician intervention, from the bottleneck alone.

A prediction dict (the ``prediction.json`` contract) carries the bottleneck's bounded weights and bias
and every concept's score, so the viewer can recompute the class probabilities after a correction
without the encoders. ``"present"`` and ``"absent"`` map to the concept's typical score among training
cases whose report stated it present / not present (``bottleneck.present_values`` / ``absent_values``,
signed distances to the concept's SVM hyperplane); a number is used as the score itself.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import numpy as np

from medsuite.errors import MedsuiteError


def _softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max())
    return e / e.sum()


def certainty(scores: np.ndarray, present_values: np.ndarray, absent_values: np.ndarray) -> np.ndarray:
    """How far each score is from the midpoint of its typical present and absent scores, in units of their gap.

    Near 0: the image could go either way, the concepts a clinician should check first. Raw SVM distances
    are not comparable across concepts; this scale is.
    """
    gap = np.maximum(np.abs(np.asarray(present_values) - np.asarray(absent_values)), 1e-6)
    return np.abs(np.asarray(scores) - (np.asarray(present_values) + np.asarray(absent_values)) / 2) / gap


def build_prediction(case: str, classes: list[str], concept_names: list[str], scores: np.ndarray, weights: np.ndarray, bias: np.ndarray, *, present_values: np.ndarray, absent_values: np.ndarray, modalities_used: list[str], images: dict[str, list[str]], variant: str = "sequential") -> dict[str, Any]:
    """The self-contained prediction: probabilities, concepts ranked by their largest |contribution|."""
    scores = np.asarray(scores, np.float64)
    weights = np.asarray(weights, np.float64)
    logits = weights @ scores + np.asarray(bias, np.float64)
    probs = _softmax(logits)
    contributions = weights * scores[None, :]  # (classes, concepts)
    order = np.argsort(-np.abs(contributions).max(0), kind="stable")
    sure = certainty(scores, present_values, absent_values)
    concepts = [
        {
            "name": concept_names[k],
            "modality": concept_names[k].split(":", 1)[0],
            "score": round(float(scores[k]), 6),
            "certainty": round(float(sure[k]), 4),
            "used": concept_names[k].split(":", 1)[0] in modalities_used,
            "contributions": {c: round(float(contributions[j, k]), 6) for j, c in enumerate(classes)},
        }
        for k in order
    ]
    return {
        "case": case,
        "variant": variant,
        "predicted_class": classes[int(np.argmax(probs))],
        "classes": list(classes),
        "probabilities": {c: round(float(p), 6) for c, p in zip(classes, probs)},
        "logits": {c: round(float(v), 6) for c, v in zip(classes, logits)},
        "modalities_used": list(modalities_used),
        "concepts": concepts,
        "check_first": [concept_names[k] for k in np.argsort(sure, kind="stable") if concept_names[k].split(":", 1)[0] in modalities_used][:3],
        "bottleneck": {
            "concepts": list(concept_names),
            "classes": list(classes),
            "weights": np.round(weights, 6).tolist(),
            "bias": np.round(np.asarray(bias, np.float64), 6).tolist(),
            "present_values": np.round(np.asarray(present_values, np.float64), 6).tolist(),
            "absent_values": np.round(np.asarray(absent_values, np.float64), 6).tolist(),
            "formula": "logit_k = sum_c score_c * weight_kc + bias_k; weights are sigmoid(w) in (0, 1)",
        },
        "images": images,
        "interventions": {},
    }


def _resolve(name: str, names: list[str]) -> int:
    lowered = [n.lower() for n in names]
    key = name.strip().lower()
    if key in lowered:
        return lowered.index(key)
    short = [i for i, n in enumerate(lowered) if n.split(":", 1)[1] == key]
    if len(short) == 1:  # "acoustic hollowing" is unambiguous without its modality
        return short[0]
    raise MedsuiteError(name, "is not a concept of this model" if not short else "names a concept of several modalities", "write MODALITY:concept, e.g. 'US:acoustic hollowing'")


def corrected_score(value: float | str, k: int, bottleneck: dict) -> float:
    """A correction as the concept's score: a number is a raw score (the viewer's slider); a word is what a
    clinician states (see :func:`parse_corrections`)."""
    present, absent = float(bottleneck["present_values"][k]), float(bottleneck["absent_values"][k])
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise MedsuiteError(str(value), "is not a finite concept score", "give a finite number")
        return float(value)
    text = str(value).strip().lower()
    if text in ("present", "yes", "true"):
        return present
    if text in ("absent", "no", "false"):
        return absent
    if text == "uncertain":  # halfway between the typical present and absent scores: the model's neutral point
        return (present + absent) / 2
    if text.startswith(PRESENCE):
        return absent + float(text[len(PRESENCE):]) * (present - absent)
    try:
        score = float(text)
    except ValueError:
        raise MedsuiteError(str(value), "is not a concept value", "use present, absent, uncertain or a number from 0 to 1") from None
    return corrected_score(score, k, bottleneck)


#: prefix of a degree of presence from 0 (the typical absent score) to 1 (the typical present score)
PRESENCE = "presence "


def intervene(prediction: dict, corrections: dict[str, float | str]) -> dict:
    """A new prediction with the corrected concept scores, recomputed from the bottleneck alone."""
    bottleneck = prediction["bottleneck"]
    names = bottleneck["concepts"]
    by_name = {c["name"]: c["score"] for c in prediction["concepts"]}
    scores = np.array([by_name[n] for n in names], np.float64)
    applied = dict(prediction.get("interventions", {}))
    for name, value in corrections.items():
        k = _resolve(name, names)
        scores[k] = corrected_score(value, k, bottleneck)
        applied[names[k]] = {"value": value, "score": round(float(scores[k]), 6)}
    result = build_prediction(
        prediction["case"], bottleneck["classes"], names, scores, np.asarray(bottleneck["weights"]), np.asarray(bottleneck["bias"]),
        present_values=np.asarray(bottleneck["present_values"]), absent_values=np.asarray(bottleneck["absent_values"]),
        modalities_used=prediction["modalities_used"], images=copy.deepcopy(prediction.get("images", {})), variant=prediction.get("variant", "sequential"),
    )
    result["interventions"] = applied
    result["before_intervention"] = prediction.get("before_intervention", {"predicted_class": prediction["predicted_class"], "probabilities": prediction["probabilities"]})
    return result


def parse_corrections(items: list[str], concepts: list[str] | None = None) -> dict[str, str]:
    """``["US:acoustic hollowing=absent", "FA:leakage=0.7"]`` -> {name: "absent", name: "presence 0.7"}.

    A value is present, absent or uncertain, or a degree of presence from 0 (absent) to 1 (present);
    anything else (NaN, 1e308, a typo) is refused here, before any case is classified; so is a name that
    is not one of ``concepts`` (the model's, when given)."""
    out = {}
    for item in items:
        name, sep, value = item.rpartition("=")
        if not sep or not name.strip() or not value.strip():
            raise MedsuiteError(item, "is not NAME=VALUE", 'write e.g. --set "US:acoustic hollowing=absent"')
        if concepts is not None:
            _resolve(name, concepts)
        text = value.strip().lower()
        if text in ("present", "absent", "uncertain", "yes", "no", "true", "false"):
            out[name.strip()] = text
            continue
        try:
            degree = float(text)
        except ValueError:
            raise MedsuiteError(item, f"value {value.strip()!r} is not a concept value", "use present, absent, uncertain or a number from 0 to 1") from None
        if not (math.isfinite(degree) and 0.0 <= degree <= 1.0):
            raise MedsuiteError(item, f"value {value.strip()} is outside 0..1", "use present, absent, uncertain or a number from 0 (absent) to 1 (present)")
        out[name.strip()] = f"{PRESENCE}{degree:g}"
    return out


def plot_explanation(prediction: dict, target: str | Path, top: int = 12) -> Path:
    """Bar chart of the concepts' contributions to the predicted class (and the others), ranked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from medsuite.io import atomic_path

    classes = prediction["classes"]
    winner = prediction["predicted_class"]
    concepts = sorted(prediction["concepts"], key=lambda c: -abs(c["contributions"][winner]))[:top][::-1]
    fig, ax = plt.subplots(figsize=(8, 0.35 * len(concepts) + 1.6))
    height = 0.8 / len(classes)
    for j, cls in enumerate(classes):
        values = [c["contributions"][cls] for c in concepts]
        ax.barh(np.arange(len(concepts)) + (j - (len(classes) - 1) / 2) * height, values, height, label=f"{cls} ({prediction['probabilities'][cls]:.2f})", alpha=1.0 if cls == winner else 0.45)
    ax.set_yticks(np.arange(len(concepts)), [f"{c['name']} ({c['score']:+.2f})" for c in concepts], fontsize=8)
    ax.axvline(0, color="black", linewidth=0.6)
    ax.set_xlabel("contribution to class logit = score x sigmoid(weight)")
    ax.set_title(f"{prediction['case']}: {winner}; modalities {', '.join(prediction['modalities_used'])}", fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    target = Path(target)
    with atomic_path(target) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)
    return target
