"""Export a card's dataset description: the Medical Segmentation Decathlon dataset.json."""

from __future__ import annotations

from pathlib import Path

from medsuite.data.cards import DataCard
from medsuite.data.datasets import discover_records, split_records
from medsuite.data.transforms import IMAGE, LABEL
from medsuite.io import write_json

MSD_MODALITY = {"MR": "MRI", "CT": "CT", "US": "US"}


def export_msd(card: DataCard, target: str | Path, root: str | Path | None = None) -> Path:
    """dataset.json with the card's label map, training (train+val) and test lists from its split."""
    splits = split_records(card, discover_records(card, root))

    def entry(record: dict) -> dict:
        return {IMAGE: record[IMAGE], LABEL: record[LABEL]} if LABEL in record else {IMAGE: record[IMAGE]}

    training = [entry(r) for r in splits["train"] + splits["val"]]
    test = [r[IMAGE] for r in splits["test"]]
    manifest = {
        "name": card.name,
        "description": card.description.strip(),
        "reference": card.licence.citation or "",
        "licence": card.licence.name,
        "release": card.version,
        "tensorImageSize": "3D",
        "modality": {str(i): MSD_MODALITY.get(m, m) for i, m in enumerate(card.acquisition.modalities)},
        "labels": {str(k): v for k, v in sorted(card.label_map.items())},
        "numTraining": len(training),
        "numTest": len(test),
        "training": training,
        "test": test,
    }
    return write_json(target, manifest)
