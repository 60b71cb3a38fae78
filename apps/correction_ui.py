"""The mask page's correction panel: a drawing canvas over one view, brush / eraser / label, undo, save.

Each stroke is applied on mouse-up (streamlit-drawable-canvas sends its RGBA picture), then the
canvas starts empty again over the updated overlay, so undo is per stroke and nothing is applied
twice. The voxel arithmetic lives in ``medsuite.viewer.correction`` (unit-tested).
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import streamlit as st
import viewer_ui as ui
from PIL import Image
import streamlit_drawable_canvas
from streamlit_drawable_canvas import st_canvas

from medsuite.errors import MedsuiteError
from medsuite.io import Volume
from medsuite.viewer.correction import (
    CORRECTED_SUFFIX,
    MaskEdit,
    painted_voxels,
    save_corrected,
)
from medsuite.viewer.overlay import label_colour
from medsuite.viewer.planes import Panel
from medsuite.viewer.slicing import (
    display_shape,
    plane_slice,
    plane_spacing,
    slice_index,
)
from medsuite.viewer.views import render_view

def _without_toolbar() -> None:
    """The canvas without its own undo / redo / reset toolbar: the page's Undo is the one undo, and a
    reset there would desynchronise the canvas from the applied strokes. streamlit-drawable-canvas
    0.13 has no option for it (it hides the toolbar only when disabled) and keeps its styles in a
    shadow root the page's CSS cannot reach, so its component is declared again with the same
    frontend bundle and one more style rule (Streamlit overwrites a component declared twice)."""
    package = Path(streamlit_drawable_canvas.__file__).parent
    css = next((package / "frontend" / "build").glob("index-*.css")).read_text()
    streamlit_drawable_canvas.out = st.components.v2.component(
        "streamlit-drawable-canvas.streamlit_drawable_canvas",
        js="index-*.js",
        css=css + "\n.dc-toolbar{display:none !important}\n",  # a newline: inline CSS, not a path
        html='<div class="canvas-root"></div>',
        isolate_styles=True,
    )


_without_toolbar()

ERASER = "Eraser"
#: Longer side of the drawing canvas in screen pixels: room for a brush of one voxel.
CANVAS_SIDE = 512


def corrected_path(result, case: str) -> Path:
    return result.path / f"{case}{CORRECTED_SUFFIX}"


def edit_for(result, case: str, labels: np.ndarray) -> MaskEdit:
    """This session's edit of the case's mask (started from the mask on disk)."""
    key = f"mask_edit|{result.path}|{case}"
    if key not in st.session_state or st.session_state[key].labels.shape != labels.shape:
        st.session_state[key] = MaskEdit(labels.astype(np.int16, copy=True))
    return st.session_state[key]


def editor(result, case: str, image: Volume, edit: MaskEdit, original: np.ndarray, mask_path: Path, panels: list[Panel], voxel, level: float, width: float, names: dict[int, str], opacity: float) -> None:
    st.subheader("Correct the mask")
    left, right = st.columns([1, 3])
    titles = {p.title: p.plane for p in panels if p.grid is None}  # strokes map to voxels of grid planes only
    plane = titles[left.radio("Draw on", list(titles), key="mask_draw_plane")]
    tool = left.radio("Tool", ("Brush", ERASER), horizontal=True, key="mask_tool")
    choices = sorted(set(names) | {int(v) for v in np.unique(original) if v > 0}) or [1]
    label = left.selectbox("Label", choices, format_func=lambda v: f"{v}: {names.get(v, f'label {v}')}", key="mask_brush_label", disabled=tool == ERASER)
    brush = left.slider("Brush diameter (voxels)", 1, 15, 3, key="mask_brush_size")
    index = slice_index(plane, voxel)
    pixel_mm = plane_spacing(image.spacing, plane)
    shown = display_shape(plane_slice(image.array, plane, index).shape, pixel_mm)
    scale = CANVAS_SIDE / max(shown)
    rgb = ui.with_letters(render_view(image.array, image.spacing, plane, voxel, level, width, labels=edit.labels, opacity=opacity, crosshair=False, scale=scale), image, plane)
    per_voxel = rgb.shape[1] / plane_slice(image.array, plane, index).shape[1]
    colour = (255, 255, 255) if tool == ERASER else label_colour(int(label))
    counter = st.session_state.setdefault("mask_canvas_n", 0)
    with right:
        st.caption(f"{tool} on slice {index}: draw, release to apply. {len(edit.history)} stroke(s) applied.")
        drawn = st_canvas(
            stroke_width=max(1, round(brush * per_voxel)),
            stroke_color="#{:02x}{:02x}{:02x}".format(*colour),
            background_image=Image.fromarray(rgb),
            height=rgb.shape[0],
            width=rgb.shape[1],
            drawing_mode="freedraw",
            return_image_data=True,
            key=f"mask_canvas_{counter}",
        )
    strokes = drawn.image_data if drawn is not None else None
    if strokes is not None and strokes.ndim == 3 and strokes.shape[2] == 4 and (strokes[..., 3] >= 128).any():
        changed = edit.paint(painted_voxels(strokes, plane, index, image.array.shape), 0 if tool == ERASER else int(label))
        st.session_state["mask_canvas_n"] = counter + 1  # a fresh, empty canvas over the new overlay
        st.session_state["mask_last_stroke"] = f"Last stroke changed {changed} voxels"
        st.rerun()
    if "mask_last_stroke" in st.session_state:
        left.caption(st.session_state["mask_last_stroke"])
    b1, b2 = left.columns(2)
    if b1.button("Undo", key="mask_undo", disabled=not edit.edited, width="stretch"):
        st.session_state["mask_last_stroke"] = f"Undo restored {edit.undo()} voxels"
        st.rerun()
    if b2.button("Discard edits", key="mask_discard", disabled=not edit.edited, width="stretch"):
        st.session_state.pop(f"mask_edit|{result.path}|{case}", None)
        st.rerun()
    reviewer = left.text_input("Your name (for the log)", key="mask_corrector")
    differs = int(np.count_nonzero(edit.labels != original))
    left.caption(f"{differs} voxels differ from the model's mask")
    if left.button("Save corrected mask", key="mask_save", type="primary", width="stretch"):
        target = corrected_path(result, case)
        try:
            entry = save_corrected(edit.labels, nib.load(str(mask_path)), target, log_dir=ui.results_dir(), case=case, source_mask=mask_path, reviewer=reviewer, changed=differs)
        except MedsuiteError as exc:
            left.error(exc.line())
        else:
            left.success(f"Saved {target.name}: {entry['voxels_changed']} voxels changed (sha256 {entry['corrected_sha256'][:12]}…), logged in corrections.jsonl")
