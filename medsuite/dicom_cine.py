"""Cine DICOM series (several phases at every slice position, one file per image) read as a 4D volume.

GDCM sorts a series' files by position only, so a cine's phases would stack as if they were slices. Here
files are grouped by position along the slice normal and ordered by trigger time (then instance number)
within each position; phase t is then an ordinary 3D series of one file per position.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np
import pydicom

from medsuite.errors import MedsuiteError

_TAGS = ["ImagePositionPatient", "ImageOrientationPatient", "TriggerTime", "InstanceNumber"]


def cine_phases(files: list[str], folder: Path) -> tuple[list[list[str]], list[float | None]] | None:
    """(files of each phase in slice order, trigger time of each phase in ms) or None for a plain series."""
    headers = {f: pydicom.dcmread(f, stop_before_pixels=True, specific_tags=_TAGS) for f in files}
    if any("ImagePositionPatient" not in h or "ImageOrientationPatient" not in h for h in headers.values()):
        return None
    row, col = np.asarray(headers[files[0]].ImageOrientationPatient, float).reshape(2, 3)
    normal = np.cross(row, col)
    by_position: dict[float, list[str]] = defaultdict(list)
    for f, h in headers.items():
        by_position[round(float(np.dot(np.asarray(h.ImagePositionPatient, float), normal)), 2)].append(f)
    counts = {len(v) for v in by_position.values()}
    if counts == {1}:
        return None
    if len(counts) > 1:
        raise MedsuiteError(folder, f"slice positions hold different numbers of images ({sorted(counts)})", "give a complete cine series (every phase at every position)")

    def phase_order(f: str) -> tuple[float, int]:
        h = headers[f]
        return float(h.get("TriggerTime", 0) or 0), int(h.get("InstanceNumber", 0) or 0)

    stacks = [sorted(by_position[p], key=phase_order) for p in sorted(by_position)]
    phases = [[stack[t] for stack in stacks] for t in range(counts.pop())]
    trigger = [float(headers[p[0]].TriggerTime) if "TriggerTime" in headers[p[0]] else None for p in phases]
    return phases, trigger


def frame_note(meta: dict, frame: int | None) -> str | None:
    """'cine frame 3 of 25 (trigger time 120 ms)' for the phase a mask was computed on."""
    phases = meta.get("dicom_phase_files")
    if not phases or frame is None:
        return None
    trigger = meta.get("trigger_times_ms", [None] * len(phases))[frame]
    return f"cine frame {frame} of {len(phases)}" + (f" (trigger time {trigger:g} ms)" if trigger is not None else "")
