"""The concept vocabulary: per-modality findings, their synonyms and (for the synthetic cohort) priors.

It is data (the shipped ``medsuite/concepts/vocabulary.yaml``, package data beside this module, not a
pipeline) so that a clinician can edit it without code.
A concept's full name is ``"<modality>:<name>"``, e.g. ``"US:acoustic hollowing"``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from medsuite.config import read_yaml, validation_problems
from medsuite.errors import MedsuiteError

DEFAULT_VOCABULARY = Path(str(resources.files("medsuite.concepts") / "vocabulary.yaml"))  # from any folder, and from a wheel


class ModalityEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    phases: int = Field(1, ge=1, description="images per modality per patient (angiography phases)")
    title: str = ""


class ConceptEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    modality: str
    name: str = Field(min_length=2)
    synonyms: list[str] = Field(default_factory=list)
    group: str | None = Field(None, description="concepts of one group exclude each other")
    prevalence: dict[str, float] = Field(default_factory=dict, description="class -> P(present); synthetic cohort only")
    draw: str | None = Field(None, description="drawing rule of the synthetic generator")


class VocabularyFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    modalities: dict[str, ModalityEntry]
    concepts: list[ConceptEntry] = Field(min_length=1)

    @model_validator(mode="after")
    def _known_modalities(self) -> VocabularyFile:
        for concept in self.concepts:
            if concept.modality not in self.modalities:
                raise ValueError(f"concept {concept.name!r} has modality {concept.modality!r}, not one of {sorted(self.modalities)}")
        names = [f"{c.modality}:{c.name}" for c in self.concepts]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"duplicate concepts: {duplicates}")
        return self


@dataclass(frozen=True)
class Concept:
    modality: str
    name: str
    synonyms: tuple[str, ...] = ()
    group: str | None = None
    prevalence: dict[str, float] = field(default_factory=dict, hash=False, compare=False)
    draw: str | None = None

    @property
    def key(self) -> str:
        return f"{self.modality}:{self.name}"

    @property
    def phrases(self) -> tuple[str, ...]:
        return (self.name, *self.synonyms)


@dataclass(frozen=True)
class Vocabulary:
    modalities: dict[str, int]  # modality -> phases
    concepts: tuple[Concept, ...]

    @property
    def keys(self) -> list[str]:
        return [c.key for c in self.concepts]

    def of_modality(self, modality: str) -> list[int]:
        """Indices of a modality's concepts in the concept vector."""
        return [i for i, c in enumerate(self.concepts) if c.modality == modality]

    def index(self, key: str) -> int:
        """Index of ``"MOD:name"`` (case-insensitive)."""
        wanted = key.strip().lower()
        for i, c in enumerate(self.concepts):
            if c.key.lower() == wanted:
                return i
        raise KeyError(key)

    def to_dict(self) -> dict:
        return {
            "modalities": {m: {"phases": p} for m, p in self.modalities.items()},
            "concepts": [
                {"modality": c.modality, "name": c.name, "synonyms": list(c.synonyms), "group": c.group, "prevalence": c.prevalence, "draw": c.draw}
                for c in self.concepts
            ],
        }

    @classmethod
    def from_dict(cls, data: dict, source: str | Path = "vocabulary") -> Vocabulary:
        try:
            parsed = VocabularyFile.model_validate(data)
        except ValidationError as exc:
            raise MedsuiteError(source, "invalid concept vocabulary: " + " | ".join(validation_problems(exc)), "fix these fields") from exc
        concepts = tuple(Concept(c.modality, c.name, tuple(c.synonyms), c.group, dict(c.prevalence), c.draw) for c in parsed.concepts)
        return cls({m: e.phases for m, e in parsed.modalities.items()}, concepts)


def load_vocabulary(path: str | Path = DEFAULT_VOCABULARY) -> Vocabulary:
    return Vocabulary.from_dict(read_yaml(path), path)
