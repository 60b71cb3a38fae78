"""Registration review: fixed / moving / warped, checkerboard, difference, fade, flicker, grid, Jacobian, lesion."""

from __future__ import annotations

import base64
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # viewer_ui, also under AppTest

import numpy as np
import streamlit as st
import viewer_ui as ui

from medsuite.errors import MedsuiteError
from medsuite.viewer.compare import compare_grey, flicker_png
from medsuite.viewer.deformation import jacobian_rgb
from medsuite.viewer.planes import panels_for
from medsuite.viewer.slicing import plane_slice, slice_index
from medsuite.viewer.views import finish_view, grid_view, render_view
from medsuite.viewer.windowing import apply_window, grey_to_rgb

MODES = ("Side by side", "Checkerboard", "Difference", "Fade", "Flicker", "Deformation grid", "Jacobian", "Lesion & inpainted")

root = ui.setup("Registration review")
result = ui.pick_result("register", root)
if result is None:
    st.stop()
ui.energy_caption(result.report)
report, outputs = result.report, result.report.get("outputs", {})
try:
    inputs = [item["path"] for item in report.get("inputs", [])]
    fixed_path = result.input_file(report.get("fixed") or inputs[0])
    moving_path = result.input_file(report.get("moving") or inputs[1])
    warped_path = result.file(outputs["warped"])
    fixed, moving, warped = ui.load(fixed_path), ui.load(moving_path), ui.load(warped_path)
    if warped.array.shape != fixed.array.shape:
        raise MedsuiteError(warped_path, f"has shape {warped.array.shape}, the fixed image {fixed.array.shape}", "rerun register; the warped image must be on the fixed grid")
except (MedsuiteError, KeyError, IndexError) as exc:
    st.error(exc.line() if isinstance(exc, MedsuiteError) else f"{result.path}/report.json: missing {exc}; rerun register")
    st.stop()

preset = ui.window_controls("reg")
level, width = ui.window(fixed_path, preset)
m_level, m_width = ui.window(moving_path, preset)
ddf_path = ui.result_file(result, outputs.get("ddf"))
jacobian, folding = ui.jacobian_of(result, ddf_path) if ddf_path and ddf_path.is_file() else (None, None)

ui.tiles(
    [
        ("Folding (det J ≤ 0)", f"{folding:.3f} %" if folding is not None else "n/a"),
        ("Lesion volume", f"{report['lesion_volume_ml']:.2f} ml" if report.get("lesion_volume_ml") is not None else "n/a"),
        ("Registration time", f"{report['seconds']:.1f} s" if report.get("seconds") is not None else "n/a"),
        ("Fixed voxel size", "×".join(f"{s:.3g}" for s in fixed.spacing) + " mm"),
    ]
)

panels = panels_for(fixed.spacing)
voxel = ui.crosshair_controls("reg", fixed, start=ui.start_voxel(fixed_path), showing=str(result.path))
st.caption("Fixed image · " + ui.crosshair_caption(fixed, voxel))
ui.tri_planar("reg", fixed, voxel, level, width, panels)

st.subheader("Compare")
left, right = st.columns([1, 3])
titles = {p.title: p.plane for p in panels}
plane = titles[left.radio("Plane", list(titles), key="reg_plane")]
mode = left.radio("View", MODES, key="reg_mode")
index = slice_index(plane, voxel)


def grey(vol_array, lev: float, wid: float):
    return apply_window(plane_slice(vol_array, plane, index), lev, wid)


def finish(rgb):
    return finish_view(rgb, fixed.spacing, plane, voxel, fixed.array.shape)


