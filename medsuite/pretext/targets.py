"""Pretext targets: intersecting-line heatmaps (task 1) and short-axis slice locations (task 2).

Heatmap channels are fixed by view kind (``VIEW_KINDS``: SAX, 2CH, 3CH, 4CH) so one network serves
every view; a channel with no line (the view's own kind, a missing view, near-parallel planes) is
zero and masked out of the loss.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from medsuite.pretext.exams import VIEW_KINDS, Exam, View
from medsuite.pretext.geometry import DEFAULT_MIN_ANGLE_DEG, Line, Plane, clip_to_image, intersect, line_in_pixels, meeting_point_2d, slice_locations


def line_heatmap(plane: Plane, line: Line, sigma_mm: float) -> np.ndarray:
    """Gaussian of each pixel centre's distance (mm) to the line: exp(-d^2 / 2 sigma^2), shape plane.shape."""
    distance = line.distance(plane.pixel_centres())
    return np.exp(-(distance**2) / (2.0 * sigma_mm**2)).astype(np.float32)


@dataclass
class ViewTargets:
    """Targets of one view: heatmaps (S, K, n0, n1), mask (S, K), locations (S,) or None for long-axis views."""

    view: View
    heatmaps: np.ndarray
    mask: np.ndarray
    locations: np.ndarray | None
    lines: list[dict]


def view_targets(view: View, others: dict[str, View], sigma_mm: float, min_angle_deg: float = DEFAULT_MIN_ANGLE_DEG) -> ViewTargets:
    """Heatmaps of the lines where each other view's (first) plane cuts each slice of ``view``."""
    n_slices = len(view.planes)
    heatmaps = np.zeros((n_slices, len(VIEW_KINDS), *view.planes[0].shape), dtype=np.float32)
    mask = np.zeros((n_slices, len(VIEW_KINDS)), dtype=np.float32)
    lines = []
    for s, plane in enumerate(view.planes):
        for c, kind in enumerate(VIEW_KINDS):
            other = others.get(kind)
            if other is None or other is view or kind == view.kind:
                continue
            # A stack cuts a long-axis view in one line per slice; its middle slice stands for it.
            other_plane = other.planes[len(other.planes) // 2]
            line = intersect(plane, other_plane, min_angle_deg)
            if line is None:
                lines.append({"view": view.name, "slice": s, "other": other.name, "other_kind": kind, "line": None, "reason": f"planes within {min_angle_deg} degrees of parallel"})
                continue
            heatmaps[s, c] = line_heatmap(plane, line, sigma_mm)
            mask[s, c] = 1.0
            lines.append({"view": view.name, "slice": s, "other": other.name, "other_kind": kind, "line": line})
    locations = slice_locations(view.planes) if view.kind == "SAX" and n_slices > 1 else None
    return ViewTargets(view=view, heatmaps=heatmaps, mask=mask, locations=locations, lines=lines)


def exam_targets(exam: Exam, sigma_mm: float, min_angle_deg: float = DEFAULT_MIN_ANGLE_DEG) -> list[ViewTargets]:
    """Targets for every primary view of an exam (one per kind)."""
    primary = exam.primary()
    return [view_targets(view, primary, sigma_mm, min_angle_deg) for view in primary.values()]


def describe_lines(targets: list[ViewTargets], exam: Exam) -> list[dict]:
    """lines.json entries: each line's world point and direction, and its endpoints in every primary image.

    Endpoints are (a0, a1) pixel coordinates in the order the view's NIfTI stores them, clipped to
    the image, or null where the line misses that image.
    """
    primary = exam.primary()
    entries = []
    for item in targets:
        for entry in item.lines:
            line: Line | None = entry["line"]
            record = {key: value for key, value in entry.items() if key != "line"}
            if line is not None:
                record["world_point_mm"] = line.point.round(4).tolist()
                record["world_direction"] = line.direction.round(6).tolist()
                record["endpoints_px"] = {}
                for view in primary.values():
                    per_slice = {}
                    for s, plane in enumerate(view.planes):
                        # The line lies in a plane only if both its point and direction do.
                        if abs((line.point - plane.origin) @ plane.normal) > 0.5 or abs(line.direction @ plane.normal) > 1e-3:
                            continue
                        ends = clip_to_image(*line_in_pixels(line, plane), plane.shape)
                        per_slice[str(s)] = None if ends is None else ends.round(3).tolist()
                    if per_slice:
                        record["endpoints_px"][view.name] = per_slice
            entries.append(record)
    return entries


def long_axis_spread(exam: Exam, min_angle_deg: float = DEFAULT_MIN_ANGLE_DEG) -> list[float]:
    """Per short-axis slice: the largest distance (mm) between pairwise meeting points of the long-axis lines.

    The 2CH, 3CH and 4CH planes are planned to share the left-ventricle long axis, so in each SAX
    slice their lines should cross at (nearly) one point; the spread measures the planning error.
    Empty when the exam lacks a SAX stack or two long-axis views.
    """
    primary = exam.primary()
    sax = primary.get("SAX")
    long_axis = [primary[k] for k in ("2CH", "3CH", "4CH") if k in primary]
    if sax is None or len(long_axis) < 2:
        return []
    spreads = []
    for plane in sax.planes:
        lines = [intersect(plane, view.planes[0], min_angle_deg) for view in long_axis]
        in_pixels = [line_in_pixels(line, plane) for line in lines if line is not None]
        points = []
        for i in range(len(in_pixels)):
            for j in range(i + 1, len(in_pixels)):
                meeting = meeting_point_2d(*in_pixels[i], *in_pixels[j])
                if meeting is not None:
                    points.append(plane.to_world(meeting))
        spreads.append(max((float(np.linalg.norm(p - q)) for i, p in enumerate(points) for q in points[i + 1 :]), default=0.0))
    return spreads
