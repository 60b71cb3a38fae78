"""Mask review: label overlay (per-label colour, opacity, outline) and label volumes in ml."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # viewer_ui, also under AppTest

import streamlit as st  # noqa: E402
import viewer_ui as ui  # noqa: E402

from medsuite.errors import MedsuiteError  # noqa: E402
from medsuite.viewer.overlay import label_colour  # noqa: E402

root = ui.setup("Mask review")
result = ui.pick_result("segment", root)
if result is None:
    st.stop()
ui.energy_caption(result.report)
names = {int(k): v for k, v in (result.report.get("labels") or {}).items()}
cases = {name: entry for name, entry in (result.report.get("cases") or {}).items() if entry.get("output")}
if not cases:
    st.warning(f"{result.path}/report.json lists no segmented case")
    st.stop()
case = st.sidebar.selectbox("Case", sorted(cases), key="mask_case")
entry = cases[case]
try:
    mask_path = result.file(entry["output"])
    if not mask_path.is_file():  # batch runs may keep one folder per case
        mask_path = result.file(f"{case}/{entry['output']}")
    image_path = Path(entry["input"])
    image, labels = ui.load(image_path), ui.load_labels(mask_path)
    if labels.shape != image.array.shape:
        raise MedsuiteError(mask_path, f"has shape {labels.shape}, the image {image.array.shape}", "rerun segment on this image")
except MedsuiteError as exc:
    st.error(exc.line())
    st.stop()

preset = ui.window_controls("mask")
level, width = ui.window(image_path, preset)
opacity = st.sidebar.slider("Mask opacity", 0.0, 1.0, 0.45, 0.05, key="mask_opacity")
outline = st.sidebar.checkbox("Outline only", key="mask_outline")
st.caption(f"Case **{case}** · status {entry.get('status', 'n/a')} · {' × '.join(f'{s:.2f}' for s in image.spacing)} mm voxels")

voxel = ui.crosshair_controls("mask", image)
here = int(labels[voxel])
st.caption(ui.crosshair_caption(image, voxel) + f" · label {here} ({names.get(here, 'background' if here == 0 else f'label {here}')})")
views = ui.tri_planar("mask", image, voxel, level, width, labels=labels, opacity=opacity, outline=outline)

table, legend = st.columns([3, 1])
reported = entry.get("label_volumes_ml") or {}
rows = [row | {"reported_ml": reported.get(row["name"], reported.get(str(row["label"])))} for row in ui.label_table(mask_path, names)]
table.subheader("Label volumes")
table.dataframe(rows, hide_index=True, column_config={"volume_ml": st.column_config.NumberColumn("volume (ml)", format="%.2f"), "reported_ml": st.column_config.NumberColumn("in report (ml)", format="%.2f")})
legend.subheader("Colours")
for row in rows:
    r, g, b = label_colour(row["label"])
    legend.markdown(f"<span style='color:rgb({r},{g},{b})'>■</span> {row['name']}", unsafe_allow_html=True)

st.subheader("Downloads")
d1, d2 = st.columns(2)
with d1:
    ui.download_file("Mask (NIfTI)", mask_path, "mask_dl_mask")
with d2:
    ui.download_png("Snapshot of the axial view (PNG)", views[0], f"{case}_axial.png", "mask_dl_png")
ui.review_form(root, result, case, mask_path, "mask")
