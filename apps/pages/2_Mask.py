"""Mask review: acquisition-plane views with the label overlay, label volumes, cardiac function, QC
flags (doubtful cases first), correction with brush / eraser / undo, DICOM-SEG download, decision."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # viewer_ui, also under AppTest

import correction_ui
import streamlit as st
import viewer_ui as ui

from medsuite.errors import MedsuiteError
from medsuite.viewer.clinical import (
    CARDIAC_FIGURES,
    cardiac_function,
    dicom_seg_of,
    doubtful_first,
    qc_flag,
)
from medsuite.viewer.planes import acquisition_view, panels_for

root = ui.setup("Mask review")
result = ui.pick_result("segment", root)
if result is None:
    st.stop()
ui.energy_caption(result.report)
report = result.report
names = {int(k): str(v) for k, v in (report.get("labels") or {}).items() if str(k).lstrip("-").isdigit()}
cases = {name: entry for name, entry in result.cases.items() if isinstance(entry.get("output"), str)}
if not cases:
    st.warning(f"{result.path}/report.json lists no segmented case")
    st.stop()
order = doubtful_first(cases)
flags = {name: qc_flag(cases[name]) for name in order}
case = st.sidebar.selectbox("Case (doubtful first)", order, format_func=lambda n: f"⚠ {n}" if flags[n][0] else n, key="mask_case")
entry = cases[case]
try:
    mask_path = result.file(entry["output"])
    if not mask_path.is_file():  # batch runs may keep one folder per case
        mask_path = result.file(f"{case}/{entry['output']}")
    image_path = result.input_file(entry["input"])
    image, labels = ui.load(image_path), ui.load_labels(mask_path)
    if labels.shape != image.array.shape:
        raise MedsuiteError(mask_path, f"has shape {labels.shape}, the image {image.array.shape}", "rerun segment on this image")
except MedsuiteError as exc:
    st.error(exc.line())
    st.stop()
except KeyError as exc:
    st.error(f"{result.path}/report.json: case {case} has no {exc}; rerun segment")
    st.stop()

doubtful, why = flags[case]
if doubtful:
    st.warning("Flagged for careful review: " + ui.plain(why))
function = cardiac_function(report, case, entry)
if function:
    st.subheader(f"Cardiac function · patient {ui.plain(function['patient'])}")
    ui.tiles([(label, f"{function['figures'][key]:.1f} {unit}") for key, label, unit in CARDIAC_FIGURES if key in function["figures"]])
    st.caption("As computed by `medsuite segment` from the ED and ES masks of this patient (not re-measured by the viewer).")

preset = ui.window_controls("mask")
level, width = ui.window(image_path, preset)
opacity = st.sidebar.slider("Mask opacity", 0.0, 1.0, 0.45, 0.05, key="mask_opacity")
outline = st.sidebar.checkbox("Outline only", key="mask_outline")
correcting = st.sidebar.toggle("Correct the mask (brush, eraser, undo)", key="mask_correct")
edit = correction_ui.edit_for(result, case, labels) if correcting else None
shown_labels = edit.labels if edit is not None else labels
st.caption(f"Case **{ui.plain(case)}** · status {ui.plain(entry.get('status', 'n/a'))} · {' × '.join(f'{s:.2f}' for s in image.spacing)} mm voxels")

panels = panels_for(image.spacing, acquisition_view(entry.get("view"), (report.get("parameters") or {}).get("views"), report.get("views"), image_path.name))
panels = ui.cardiac_panels(panels, image_path, mask_path, names)
voxel = ui.crosshair_controls("mask", image, start=ui.start_voxel(image_path, mask_path), showing=f"{result.path}|{case}")
here = int(shown_labels[voxel])
st.caption(ui.crosshair_caption(image, voxel) + f" · label {here} ({names.get(here, 'background' if here == 0 else f'label {here}')})")
views = ui.tri_planar("mask", image, voxel, level, width, panels, labels=shown_labels, opacity=opacity, outline=outline)

if edit is not None:
    correction_ui.editor(result, case, image, edit, labels, mask_path, panels, voxel, level, width, names, opacity)

st.subheader("Label volumes and colours")
reported = entry.get("label_volumes_ml") or {}
rows = [
    {"colour": ui.colour_swatch(row["label"])} | row | {"reported_ml": reported.get(row["name"], reported.get(str(row["label"])))}
    for row in (ui.label_table(mask_path, names) if edit is None else ui.label_rows(shown_labels, image.voxel_volume_ml, names))
]
ui.small_table(
    rows,
    {"colour": "colour", "label": "label", "name": "name", "voxels": "voxels", "volume_ml": "volume (ml)", "reported_ml": "in report (ml)"},
    {"volume_ml": ".2f", "reported_ml": ".2f"},
)

st.subheader("Downloads")
d1, d2, d3, d4 = st.columns(4)
with d1:
    ui.download_file("Mask (NIfTI)", mask_path, "mask_dl_mask")
with d2:
    seg_name = dicom_seg_of(entry)
    if seg_name:
        try:
            ui.download_file("Mask as DICOM-SEG", result.file(seg_name), "mask_dl_dicom_seg")
        except MedsuiteError as exc:
            st.error(exc.line())
with d3:
    in_plane = panels[0]
    ui.download_png(f"Snapshot of the {in_plane.title} view (PNG)", views[in_plane.key], f"{case}_{in_plane.plane}.png", "mask_dl_png")
with d4:
    ui.download_file("Corrected mask (NIfTI)", correction_ui.corrected_path(result, case), "mask_dl_corrected")
ui.review_form(root, result, case, mask_path, "mask")
