"""Concept explanation: predicted class, probabilities, concept contributions, images, intervention."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # viewer_ui, also under AppTest

import concept_charts
import streamlit as st
import viewer_ui as ui

from medsuite.errors import MedsuiteError
from medsuite.viewer.slicing import PLANES
from medsuite.viewer.views import render_view
from medsuite.viewer.windowing import auto_window

try:  # the concepts pipeline's bottleneck recomputation; the page still explains without it
    from medsuite.concepts import intervene
except ImportError:
    try:
        from medsuite.concepts.explain import intervene
    except ImportError:
        intervene = None

AS_MODEL = "as the model says"
CHOICES = (AS_MODEL, "present", "absent", "custom score")
PICTURE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")

@st.cache_data(max_entries=32, show_spinner=False)
def chart(kind: str, data: str, winner: str) -> bytes:
    """A chart's PNG, drawn once per prediction shown (the data as JSON: a hashable cache key)."""
    return getattr(concept_charts, kind)(json.loads(data), winner)


root = ui.setup("Concept explanation")
result = ui.pick_result("classify", root)
if result is None:
    st.stop()
ui.energy_caption(result.report)
cases = {name: entry for name, entry in result.cases.items() if isinstance(entry.get("prediction"), str)}
if not cases:
    st.warning(f"{result.path}/report.json lists no classified case")
    st.stop()
case = st.sidebar.selectbox("Case", sorted(cases), key="concept_case")
try:
    prediction_path = result.file(cases[case]["prediction"])
    prediction = json.loads(prediction_path.read_text())
    concepts = prediction["concepts"]
except (MedsuiteError, OSError, json.JSONDecodeError, KeyError) as exc:
    st.error(exc.line() if isinstance(exc, MedsuiteError) else f"{case}: cannot read its prediction.json ({exc}); rerun classify")
    st.stop()

# Intervention controls first, so the prediction shown below is already the corrected one. They are
# drawn only when asked for and applied together ("Apply"): one recomputation, and no drop-down per
# concept (24 in the demo) drawn before the page's first paint.
corrections: dict[str, float | str] = {}
if st.sidebar.toggle("Intervene on concepts", key=f"concept_intervene_{case}", help="Set concepts the way you read them; the prediction is recomputed from the concept bottleneck."):
    if intervene is None:
        st.sidebar.info("Intervention needs medsuite.concepts (not installed in this build).")
    else:
        with st.sidebar.form(f"concept_intervene_form_{case}", border=False):
            st.caption("Set a concept the way you read it, then Apply.")
            for k, concept in enumerate(concepts):
                label = concept["name"].replace(":", "\\:")  # "FUNDUS:orange pigment" is not a colour directive
                choice = st.selectbox(f"{label} (score {concept['score']:+.2f})", CHOICES, key=f"concept_set_{case}_{k}")
                if choice == "custom score":
                    corrections[concept["name"]] = float(st.number_input("score", value=float(concept["score"]), step=0.1, key=f"concept_value_{case}_{k}"))
                elif choice != AS_MODEL:
                    corrections[concept["name"]] = choice
            st.form_submit_button("Apply", type="primary")
shown = prediction
if corrections:
    try:
        shown = intervene(prediction, corrections)
    except MedsuiteError as exc:
        st.error(exc.line())

winner = shown["predicted_class"]
ui.tiles(
    [
        ("Predicted class", winner, "" if winner == prediction["predicted_class"] else f"was {prediction['predicted_class']}"),
        (f"P({winner})", f"{shown['probabilities'][winner]:.3f}", f"{shown['probabilities'][winner] - prediction['probabilities'][winner]:+.3f} after your intervention" if corrections else ""),
        ("Modalities used", ", ".join(shown.get("modalities_used", [])) or "n/a"),
    ]
)
if corrections:
    st.info("After your intervention: " + "; ".join(f"{name} → {value}" for name, value in corrections.items()))

left, right = st.columns(2)
left.subheader("Class probabilities")
left.image(chart("probabilities", json.dumps(shown["probabilities"]), winner), width="stretch")
right.subheader(f"Concept contributions to “{winner}”")
ranked = sorted(shown["concepts"], key=lambda c: -abs(c["contributions"][winner]))
right.image(chart("contributions", json.dumps(ranked), winner), width="stretch")
# Drawn on demand: the data grid is the heaviest script the browser would load for this page.
if st.toggle("Table of scores and contributions to every class", key="concept_table"):
    st.dataframe(
        [{"concept": c["name"], "modality": c.get("modality", ""), "score": c["score"], **{f"→ {cls}": c["contributions"][cls] for cls in shown["classes"]}} for c in ranked],
        hide_index=True,
    )

st.subheader("Images")
images = prediction.get("images") or {}
if not images:
    st.info("This prediction names no images.")
for modality, paths in images.items():
    st.markdown(f"**{ui.plain(modality)}**")
    paths = paths if isinstance(paths, list) else [paths]
    cols = st.columns(4)  # a fixed grid: one picture is not blown up to the page width
    for n, item in enumerate(paths):
        with cols[n % len(cols)]:
            try:
                path = result.named_file(str(item), near=prediction_path.parent)
                if path.suffix.lower() in PICTURE_SUFFIXES:
                    ui.show_image(ui.picture(path), f"{path.parent.name}/{path.name}")
                else:
                    vol = ui.load(path)
                    middle = tuple(s // 2 for s in vol.array.shape[:3])
                    ui.show_image(render_view(vol.array, vol.spacing, PLANES[0], middle, *auto_window(vol.array), crosshair=False), path.name)
            except (MedsuiteError, OSError) as exc:
                st.warning(f"{Path(str(item)).name}: cannot show ({exc.line() if isinstance(exc, MedsuiteError) else exc.__class__.__name__})")

st.subheader("Downloads")
d1, d2 = st.columns(2)
d1.download_button("Prediction (JSON)", json.dumps(shown if corrections else prediction, indent=2), file_name=f"{case}_{'intervened' if corrections else 'prediction'}.json", mime="application/json", key="concept_dl_pred")
with d2:
    figure = ui.result_file(result, cases[case].get("explanation"))
    if figure:
        ui.download_file("Explanation figure (PNG)", figure, "concept_dl_figure")
ui.review_form(root, result, case, prediction_path, "concept")
