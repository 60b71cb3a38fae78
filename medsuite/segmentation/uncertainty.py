"""Per-case uncertainty of a prediction and the QC flag that sends doubtful cases to a reviewer first.

- ``entropy``: mean predictive entropy of the averaged class probabilities inside the predicted heart (every
  foreground voxel), divided by log(C) so it lies in [0, 1]. Boundaries are always uncertain; a case where the
  network hesitates over whole regions scores high.
- ``disagreement``: 1 - mean Dice (over foreground classes) of each member's argmax (model x mirror) against
  the consensus labels; 0 for a single model without TTA.

The QC flag is ``entropy > threshold`` (or no heart found). How the threshold is chosen is ``choose_threshold``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from medsuite.segmentation.predict import Prediction

# Chosen by `choose_threshold` on the 8 validation patients (16 volumes) of acdc_h5 for the shipped
# neunet_acdc.pt (`medsuite evaluate segmentation neunet_acdc.pt --split val`: Youden's J 0.83, 4 volumes below
# 0.85 mean Dice): the default of `segment --qc-entropy` for checkpoints that store none.
SHIPPED_QC_ENTROPY = 0.0926


def entropy_inside_heart(prediction: Prediction) -> float:
    heart = prediction.labels > 0
    if not bool(heart.any()):
        return math.nan
    p = prediction.probabilities.clamp_min(1e-12)
    entropy = -(p * p.log()).sum(0) / math.log(p.shape[0])
    return float(entropy[heart].mean())


def _foreground_dice(a: np.ndarray, b: np.ndarray, n_classes: int) -> float:
    scores = []
    for c in range(1, n_classes):
        x, y = a == c, b == c
        total = int(x.sum()) + int(y.sum())
        if total:
            scores.append(2.0 * int(np.logical_and(x, y).sum()) / total)
    return float(np.mean(scores)) if scores else 1.0


def disagreement(prediction: Prediction) -> float:
    if len(prediction.member_labels) < 2:
        return 0.0
    consensus = prediction.probabilities.argmax(0).numpy()
    n_classes = prediction.probabilities.shape[0]
    return 1.0 - float(np.mean([_foreground_dice(m.numpy(), consensus, n_classes) for m in prediction.member_labels]))


def case_uncertainty(prediction: Prediction, threshold: float) -> dict[str, float | bool | int]:
    entropy = entropy_inside_heart(prediction)
    return {
        "entropy": round(entropy, 5) if not math.isnan(entropy) else None,
        "disagreement": round(disagreement(prediction), 5),
        "members": len(prediction.member_labels),
        "qc_flag": bool(math.isnan(entropy) or entropy > threshold),
    }


def choose_threshold(entropies: Sequence[float], dices: Sequence[float], *, poor_dice: float = 0.85) -> dict[str, float | int | str]:
    """The QC threshold from validation volumes: the entropy cut that best separates volumes with mean Dice
    below ``poor_dice`` from the rest (Youden's J = sensitivity + specificity - 1, the lowest cut on ties);
    when no validation volume is that poor, the largest validation entropy (flag what is more uncertain than
    anything seen in validation)."""
    e, d = np.asarray(entropies, dtype=float), np.asarray(dices, dtype=float)
    keep = np.isfinite(e) & np.isfinite(d)  # a volume with no predicted heart is flagged anyway
    e, d = e[keep], d[keep]
    if not len(e):
        return {"threshold": math.nan, "rule": "no validation volume with a predicted heart", "volumes": 0, "poor": 0}
    poor = d < poor_dice
    if not poor.any() or poor.all():
        return {"threshold": float(e.max()), "rule": "largest validation entropy (no validation volume separates poor from good)", "volumes": len(e), "poor": int(poor.sum())}
    best, cut = -2.0, float(e.max())
    for candidate in np.unique(e)[:-1]:  # flag entropy > candidate
        flagged = e > candidate
        j = flagged[poor].mean() + (~flagged[~poor]).mean() - 1.0
        if j > best + 1e-12:
            best, cut = float(j), float(candidate)
    return {"threshold": cut, "rule": f"Youden's J for mean Dice < {poor_dice}", "youden_j": round(best, 4), "volumes": len(e), "poor": int(poor.sum())}
