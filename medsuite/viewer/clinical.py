"""What the mask page reads from a segment report beyond masks: cardiac function, QC / uncertainty
flags, the DICOM-SEG export. Every key is optional; docs/viewer.md lists the keys read here.

Readers are tolerant on purpose: the segmentation and export pipelines evolve separately, and a
missing or malformed figure must show as "not reported", never as an error or a made-up number.
"""

from __future__ import annotations

import math
import re
from typing import Any

#: (key in ``cardiac_function``, label shown, unit), in the order a CMR report lists them.
CARDIAC_FIGURES = (
    ("LVEF_percent", "LV ejection fraction", "%"),
    ("LVEDV_ml", "LV end-diastolic volume", "ml"),
    ("LVESV_ml", "LV end-systolic volume", "ml"),
    ("LVSV_ml", "LV stroke volume", "ml"),
    ("LV_mass_g", "LV myocardial mass", "g"),
    ("RVEF_percent", "RV ejection fraction", "%"),
    ("RVEDV_ml", "RV end-diastolic volume", "ml"),
    ("RVESV_ml", "RV end-systolic volume", "ml"),
    ("RVSV_ml", "RV stroke volume", "ml"),
)
_PHASE_SUFFIX = re.compile(r"[_-]?(ed|es|frame\d+)$", re.IGNORECASE)


def patient_of(case: str, entry: dict[str, Any]) -> str:
    """The patient a case belongs to: the entry's ``patient``, else the case name without _ED/_ES/_frameNN."""
    patient = entry.get("patient")
    return str(patient) if patient else _PHASE_SUFFIX.sub("", case) or case


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) else None


def cardiac_function(report: dict[str, Any], case: str, entry: dict[str, Any]) -> dict[str, Any] | None:
    """The case's patient's cardiac function figures, wherever the report keeps them, else None.

    Looked up in order: ``cases[case].cardiac_function``, ``patients[patient].cardiac_function``,
    ``cardiac_function[patient]``. Non-numeric and non-finite values are dropped.
    """
    patient = patient_of(case, entry)
    patients = report.get("patients") if isinstance(report.get("patients"), dict) else {}
    by_patient = report.get("cardiac_function") if isinstance(report.get("cardiac_function"), dict) else {}
    for found in (entry.get("cardiac_function"), (patients.get(patient) or {}).get("cardiac_function") if isinstance(patients.get(patient), dict) else None, by_patient.get(patient)):
        if isinstance(found, dict):
            figures = {key: _number(found.get(key)) for key, _, _ in CARDIAC_FIGURES}
            figures = {k: v for k, v in figures.items() if v is not None}
            if figures:
                return {"patient": patient, "figures": figures, "phases": {k: found[k] for k in ("ed_case", "es_case") if isinstance(found.get(k), str)}}
    return None


def qc_flag(entry: dict[str, Any]) -> tuple[bool, str]:
    """(doubtful, why) from a case's ``qc`` and ``uncertainty`` keys; (False, "") when neither flags it.

    ``qc`` may be {"flag"/"status": "ok"|"doubtful"|"fail", "passed": bool, "reasons": [...]}; ``uncertainty``
    a number or {"score": x, "threshold": t, "flagged": bool}.
    """
    reasons: list[str] = []
    qc = entry.get("qc")
    if isinstance(qc, dict):
        status = str(qc.get("flag") or qc.get("status") or "").lower()
        failed = qc.get("passed") is False or status in {"doubtful", "fail", "failed", "flagged", "warn", "warning"}
        if failed:
            detail = qc.get("reasons") or qc.get("reason")
            reasons.append("QC: " + ("; ".join(map(str, detail)) if isinstance(detail, list) else str(detail or status or "failed")))
    uncertainty = entry.get("uncertainty")
    if isinstance(uncertainty, dict):
        score, threshold = _number(uncertainty.get("score")), _number(uncertainty.get("threshold"))
        if uncertainty.get("flagged") is True or (score is not None and threshold is not None and score > threshold):
            reasons.append(f"uncertainty {score:.3g}" + (f" > {threshold:.3g}" if threshold is not None else "") if score is not None else "uncertainty flagged")
    if str(entry.get("status", "")).lower() not in ("", "done", "skipped (done)"):
        reasons.append(f"status {entry['status']}")
    return bool(reasons), "; ".join(reasons)


def uncertainty_score(entry: dict[str, Any]) -> float | None:
    value = entry.get("uncertainty")
    return _number(value.get("score")) if isinstance(value, dict) else _number(value)


def doubtful_first(cases: dict[str, dict[str, Any]]) -> list[str]:
    """Case names with flagged cases first, then by decreasing uncertainty, then by name."""
    def order(name: str) -> tuple[int, float, str]:
        score = uncertainty_score(cases[name])
        return (0 if qc_flag(cases[name])[0] else 1, -(score if score is not None else -math.inf), name)

    return sorted(cases, key=order)


def dicom_seg_of(entry: dict[str, Any]) -> str | None:
    """The DICOM-SEG file the export wrote for the case (``outputs.dicom_seg``), relative to the result folder."""
    outputs = entry.get("outputs") if isinstance(entry.get("outputs"), dict) else {}
    name = outputs.get("dicom_seg") or entry.get("dicom_seg")
    return name if isinstance(name, str) and name else None
