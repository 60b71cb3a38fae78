"""Class names of a segmentation model: the card's ``label_map``, never names written into the code.

A checkpoint trained by this version stores its ``labels``; older ones (the shipped neunet_acdc.pt) name
their card, whose label_map gives them.
"""

from __future__ import annotations

from typing import Any

from medsuite.data.cards import DataCard, load_card
from medsuite.errors import MedsuiteError


def card_labels(card: DataCard) -> dict[int, str]:
    """Foreground label value -> name of a card; a card without a label_map cannot train segmentation."""
    if not card.foreground_labels:
        raise MedsuiteError(card.id, "the data card has no label_map", "add label_map (0: background, 1: ...) to the card")
    return card.foreground_labels


def checkpoint_labels(checkpoint: dict[str, Any]) -> dict[int, str]:
    """Label value -> name of a loaded segmentation checkpoint."""
    stored = checkpoint.get("labels")
    if stored:
        return {int(k): str(v) for k, v in stored.items()}
    return card_labels(load_card(checkpoint.get("card") or checkpoint["config"]["data"]["card"]))
