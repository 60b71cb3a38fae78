"""Which panels a volume gets: its own acquisition planes, named by what they are, with edge letters.

A cardiac short-axis stack is oblique and has 8-10 mm slices: naming its panels after the nearest
world axes puts the short-axis image under "coronal". Here the panel that holds the slice axis (the
coarsest one) fixed is the in-plane view; the two others are through-plane reformats. The volume is
only permuted/flipped to RAS-canonical order (never rotated), so every panel is a plane of the
acquisition grid, and ``with_aspect`` resamples it linearly to square pixels at the in-plane spacing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from medsuite.viewer.longaxis import PlaneGrid, centred, plane_grid, standard_planes
from medsuite.viewer.slicing import PLANES, plane_axes

#: Slice spacing at least this many times the in-plane spacing makes a stack "anisotropic".
ANISOTROPY = 1.5
#: A world axis contributes a letter to an edge label when its share of the direction is this large.
LETTER_SHARE = 0.3
_LETTERS = (("L", "R"), ("P", "A"), ("I", "S"))  # (negative, positive) world RAS direction
_SAX_WORDS = re.compile(r"(^|[^a-z])(sax|short[ _-]?axis)([^a-z]|$)", re.IGNORECASE)
_LAX_WORDS = re.compile(r"(^|[^a-z])(lax|long[ _-]?axis|[234]ch)([^a-z]|$)", re.IGNORECASE)


@dataclass(frozen=True)
class Panel:
    """One view: the canonical plane it slices and the name a reader sees."""

    plane: str
    title: str
    #: A world-space plane (4-chamber, 2-chamber) instead of a plane of the acquisition grid.
    grid: PlaneGrid | None = None

    @property
    def key(self) -> str:
        return self.plane if self.grid is None else self.title


def slice_axis(spacing: np.ndarray) -> int | None:
    """The canonical axis with the coarsest spacing when the stack is anisotropic, else None."""
    spacing = np.asarray(spacing, dtype=float)[:3]
    coarse = int(np.argmax(spacing))
    finer = np.delete(spacing, coarse)
    return coarse if spacing[coarse] >= ANISOTROPY * float(finer.max()) else None


def acquisition_view(*hints: Any) -> str | None:
    """'short-axis' or 'long-axis' when a hint says so (a data card's ``views``, a case's ``view``,
    a DICOM SeriesDescription, a file name such as ``sax_ed.nii.gz``), else None."""
    for hint in hints:
        values = hint if isinstance(hint, (list, tuple)) else [hint]
        for value in values:
            text = Path(str(value)).name if isinstance(value, Path) else str(value or "")
            if _SAX_WORDS.search(text):
                return "short-axis"
            if _LAX_WORDS.search(text):
                return "long-axis"
    return None


def panels_for(spacing: np.ndarray, view: str | None = None) -> list[Panel]:
    """Acquisition-plane panels, in-plane first; isotropic volumes keep axial / coronal / sagittal."""
    axis = slice_axis(spacing)
    if axis is None:
        return [Panel(plane, plane) for plane in PLANES]
    in_plane = next(p for p in PLANES if plane_axes(p)[0] == axis)
    others = [p for p in PLANES if p != in_plane]
    if view == "short-axis":
        # Planes of the grid, not the standard long-axis views (``long_axis_panels`` puts those here).
        names = ["short-axis (in-plane)", "through-plane reformat 1", "through-plane reformat 2"]
    elif view == "long-axis":
        names = ["long-axis (in-plane)", "through-plane reformat 1", "through-plane reformat 2"]
    else:
        names = ["in-plane", "through-plane reformat 1", "through-plane reformat 2"]
    return [Panel(plane, name) for plane, name in zip([in_plane, *others], names)]


def long_axis_panels(panels: list[Panel], shape: tuple[int, ...], affine: np.ndarray, labels: np.ndarray | None, names: dict[int, str], image_path: Path | None) -> list[Panel]:
    """A short-axis (or unnamed in-plane) stack's first panel, then its 4-chamber and 2-chamber planes
    (``longaxis.standard_planes``) in place of the reformats, resampled at the in-plane spacing; the
    reformats stay where no plane is found."""
    if len(panels) != 3 or not panels[0].title.startswith(("short-axis", "in-plane")):
        return panels
    axis = plane_axes(panels[0].plane)[0]
    found = standard_planes(shape, affine, labels, names, image_path, axis)
    step = float(min(np.linalg.norm(np.asarray(affine)[:3, a]) for a in range(3) if a != axis))
    extra = [Panel(panels[0].plane, title, plane_grid(centred(plane, shape, affine), shape, affine, step)) for title, plane in found.values()]
    return [panels[0], *extra, *panels[1 + len(extra) :]]


def direction_letters(direction: np.ndarray) -> str:
    """'R', 'A', 'SL'...: the world directions (RAS) a screen direction points to, largest first."""
    direction = np.asarray(direction, dtype=float)
    share = np.abs(direction) / max(float(np.abs(direction).sum()), 1e-12)
    order = np.argsort(-share)
    return "".join(_LETTERS[a][int(direction[a] > 0)] for a in order if share[a] >= LETTER_SHARE) or "?"


def edge_letters(affine: np.ndarray, plane: str) -> dict[str, str]:
    """Letters for the top, bottom, left and right edges of a ``plane_slice`` view of a canonical volume.

    ``plane_slice`` flips both screen axes: up on screen is +row voxel axis, right is -column axis.
    """
    _, row_axis, col_axis = plane_axes(plane)
    up = np.asarray(affine)[:3, row_axis]
    right = -np.asarray(affine)[:3, col_axis]
    return {"top": direction_letters(up), "bottom": direction_letters(-up), "left": direction_letters(-right), "right": direction_letters(right)}


def grid_letters(grid: PlaneGrid) -> dict[str, str]:
    """Edge letters of a world-space plane panel."""
    up, right = -grid.plane.down, grid.plane.right
    return {"top": direction_letters(up), "bottom": direction_letters(-up), "left": direction_letters(-right), "right": direction_letters(right)}


def draw_edge_letters(rgb: np.ndarray, letters: dict[str, str], colour: tuple[int, int, int] = (255, 215, 0)) -> np.ndarray:
    """The view with its orientation letters at the middle of each edge, on a dark box (as Slicer shows them)."""
    from PIL import Image, ImageDraw

    image = Image.fromarray(np.asarray(rgb, dtype=np.uint8))
    draw = ImageDraw.Draw(image)
    font = _font(max(12, min(image.size) // 16))
    width, height = image.size
    for edge, text in letters.items():
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        w, h = right - left, bottom - top
        x = {"left": 3, "right": width - w - 3}.get(edge, (width - w) // 2)
        y = {"top": 3, "bottom": height - h - 3}.get(edge, (height - h) // 2)
        draw.rectangle((x - 2, y - 2, x + w + 2, y + h + 2), fill=(0, 0, 0))
        draw.text((x - left, y - top), text, fill=colour, font=font)
    return np.asarray(image)


@lru_cache(maxsize=8)
def _font(size: int):
    from PIL import ImageFont

    return ImageFont.load_default(size=size)
