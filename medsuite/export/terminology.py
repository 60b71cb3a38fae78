"""Coded meaning of medsuite's labels for DICOM outputs: segmented property category, type, anatomic region.

Codes are taken from pydicom's DICOM PS3.16 code dictionaries (``pydicom.sr.codedict.codes``), never typed
in. Those dictionaries hold no SNOMED CT concept for a ventricle *cavity*: the cavities are coded with the
chamber itself (Right ventricle 53085002, Left ventricle 87878005, the CID 7152 "Cardiac Structure
Segmentation Type" codes that OHIF and 3D Slicer map) and the segment label says "cavity"; the myocardium
has its own concept (Left ventricle myocardium 49848007). A label medsuite does not know gets a code of the
private coding scheme 99MEDSUITE whose meaning is the label's name, as PS3.3 8.2 allows.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code

PRIVATE_SCHEME = "99MEDSUITE"


@dataclass(frozen=True)
class LabelTerm:
    label: str  # the segment / ROI label shown by viewers
    category: Code
    type: Code
    region: Code | None = None  # anatomic region, when the type does not imply it
    rgb: tuple[int, int, int] = (255, 255, 0)


_HEART = codes.SCT.Heart
_TERMS = {
    "rv": LabelTerm("Right ventricle cavity", codes.SCT.AnatomicalStructure, codes.SCT.RightVentricle, _HEART, (60, 120, 255)),
    "myo": LabelTerm("Left ventricle myocardium", codes.SCT.AnatomicalStructure, codes.SCT.LeftVentricleMyocardium, _HEART, (60, 200, 90)),
    "lv": LabelTerm("Left ventricle cavity", codes.SCT.AnatomicalStructure, codes.SCT.LeftVentricle, _HEART, (230, 60, 60)),
    "lesion": LabelTerm("Brain lesion", codes.SCT.MorphologicallyAbnormalStructure, codes.SCT.Lesion, codes.SCT.Brain, (255, 160, 0)),
}
_ALIASES = {
    "right ventricle": "rv", "right ventricle cavity": "rv", "rv cavity": "rv",
    "myocardium": "myo", "left ventricle myocardium": "myo", "lv myocardium": "myo",
    "left ventricle": "lv", "left ventricle cavity": "lv", "lv cavity": "lv",
    "brain lesion": "lesion", "tumour": "lesion", "tumor": "lesion",
}


def term_for(name: str) -> LabelTerm:
    """The coded meaning of a label name ('RV', 'Myo', 'LV', 'lesion' and their long forms)."""
    key = name.strip().lower().replace("_", " ")  # card label_map names (rv_cavity) and short ones (RV)
    key = _ALIASES.get(key, key)
    if key in _TERMS:
        return _TERMS[key]
    private = Code(value=key.replace(" ", "-")[:16] or "label", scheme_designator=PRIVATE_SCHEME, meaning=name)
    return LabelTerm(name, codes.SCT.AnatomicalStructure, private)
