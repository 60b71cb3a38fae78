"""medsuite review station: home page (result folders found, and any NIfTI/DICOM a clinician uploads).

Run with ``medsuite view RESULTS_DIR``; the pages beside this file review registrations, masks and
concept explanations.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # viewer_ui, also under AppTest

import streamlit as st
import viewer_ui as ui

from medsuite.errors import MedsuiteError
from medsuite.viewer.planes import panels_for
from medsuite.viewer.results import read_result

PAGES = {"register": ("pages/1_Registration.py", "Registration review"), "segment": ("pages/2_Mask.py", "Mask review"), "classify": ("pages/3_Concept.py", "Concept explanation")}

root = ui.setup("medsuite review station")
st.caption(f"Results folder: `{root}` · nothing outside it is opened from what you type")

results = ui._results(str(root))
counts = {kind: sum(r.kind == kind for r in results) for kind in ("register", "segment", "classify", "demo")}
ui.tiles([(f"{kind} results", str(count)) for kind, count in counts.items()])
for kind, (page, title) in PAGES.items():
    if counts[kind]:
        st.page_link(page, label=f"{title} ({counts[kind]})")

typed = st.text_input("Check a result folder (path inside the results folder)", key="home_typed")
if typed:
    try:
        found = read_result(typed, root)
        st.success(f"{found.label}: open it on the {PAGES.get(found.kind, ('', 'demo'))[1]} page")
    except MedsuiteError as exc:
        st.error(exc.line())

st.header("Look at an image")
upload = ui.upload_volume()
if upload is None:
    st.info("Upload a NIfTI or DICOM file in the sidebar to look at it here.")
else:
    try:
        vol = ui.load_upload(upload)
        preset = ui.window_controls("home")
        level, width = ui.window(upload, preset)
    except MedsuiteError as exc:
        st.error(f"Cannot open the upload: {exc.problem}; {exc.fix}")
    else:
        voxel = ui.crosshair_controls("home", vol, start=ui.start_voxel(upload), showing=str(upload))
        st.caption(ui.crosshair_caption(vol, voxel))
        ui.tri_planar("home", vol, voxel, level, width, panels_for(vol.spacing))
        st.caption(f"{vol.array.shape} voxels of {' × '.join(f'{s:.2f}' for s in vol.spacing)} mm · window level {level:.4g}, width {width:.4g}")
