"""Streamlit glue shared by the review station's pages: cached loading, crosshair, review form.

Pictures are computed by ``medsuite.viewer`` (pure, tested); this module only lays them out and
keeps state. Volumes are cached as resources (no copy per rerun), so moving a slider re-slices only.
"""

from __future__ import annotations

import base64
import hashlib
import html
import os
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import streamlit as st
from PIL import Image

from medsuite.errors import MedsuiteError
from medsuite.io import Volume, read_image
from medsuite.viewer.compare import to_png
from medsuite.viewer.deformation import ddf_to_canonical_voxels, folding_percent, jacobian_determinant
from medsuite.data.labels import label_volumes_ml
from medsuite.viewer.overlay import label_colour
from medsuite.viewer.planes import Panel, draw_edge_letters, edge_letters, grid_letters, long_axis_panels
from medsuite.viewer.results import RESULTS_ENV, ResultFolder, energy_summary, find_results, input_roots_from_env, model_sha256, model_version, of_kind, read_result
from medsuite.viewer.reviews import DECISIONS, LOG_NAME, append_review
from medsuite.viewer.slicing import centre_voxel, click_to_voxel, crosshair_at, slice_index, voxel_to_world, world_to_voxel
from medsuite.viewer.uploads import SessionUploads, check_declared_size
from medsuite.viewer.views import load_canonical, plane_click_to_voxel, render_plane, render_view
from medsuite.viewer.windowing import PRESET_NAMES, window_for

AXIS_NAMES = ("x voxel (patient left → right)", "y voxel (posterior → anterior)", "z voxel (inferior → superior)")
DARK_CSS = (
    "<style>[data-testid='stImage'] img {background:#000;}"
    " table.medsuite-table {border-collapse:collapse; font-size:0.875rem; margin-bottom:0.5rem;}"
    " table.medsuite-table th, table.medsuite-table td {border:1px solid rgba(250,250,250,0.2); padding:0.25rem 0.75rem; text-align:left;}"
    " table.medsuite-table th {color:rgba(250,250,250,0.6); font-weight:400;}"
    " table.medsuite-table td.number {text-align:right; font-variant-numeric:tabular-nums;}"
    " table.medsuite-table img {display:block;}"
    " .medsuite-tiles {display:grid; grid-template-columns:repeat(auto-fill, minmax(12rem, 1fr)); gap:0.75rem 1.5rem; margin-bottom:0.75rem;}"
    " .medsuite-tiles .label {font-size:0.875rem; color:rgba(250,250,250,0.75);}"
    " .medsuite-tiles .value {font-size:1.9rem; line-height:1.25; white-space:nowrap; overflow:hidden; text-overflow:ellipsis;}"
    " .medsuite-tiles .note {font-size:0.8rem; color:rgba(250,250,250,0.6);}</style>"
)


def setup(title: str) -> Path:
    st.set_page_config(page_title=f"medsuite · {title}", layout="wide", initial_sidebar_state="expanded")
    st.html(DARK_CSS)  # style only: no Markdown renderer chunk to load for it
    st.title(title)
    return results_dir()


def results_dir() -> Path:
    return Path(os.environ.get(RESULTS_ENV, os.getcwd())).resolve()


def _stamp(path: Path) -> float:
    """Modification time: part of the cache key, so a rewritten file is reloaded."""
    return path.stat().st_mtime


@st.cache_resource(max_entries=8, show_spinner="Loading volume…")
def _load(path: str, stamp: float) -> Volume:
    vol = load_canonical(path)
    if np.issubdtype(vol.array.dtype, np.floating) and vol.array.dtype != np.float32:
        vol = vol.with_array(vol.array.astype(np.float32))
    return vol


def load(path: Path) -> Volume:
    return _load(str(path), _stamp(path))


@st.cache_data(max_entries=16, show_spinner=False)
def _window(path: str, stamp: float, preset: str) -> tuple[float, float]:
    return window_for(preset, _load(path, stamp).array)


def window(path: Path, preset: str) -> tuple[float, float]:
    return _window(str(path), _stamp(path), preset)


@st.cache_data(show_spinner=False, ttl=10)
def _results(root: str) -> list[ResultFolder]:
    return find_results(root, input_roots=input_roots_from_env())