snapshot = None
with right:
    if mode == "Side by side":
        mv = ui.world_matched_voxel(fixed, voxel, moving)
        labels_name = outputs.get("warped_labels")
        show_labels = bool(labels_name) and left.checkbox("Warped labels on the warped image", value=False, key="reg_labels")
        labels_path = ui.result_file(result, labels_name) if show_labels else None
        warped_labels = ui.load_labels(labels_path) if labels_path else None
        if warped_labels is not None and warped_labels.shape != warped.array.shape:
            st.warning("warped_labels is not on the fixed grid; not shown")
            warped_labels = None
        panels = [
            ("Fixed", render_view(fixed.array, fixed.spacing, plane, voxel, level, width)),
            ("Moving (same world point)", render_view(moving.array, moving.spacing, plane, mv, m_level, m_width)),
            ("Warped moving" + (" + warped labels" if warped_labels is not None else ""), render_view(warped.array, warped.spacing, plane, voxel, level, width, labels=warped_labels)),
        ]
        for col, (title, rgb) in zip(st.columns(3), panels):
            with col:
                ui.show_image(rgb, title)
        snapshot = panels[2][1]
        if warped_labels is not None:
            legend = [{"colour": ui.colour_swatch(int(v)), "label": int(v)} for v in np.unique(warped_labels) if v > 0]
            ui.small_table(legend, {"colour": "colour", "label": "label"})
            st.caption("Warped labels: the moving image's labels carried by the deformation onto the fixed grid.")
    elif mode in ("Checkerboard", "Difference", "Fade"):
        if mode == "Checkerboard":
            tiles = left.slider("Tiles", 2, 16, 8, key="reg_tiles")
            mixed = compare_grey(grey(fixed.array, level, width), grey(warped.array, level, width), "checkerboard", tiles=tiles)
        elif mode == "Difference":
            mixed = compare_grey(grey(fixed.array, level, width), grey(warped.array, level, width), "difference")
        else:
            amount = left.slider("Fade fixed → warped", 0.0, 1.0, 0.5, 0.05, key="reg_fade")
            mixed = compare_grey(grey(fixed.array, level, width), grey(warped.array, level, width), "fade", fade=amount)
        snapshot = finish(grey_to_rgb(mixed))
        ui.show_image(snapshot, f"{mode}: fixed vs warped ({plane})")
    elif mode == "Flicker":
        period = left.slider("Period (ms)", 200, 2000, 600, 100, key="reg_period")
        frames = [finish(grey_to_rgb(grey(v.array, level, width))) for v in (fixed, warped)]
        snapshot = frames[1]
        encoded = base64.b64encode(flicker_png(frames, period)).decode()
        st.markdown(f'<img src="data:image/png;base64,{encoded}" style="width:100%;background:#000" alt="flicker fixed/warped">', unsafe_allow_html=True)
        st.caption("Flicker alternates fixed and warped (animated PNG, lossless)")
    elif mode == "Deformation grid":
        if ddf_path is None or not ddf_path.is_file():
            st.warning("This result has no ddf.nii.gz")
        else:
            grid_mm = left.slider("Grid spacing (mm)", 2.0, 20.0, 10.0, 1.0, key="reg_grid")
            snapshot = grid_view(fixed.array, fixed.spacing, plane, voxel, level, width, ui.load_ddf(ddf_path).array, grid_mm=grid_mm)
            ui.show_image(snapshot, f"Deformation grid ({grid_mm:g} mm) over the fixed image ({plane}); each grid point p drawn at p + u(p)")
    elif mode == "Jacobian":
        if jacobian is None:
            st.warning("This result has no ddf.nii.gz or jacobian.nii.gz")
        else:
            spread = left.slider("Colour range ± around 1", 0.1, 2.0, 0.5, 0.1, key="reg_spread")
            det = plane_slice(jacobian, plane, index)
            snapshot = finish(jacobian_rgb(det, spread))
            ui.show_image(snapshot, f"det J: blue < 1 (contraction), white = 1, red > 1 (expansion), green = folding (≤ 0); this slice {det.min():.2f} to {det.max():.2f}")
    else:
        lesion_name, inpaint_name = outputs.get("lesion_mask"), outputs.get("inpainted")
        lesion_path, inpaint_path = ui.result_file(result, lesion_name), ui.result_file(result, inpaint_name)
        lesion = ui.load(lesion_path).array if lesion_path else None
        if lesion is not None and lesion.shape != warped.array.shape:
            st.warning("The lesion mask is not on the fixed grid; shown without overlay")
            lesion = None
        opacity = left.slider("Lesion opacity", 0.0, 1.0, 0.4, 0.05, key="reg_lesion_opacity")
        outline = left.checkbox("Outline only", key="reg_lesion_outline")
        panels = [("Warped + GIRNet lesion mask", render_view(warped.array, warped.spacing, plane, voxel, level, width, labels=None if lesion is None else (lesion > 0.5).astype("uint8"), opacity=opacity, outline=outline))]
        if inpaint_path:
            inpainted = ui.load(inpaint_path)
            iv = ui.world_matched_voxel(fixed, voxel, inpainted)
            panels.append(("Inpainted (lesion replaced by healthy-looking tissue)", render_view(inpainted.array, inpainted.spacing, plane, iv, level, width)))
        for col, (title, rgb) in zip(st.columns(len(panels)), panels):
            with col:
                ui.show_image(rgb, title)
        snapshot = panels[0][1]

st.subheader("Downloads")
d1, d2, d3 = st.columns(3)
with d1:
    ui.download_file("Warped image (NIfTI)", warped_path, "reg_dl_warped")
with d2:
    if ui.result_file(result, outputs.get("lesion_mask")):
        ui.download_file("Lesion mask (NIfTI)", ui.result_file(result, outputs["lesion_mask"]), "reg_dl_lesion")
with d3:
    if snapshot is not None:
        ui.download_png("Snapshot of this view (PNG)", snapshot, f"{result.path.name}_{plane}_{mode.replace(' ', '_').lower()}.png", "reg_dl_png")
ui.review_form(root, result, result.path.name, warped_path, "reg")
