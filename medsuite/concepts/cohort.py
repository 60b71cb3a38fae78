"""The cohort container every concepts stage shares: generated (``synthetic``) or read from a card (``data``)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Cohort:
    """Images per modality (N, phases, H, W) in [0, 1], labels (N,), concept truth (N, C), reports."""

    images: dict[str, np.ndarray]
    labels: np.ndarray
    truth: np.ndarray  # 1 where the finding is drawn
    mentions: list[dict[str, str]]  # per patient: concept key -> status the report states
    reports: list[str]
    classes: tuple[str, ...]
    ids: list[str]

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, index: np.ndarray) -> Cohort:
        return Cohort(
            {m: a[index] for m, a in self.images.items()}, self.labels[index], self.truth[index],
            [self.mentions[i] for i in index], [self.reports[i] for i in index], self.classes, [self.ids[i] for i in index],
        )