def pick_result(kind: str, root: Path) -> ResultFolder | None:
    """Sidebar choice among the result folders of one kind (a typed path is checked against RESULTS_DIR)."""
    results = of_kind(_results(str(root)), kind)
    typed = st.sidebar.text_input("Open a folder (path inside the results folder)", key=f"{kind}_typed")
    if typed:
        try:
            chosen = read_result(typed, root, input_roots_from_env())
            if chosen.kind != kind:
                raise MedsuiteError(typed, f"is a {chosen.kind} result", f"open it on the {chosen.kind} page")
            return chosen
        except MedsuiteError as exc:
            st.error(exc.line())
            return None
    if not results:
        st.info(f"No `{kind}` result under {root}. Run `medsuite {kind} …` or `medsuite demo`, then reload.")
        return None
    labels = [str(r.path.relative_to(root)) if root in r.path.parents else str(r.path) for r in results]
    index = st.sidebar.selectbox(f"{kind.capitalize()} result", range(len(results)), format_func=lambda i: labels[i], key=f"{kind}_result")
    return results[index]


def result_file(result: ResultFolder, name: str | None) -> Path | None:
    """An existing file the report names inside the result folder; None (with the reason shown)
    when the report names none, it is missing, or it points outside."""
    if not name:
        return None
    try:
        path = result.file(name)
    except MedsuiteError as exc:
        st.error(exc.line())
        return None
    return path if path.is_file() else None


def energy_caption(report: dict[str, Any]) -> None:
    summary = energy_summary(report)
    if summary:
        st.sidebar.caption(summary)


def window_controls(key: str) -> str:
    return st.sidebar.selectbox("Window / level", PRESET_NAMES, key=f"{key}_preset", help="CT presets in HU; Auto spans the 1st–99th percentile (MR).")


