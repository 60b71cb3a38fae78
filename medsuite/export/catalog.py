"""The models shipped inside the package (medsuite/assets/<pipeline>/*.pt) and their cards."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from medsuite.checkpoints import BUILDERS, load_checkpoint
from medsuite.io import sha256_file

ASSETS = Path(__file__).resolve().parents[1] / "assets"
CARD_NAME = "MODEL_CARD.md"


@dataclass(frozen=True)
class ShippedModel:
    name: str  # the file's stem, what `medsuite models list --card NAME` takes
    path: Path
    kind: str
    data_card: str | None
    sha256: str
    model_card: Path | None

    @property
    def title(self) -> str:
        """The model card's first heading, or a note that the model has none."""
        if self.model_card is None:
            return "(no model card)"
        first = next((line for line in self.model_card.read_text().splitlines() if line.startswith("# ")), "# (untitled card)")
        return first[2:].split(": ", 1)[-1]


def shipped_models() -> list[ShippedModel]:
    models = []
    for path in sorted(ASSETS.glob("*/*.pt")):
        payload = load_checkpoint(path, kind=tuple(BUILDERS))
        card = path.with_name(CARD_NAME)
        models.append(ShippedModel(path.stem, path, str(payload["kind"]), payload.get("card"), sha256_file(path), card if card.is_file() else None))
    return models
