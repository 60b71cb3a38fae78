"""``Algorithm``: what made a mask, for every output that records it (report.json, DICOM-SEG, RTSTRUCT).

Its own module so that writing a NIfTI mask does not import highdicom (~0.25 s per process): only the DICOM
writers, and ``identification`` when they call it, load it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from medsuite import __version__

if TYPE_CHECKING:
    import highdicom as hd


@dataclass(frozen=True)
class Algorithm:
    """What made the mask: written into every DICOM output so a reader can trace it to the model file."""

    name: str  # e.g. "neunet"
    model_file: str
    model_sha256: str

    @property
    def version(self) -> str:
        return f"medsuite {__version__}"

    def identification(self) -> hd.AlgorithmIdentificationSequence:
        import highdicom as hd
        from pydicom.sr.codedict import codes

        return hd.AlgorithmIdentificationSequence(
            name=self.name,
            family=codes.DCM.ArtificialIntelligence,
            version=self.version,
            source="medsuite",
            parameters={"model_file": self.model_file, "model_sha256": self.model_sha256},
        )
