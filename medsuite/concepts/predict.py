"""Classifying one case folder with a trained concept model (the sequential, paper's variant)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medsuite.concepts.data import load_case
from medsuite.concepts.explain import build_prediction
from medsuite.concepts.pipeline import ConceptModel
from medsuite.io import require_finite


def predict_case(model: ConceptModel, folder: str | Path, name: str | None = None) -> dict:
    """The prediction.json dict for a folder with any subset of the modalities (and an optional report)."""
    folder = Path(folder)
    images, files, report = load_case(folder, model.vocabulary, model.config.image_size, model.config.intensity)
    used = [m for m in model.modalities if m in images]
    present = np.array([[m in images for m in model.modalities]], np.float32)
    features = model.features({m: a[None] for m, a in images.items()})
    scores = model.scores(features, present)[0]
    prediction = build_prediction(
        name or folder.name, list(model.config.classes), model.vocabulary.keys, scores,
        model.bottleneck.bounded().detach().numpy(), model.bottleneck.bias.detach().numpy(),
        present_values=model.present_values, absent_values=model.absent_values, modalities_used=used, images=files,
    )
    require_finite(np.asarray(list(prediction["probabilities"].values())), folder, "predicted probabilities")
    blackbox = model.predict_blackbox(features, present)[0]
    prediction["black_box"] = {c: round(float(p), 6) for c, p in zip(model.config.classes, blackbox)}
    if report is not None:
        from medsuite.concepts.extract import extract_concepts, findings_json

        prediction["report_concepts"] = {k: v for k, v in findings_json(extract_concepts(report, model.vocabulary)).items() if v["status"] != "not mentioned"}
    return prediction