def crosshair_controls(key: str, vol: Volume, *, start: tuple[int, int, int] | None = None, showing: str = "") -> tuple[int, int, int]:
    """Three sliders (one per canonical axis) that also follow clicks on the images.

    The crosshair starts at ``start`` (the mask's or the content's centre) and goes back there
    whenever ``showing`` (the case or volume on screen) changes, as a case switch in Slicer does.
    """
    shape = vol.array.shape[:3]
    start = start or tuple(n // 2 for n in shape)  # type: ignore[assignment]
    pending = st.session_state.pop(f"{key}_pending", None)
    switched = st.session_state.get(f"{key}_showing") != showing
    st.session_state[f"{key}_showing"] = showing
    for axis in range(3):
        slider_key = f"{key}_ax{axis}"
        if pending is not None:
            st.session_state[slider_key] = int(pending[axis])
        elif switched or slider_key not in st.session_state or st.session_state[slider_key] >= shape[axis]:
            st.session_state[slider_key] = int(start[axis])
    cols = st.columns(3)
    voxel = tuple(int(cols[a].slider(AXIS_NAMES[a], 0, shape[a] - 1, key=f"{key}_ax{a}")) for a in range(3))
    return voxel  # type: ignore[return-value]


def crosshair_caption(vol: Volume, voxel: tuple[int, int, int], unit: str = "") -> str:
    cross = crosshair_at(vol, voxel)
    x, y, z = cross.world_mm
    return f"voxel {cross.voxel} · world (RAS) {x:.1f}, {y:.1f}, {z:.1f} mm · value {cross.value:.4g}{unit}"


@st.cache_data(max_entries=64, show_spinner=False)
def _picture(path: str, stamp: float) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def picture(path: Path) -> np.ndarray:
    """A PNG/JPEG/TIFF picture as RGB (cached: the concept page shows many)."""
    return _picture(str(path), _stamp(path))


#: A picture that reports where it was clicked, in the picture's own pixels. An inline components-v2
#: element in the page itself, not an iframe per panel (streamlit-image-coordinates, a document and scripts
#: each): the Mask page's first load is 0.1-0.45 s shorter (docs/viewer.md). The image element is kept
#: across reruns and only its source swapped.
_CLICKABLE_VIEW_JS = """
export default function (component) {
    const { data, parentElement, setTriggerValue } = component;
    let img = parentElement.querySelector("img.medsuite-view");
    if (!img) {
        img = document.createElement("img");
        img.className = "medsuite-view";
        img.alt = data.alt;
        img.onclick = (event) => {
            const box = img.getBoundingClientRect();
            const x = Math.floor((event.clientX - box.left) * img.naturalWidth / box.width);
            const y = Math.floor((event.clientY - box.top) * img.naturalHeight / box.height);
            setTriggerValue("click", { x: x, y: y });
        };
        parentElement.appendChild(img);
    }
    if (img.getAttribute("src") !== data.src) img.src = data.src;
}
"""
_CLICKABLE_VIEW = st.components.v2.component(
    "medsuite.clickable_view",
    js=_CLICKABLE_VIEW_JS,
    css="img.medsuite-view { width: 100%; display: block; background: #000; cursor: crosshair; }\n",  # a newline: inline CSS, not a path
)


def show_image(rgb: np.ndarray, caption: str, *, key: str | None = None) -> dict[str, int] | None:
    """Show a PNG; with a key, a click is returned once, on the rerun it caused, as {'x','y'} in the
    picture's pixels (None otherwise)."""
    if key is None:
        st.image(to_png(rgb), caption=caption, output_format="PNG", width="stretch")  # encoded once, lightly
        return None
    st.caption(caption)
    source = "data:image/png;base64," + base64.b64encode(to_png(rgb)).decode()
    return _CLICKABLE_VIEW(key=key, data={"src": source, "alt": caption}, on_click_change=lambda: None).click


@st.cache_data(max_entries=16, show_spinner=False)
def _start_voxel(image_path: str, image_stamp: float, labels_path: str | None, labels_stamp: float) -> tuple[int, int, int]:
    labels = _labels(labels_path, labels_stamp) if labels_path else None
    return centre_voxel(labels, _load(image_path, image_stamp).array)


def start_voxel(image_path: Path, labels_path: Path | None = None) -> tuple[int, int, int]:
    """Where the crosshair starts on this volume: the mask's centre, else the content's (cached)."""
    return _start_voxel(str(image_path), _stamp(image_path), str(labels_path) if labels_path else None, _stamp(labels_path) if labels_path else 0.0)


def with_letters(rgb: np.ndarray, vol: Volume, plane: str) -> np.ndarray:
    """A view with R/L, A/P, S/I at its edges, from the volume's own direction cosines."""
    return draw_edge_letters(rgb, edge_letters(vol.affine, plane))


def tri_planar(
    key: str, vol: Volume, voxel: tuple[int, int, int], level: float, width: float, panels: list[Panel], *, labels: np.ndarray | None = None, opacity: float = 0.4, outline: bool = False
) -> dict[str, np.ndarray]:
    """The volume's panels side by side (in-plane first; acquisition planes, or world-space planes
    such as the 4-chamber view), lettered at the edges; a click moves the crosshair there. Returns
    each panel's picture by ``Panel.key`` (for snapshots)."""
    cols = st.columns(len(panels))
    views = {}
    for col, panel in zip(cols, panels):
        plane = panel.plane
        if panel.grid is None:
            rgb = with_letters(render_view(vol.array, vol.spacing, plane, voxel, level, width, labels=labels, opacity=opacity, outline=outline), vol, plane)
            caption = f"{panel.title} · slice {slice_index(plane, voxel)}"
        else:
            rgb = draw_edge_letters(render_plane(vol.array, vol.affine, panel.grid, voxel, level, width, labels=labels, opacity=opacity, outline=outline), grid_letters(panel.grid))
            caption = f"{panel.title} · {panel.grid.step:.2f} mm pixels"
        views[panel.key] = rgb
        with col:
            click = show_image(rgb, caption, key=f"{key}_click_{panel.key}")
        if click:
            shown = rgb.shape[:2]
            if panel.grid is None:
                target = click_to_voxel(plane, slice_index(plane, voxel), int(click["y"]), int(click["x"]), vol.array.shape, shown)
            else:
                target = plane_click_to_voxel(panel.grid, float(click["y"]), float(click["x"]), shown, vol.affine, vol.array.shape)
            st.session_state[f"{key}_pending"] = target
            st.rerun()
    return views


@st.cache_data(max_entries=16, show_spinner=False)
def _cardiac_panels(image_path: str, image_stamp: float, mask_path: str, mask_stamp: float, names: tuple[tuple[int, str], ...], panels: tuple[Panel, ...]) -> list[Panel]:
    vol = _load(image_path, image_stamp)
    return long_axis_panels(list(panels), vol.array.shape, vol.affine, _labels(mask_path, mask_stamp), dict(names), Path(image_path))


def cardiac_panels(panels: list[Panel], image_path: Path, mask_path: Path, names: dict[int, str]) -> list[Panel]:
    """A short-axis stack's 4-chamber / 2-chamber planes in place of its reformats (cached per files)."""
    return _cardiac_panels(str(image_path), _stamp(image_path), str(mask_path), _stamp(mask_path), tuple(sorted(names.items())), tuple(panels))


def review_form(root: Path, result: ResultFolder, case: str, output: Path, key: str) -> None:
    """Approve / reject / needs-edit with reviewer and comment, appended to RESULTS_DIR/reviews.jsonl.

    Nothing is pre-selected: a decision is recorded only once a reviewer chose one (per case: the
    widgets are keyed by case, so a decision never carries over to the next case)."""
    st.subheader("Decision")
    with st.form(f"{key}_review_{case}", clear_on_submit=False):
        reviewer = st.text_input("Reviewer", key=f"{key}_reviewer")
        decision = st.radio("Decision", DECISIONS, index=None, horizontal=True, key=f"{key}_decision_{case}")
        comment = st.text_area("Comment", key=f"{key}_comment_{case}")
        submitted = st.form_submit_button("Record decision")
    if submitted:
        try:
            entry = append_review(
                root, case=case, output=output, model_version=model_version(result.report), model_sha256=_model_sha256(result), reviewer=reviewer, decision=decision, comment=comment
            )
        except MedsuiteError as exc:
            st.error(exc.line())
        else:
            st.success(f"Recorded: {entry['decision']} by {entry['reviewer']} at {entry['time_utc']} (output sha256 {entry['output_sha256'][:12]}…)")
    log = root / LOG_NAME
    if log.is_file():
        st.download_button("Download review log (reviews.jsonl)", log.read_bytes, file_name=LOG_NAME, mime="application/jsonl", key=f"{key}_dl_log")


@st.cache_data(max_entries=8, show_spinner="Hashing the model…")
def _model_sha256_of(report_path: str, stamp: float) -> str | None:
    return model_sha256(read_result(Path(report_path).parent).report)


def _model_sha256(result: ResultFolder) -> str | None:
    report = result.path / "report.json"
    return _model_sha256_of(str(report), _stamp(report))


def colour_swatch(label: int) -> str:
    """A small PNG of a label's colour as a data URL, for legends (``small_table``'s ``colour`` column)."""
    return swatch(label_colour(label))


@st.cache_data(max_entries=64, show_spinner=False)
def swatch(rgb: tuple[int, int, int]) -> str:
    return "data:image/png;base64," + base64.b64encode(to_png(np.full((12, 24, 3), rgb, np.uint8))).decode()


def download_file(label: str, path: Path, key: str) -> None:
    """A download whose bytes are read only when clicked (volumes are large; reruns must stay fast)."""
    if path.is_file():
        st.download_button(label, partial(path.read_bytes), file_name=path.name, mime="application/octet-stream", key=key)


def download_png(label: str, rgb: np.ndarray, name: str, key: str) -> None:
    st.download_button(label, partial(to_png, rgb), file_name=name, mime="image/png", key=key)


def _session_uploads() -> SessionUploads:
    """This browser session's private upload folder (removed when the session's state is dropped)."""
    if "_uploads" not in st.session_state:
        st.session_state["_uploads"] = SessionUploads()
    return st.session_state["_uploads"]


def upload_volume() -> Path | None:
    """A NIfTI file, or the files of one DICOM series, from the browser, saved in this session's
    private folder under a name derived from the content (so reruns find the same files and the
    volume cache); None if none given. Streamlit caps the upload size (``medsuite view`` sets it)."""
    uploads = st.sidebar.file_uploader(
        "Upload a NIfTI (.nii, .nii.gz) or all files of one DICOM series (.dcm)", type=["nii", "gz", "dcm"], accept_multiple_files=True, key="upload"
    )
    if not uploads:
        return None
    store = _session_uploads()
    is_series = all(u.name.lower().endswith(".dcm") for u in uploads)
    digest = hashlib.sha256()
    for item in uploads if is_series else uploads[-1:]:
        digest.update(item.name.encode() + item.getvalue())
    folder = store.folder / digest.hexdigest()[:16]
    if is_series:
        series = folder / "series"
        if not series.is_dir():
            for i, item in enumerate(uploads):
                store.write(f"{folder.name}/partial/{i:04d}.dcm", item.getvalue())
            (folder / "partial").rename(series)  # a half-written series is never read
        return series
    newest = uploads[-1]  # the uploader keeps earlier files: show the one just added
    if len(uploads) > 1:
        st.sidebar.info(f"One volume at a time: showing {newest.name}.")
    name = newest.name.lower()
    target = folder / f"upload{'.nii.gz' if name.endswith('.nii.gz') else Path(name).suffix}"
    if not target.is_file():
        store.write(str(target.relative_to(store.folder)), newest.getvalue())
    return target


def load_upload(path: Path) -> Volume:
    """An uploaded volume, refused from its header alone when it declares more than the caps."""
    check_declared_size(path)
    return load(path)


@st.cache_resource(max_entries=4, show_spinner="Loading the deformation…")
def _ddf(path: str, stamp: float) -> Volume:
    return ddf_to_canonical_voxels(read_image(path))


def load_ddf(path: Path) -> Volume:
    """The displacement field as voxel-unit displacements of the RAS-canonical fixed grid."""
    return _ddf(str(path), _stamp(path))


@st.cache_resource(max_entries=4, show_spinner="Computing the Jacobian determinant…")
def _jacobian(path: str, stamp: float, is_ddf: bool) -> tuple[np.ndarray, float]:
    det = jacobian_determinant(_ddf(path, stamp).array) if is_ddf else _load(path, stamp).array
    return det, folding_percent(det)


def jacobian_of(result: ResultFolder, ddf_path: Path) -> tuple[np.ndarray, float]:
    """det J on the canonical fixed grid (register's jacobian.nii.gz, else computed) and its folding %."""
    name = result.report.get("outputs", {}).get("jacobian")
    if name and result.file(name).is_file():
        return _jacobian(str(result.file(name)), _stamp(result.file(name)), False)
    return _jacobian(str(ddf_path), _stamp(ddf_path), True)


@st.cache_resource(max_entries=4, show_spinner=False)
def _labels(path: str, stamp: float) -> np.ndarray:
    return np.rint(_load(path, stamp).array).astype(np.int16)


def load_labels(path: Path) -> np.ndarray:
    """A label map as integers on the canonical grid (cached: conversion of a large mask is slow)."""
    return _labels(str(path), _stamp(path))


@st.cache_data(max_entries=8, show_spinner=False)
def _label_table(path: str, stamp: float, names: dict[int, str]) -> list[dict[str, Any]]:
    return label_volumes_ml(_labels(path, stamp), _load(path, stamp).voxel_volume_ml, names)


def label_table(path: Path, names: dict[int, str]) -> list[dict[str, Any]]:
    return _label_table(str(path), _stamp(path), names)


def label_rows(labels: np.ndarray, voxel_volume_ml: float, names: dict[int, str]) -> list[dict[str, Any]]:
    """Label volumes of a mask being edited (not cached: it changes with every stroke)."""
    return label_volumes_ml(labels, voxel_volume_ml, names)


_MARKDOWN_SPECIALS = str.maketrans({c: "\\" + c for c in "\\`*_{}[]()<>#+-.!|:~$"})


def plain(text: object) -> str:
    """Text from a report, escaped so Markdown shows it literally (no links, images, HTML or colours)."""
    return str(text).translate(_MARKDOWN_SPECIALS)


def tiles(figures: list[tuple[str, ...]]) -> None:
    """Key figures as one row of tiles (label, value, optional note), in a single ``st.html`` element:
    a page of ``st.metric`` columns is a dozen elements for the browser to lay out and a script chunk
    to fetch before it settles (docs/viewer.md, first load). Text is HTML-escaped."""
    cells = []
    for label, value, *note in figures:
        extra = f'<div class="note">{html.escape(note[0])}</div>' if note and note[0] else ""
        cells.append(f'<div class="tile"><div class="label">{html.escape(label)}</div><div class="value" title="{html.escape(value)}">{html.escape(value)}</div>{extra}</div>')
    st.html(f'<div class="medsuite-tiles">{"".join(cells)}</div>')


def small_table(rows: list[dict[str, Any]], headers: dict[str, str], formats: dict[str, str] | None = None) -> None:
    """A few rows as a static HTML table. Not ``st.table``: it makes the browser fetch and parse
    Streamlit's Arrow table scripts (~0.75 MB) before the page settles, where ``st.html``'s sanitiser
    is loaded for the page's CSS anyway (measured with benchmarks/viewer_first_load.py, docs/viewer.md).
    Every cell is HTML-escaped (report text shows as typed); a ``colour`` column holds ``colour_swatch``
    data URLs, drawn as the swatch; ``formats`` are format specs; numbers are right-aligned."""
    formats = formats or {}

    def cell(key: str, value: Any) -> str:
        if value is None:
            return "<td></td>"
        if key == "colour":
            return f'<td><img src="{html.escape(value)}" alt="colour"/></td>'
        text = html.escape(format(value, formats[key]) if key in formats else str(value))
        return f'<td class="number">{text}</td>' if isinstance(value, (int, float)) else f"<td>{text}</td>"

    head = "".join(f"<th>{html.escape(header)}</th>" for header in headers.values())
    body = "".join("<tr>" + "".join(cell(key, row.get(key)) for key in headers) + "</tr>" for row in rows)
    st.html(f'<table class="medsuite-table"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>')


def world_matched_voxel(source: Volume, voxel: tuple[int, int, int], target: Volume) -> tuple[int, int, int]:
    """The voxel of ``target`` nearest to the world point of ``voxel`` in ``source``."""
    return world_to_voxel(target.affine, voxel_to_world(source.affine, voxel), target.array.shape)
