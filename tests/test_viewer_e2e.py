"""End to end: the real review station in headless Chromium (Debian's package), pages screenshotted.

Screenshots go to $MEDSUITE_VIEWER_SHOTS, default /tmp/viewer_shots/ (registration.png, mask.png, concept.png, upload_error.png,
oblique_sax.png, decision_refused.png, brush_stroke.png, cardiac_function.png).
"""

from __future__ import annotations

import io
import os
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medsuite.commands.view import streamlit_command
from medsuite.viewer.results import RESULTS_ENV
from tests.test_viewer_fixtures import make_cardiac, make_oblique, make_results

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"]
APP = Path(__file__).resolve().parents[1] / "apps" / "medsuite_viewer.py"
SHOTS = Path(os.environ.get("MEDSUITE_VIEWER_SHOTS", "/tmp/viewer_shots"))  # several checkouts may test at once

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is not installed (apt-get install chromium)")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_serving(url: str, process: subprocess.Popen, timeout_s: float = 60.0) -> None:
    """Until Streamlit's health endpoint answers (fails the test if the process dies or times out)."""
    deadline = time.time() + timeout_s
    while True:
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=1).read() == b"ok":
                return
        except OSError:
            if time.time() > deadline or process.poll() is not None:
                pytest.fail("streamlit did not start")
            time.sleep(0.3)


@pytest.fixture(scope="module")
def results_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    results = make_results(tmp_path_factory.mktemp("results"))
    make_cardiac(results)
    make_oblique(results)
    return results


@pytest.fixture(scope="module")
def server(results_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    command = streamlit_command(APP, port, "127.0.0.1") + ["--server.fileWatcherType", "none"]
    env = dict(os.environ, **{RESULTS_ENV: str(results_root)})
    log = open(tmp_path_factory.mktemp("log") / "streamlit.log", "w")
    process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(url, process)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()


@pytest.fixture(scope="module")
def page(server: str):
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS, headless=True)
        tab = browser.new_page(viewport={"width": 1500, "height": 2400})
        tab.set_default_timeout(20_000)
        yield tab
        browser.close()


def shot(image) -> bytes:
    """A screenshot of an <img> once the browser has decoded it (a busy CI machine paints late)."""
    image.wait_for()
    deadline = time.time() + 20
    while not image.evaluate("el => el.complete && el.naturalWidth > 0") and time.time() < deadline:
        time.sleep(0.2)
    return image.screenshot()


def not_blank(png: bytes) -> float:
    """Grey-level standard deviation of a screenshot: ~0 for an empty or single-colour area."""
    return float(np.asarray(Image.open(io.BytesIO(png)).convert("L"), dtype=np.float32).std())


def open_page(page, url: str, wait_text: str) -> None:
    """Go to a page and wait until its script has finished (the review form is drawn last)."""
    page.goto(url)
    page.get_by_text(wait_text).first.wait_for()
    page.get_by_text("Record decision").first.wait_for()
    page.locator("[data-testid='stStatusWidget']").wait_for(state="hidden")


def test_registration_page_shows_images(page, server: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    open_page(page, f"{server}/Registration", "Warped moving")
    images = page.locator("[data-testid='stImage'] img")
    images.nth(2).wait_for()
    assert images.count() == 3  # fixed, moving, warped side by side
    for n in range(3):
        assert not_blank(shot(images.nth(n))) > 10.0
    axial = page.locator("img.medsuite-view").first  # clickable tri-planar view
    assert not_blank(shot(axial)) > 10.0
    page.screenshot(path=str(SHOTS / "registration.png"), full_page=True)
    # A click at the top-left of the axial view moves the crosshair to the most anterior voxel on the
    # patient's right (radiological convention), in the same axial slice.
    axial.click(position={"x": 2, "y": 2})
    page.get_by_text("voxel (23, 19, 6)").first.wait_for()


def test_mask_and_concept_pages_render(page, server: str) -> None:
    open_mask_result(page, server, "segmentation")
    page.locator("img.medsuite-view").first.wait_for()
    assert not_blank(shot(page.locator("img.medsuite-view").first)) > 10.0
    page.screenshot(path=str(SHOTS / "mask.png"), full_page=True)
    open_page(page, f"{server}/Concept", "Concept contributions")
    pictures = page.locator("[data-testid='stImage'] img")  # the two charts, then the case's ultrasound image
    pictures.nth(2).wait_for()
    assert pictures.count() == 3
    for n in range(3):
        assert not_blank(shot(pictures.nth(n))) > 10.0
    page.get_by_text("Intervene on concepts").click()
    page.get_by_text("US:acoustic hollowing (score +3.00)").wait_for()
    assert page.get_by_text("FUNDUS:orange pigment (score +0.50)").count() == 1
    page.locator("[data-testid='stStatusWidget']").wait_for(state="hidden")
    page.screenshot(path=str(SHOTS / "concept.png"), full_page=True)


def test_corrupt_upload_shows_an_error_and_the_app_keeps_working(page, server: str, tmp_path: Path) -> None:
    page.goto(server)
    page.get_by_text("Look at an image").wait_for()
    chooser = page.locator("[data-testid='stFileUploaderDropzoneInput']")
    chooser.set_input_files(files=[{"name": "broken.nii.gz", "mimeType": "application/gzip", "buffer": b"this is not an image"}])
    page.get_by_text("Cannot open the upload").wait_for()
    page.screenshot(path=str(SHOTS / "upload_error.png"), full_page=True)
    from medsuite.io import write_nifti
    from tests.test_viewer_security import header_only_nifti

    bomb = header_only_nifti(tmp_path / "bomb.nii.gz", (1024, 1024, 512))  # 1 kB declaring 2 GB
    chooser.set_input_files(str(bomb))
    page.get_by_text("declares 1024 x 1024 x 512 voxels").wait_for()

    good = write_nifti(tmp_path / "brain.nii.gz", np.random.default_rng(0).uniform(0, 100, (16, 16, 8)).astype(np.float32), np.diag([1.0, 1.0, 2.0, 1.0]))
    chooser.set_input_files(str(good))
    page.get_by_text("voxels of 1.00 × 1.00 × 2.00 mm").wait_for()
    assert page.get_by_text("Cannot open the upload").count() == 0


def test_dicom_series_upload_opens_as_one_volume(page, server: str, tmp_path: Path) -> None:
    from pydicom.data import get_testdata_file

    source = Path(get_testdata_file("CT_small.dcm", download=False)).parent / "dicomdirtests" / "98892001" / "CT5N"
    series = [tmp_path / f"{f.name}.dcm" for f in sorted(source.iterdir())]
    for copy, original in zip(series, sorted(source.iterdir())):
        copy.write_bytes(original.read_bytes())
    page.goto(server)
    page.get_by_text("Look at an image").wait_for()
    page.locator("[data-testid='stFileUploaderDropzoneInput']").set_input_files([str(f) for f in series])
    page.get_by_text("voxels of").wait_for()  # the five slices read as one 3D series
    assert page.get_by_text("Cannot open the upload").count() == 0


def open_mask_result(page, server: str, folder: str) -> None:
    """The Mask page on one segment result, chosen by typing its folder in the sidebar."""
    open_page(page, f"{server}/Mask", "Label volumes")
    typed = page.get_by_label("Open a folder (path inside the results folder)")
    typed.fill(folder)
    typed.press("Enter")
    page.get_by_text(f"Case {folder}").or_(page.get_by_text("Case ")).first.wait_for()
    page.locator("[data-testid='stStatusWidget']").wait_for(state="hidden")
    page.get_by_text("Record decision").first.wait_for()


def test_oblique_short_axis_stack_is_shown_in_its_own_plane_with_letters(page, server: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    open_mask_result(page, server, "oblique")
    page.get_by_text("short-axis (in-plane) · slice").first.wait_for()
    page.get_by_text("2-chamber (from mask)").first.wait_for()  # panels arrive one by one
    page.locator("[data-testid='stStatusWidget']").wait_for(state="hidden")
    # Elements of the previous case stay on screen, marked stale, until the new run replaces them (a busy machine).
    titles = page.locator("[data-testid='stElementContainer']:not([data-stale='true']) [data-testid='stCaptionContainer']").all_inner_texts()
    panels = [t for t in titles if "· slice" in t or "mm pixels" in t]
    assert panels[0].startswith("short-axis (in-plane)")
    # The M&Ms-2 example ships its 4-chamber image: that plane, and the 2-chamber one from the mask.
    assert panels[1].startswith(("4-chamber (plane of lax_4c_ed.nii.gz)", "4-chamber (from mask)")) and panels[2].startswith("2-chamber (from mask)")
    assert len(page.locator("img.medsuite-view").all()) >= 1
    assert not_blank(shot(page.locator("img.medsuite-view").first)) > 10.0
    page.screenshot(path=str(SHOTS / "oblique_sax.png"), full_page=True)


def test_decision_is_refused_without_an_explicit_choice(page, server: str) -> None:
    open_mask_result(page, server, "segmentation")
    page.get_by_label("Reviewer").first.fill("Dr Eve")
    page.get_by_role("button", name="Record decision").click()
    page.get_by_text("Decision: is not chosen").wait_for()
    page.screenshot(path=str(SHOTS / "decision_refused.png"), full_page=True)


def test_cardiac_function_panel(page, server: str) -> None:
    open_mask_result(page, server, "cardiac")
    page.get_by_text("LV ejection fraction").wait_for()
    assert page.get_by_text("60.0 %").count() == 1
    page.get_by_text("Flagged for careful review").wait_for()  # ES, the doubtful case, comes first
    page.screenshot(path=str(SHOTS / "cardiac_function.png"), full_page=True)


def test_a_brush_stroke_changes_the_saved_mask_by_exactly_the_painted_voxels(page, server: str, results_root: Path) -> None:
    import nibabel as nib
    import SimpleITK as sitk

    from medsuite.io import Volume
    from medsuite.viewer.slicing import plane_axes, to_canonical
    from medsuite.viewer.views import load_canonical

    case = next((results_root / "oblique").glob("*_seg.nii.gz")).name.removesuffix("_seg.nii.gz")
    source, saved = results_root / "oblique" / f"{case}_seg.nii.gz", results_root / "oblique" / f"{case}_corrected.nii.gz"
    image_path = results_root / "inputs" / f"{case}.nii.gz"
    open_mask_result(page, server, "oblique")
    page.get_by_text("Correct the mask (brush, eraser, undo)").click()
    page.get_by_text("Brush diameter (voxels)").wait_for()
    page.locator("[data-testid='stStatusWidget']").wait_for(state="hidden")
    canvas = page.locator("canvas.upper-canvas").first
    canvas.wait_for()
    box = canvas.bounding_box()
    width, height = canvas.evaluate("c => [c.width, c.height]")
    assert (round(box["width"]), round(box["height"])) == (width, height)  # shown at its own size: 1 px = 1 canvas px
    canvas.hover()  # the component shows its own undo / reset toolbar on hover: hidden, the page's Undo is the one
    assert page.locator(".dc-toolbar").count() == 1 and page.locator(".dc-toolbar").first.is_hidden()

    # The in-plane view of the stack: a stroke along one row of voxel centres, from column 40 % to 60 %.
    image = load_canonical(image_path)
    plane = "coronal" if image.array.shape[1] < image.array.shape[0] else "axial"  # the 10 mm axis is held fixed
    _, row_axis, col_axis = plane_axes(plane)
    n_rows, n_cols = image.array.shape[row_axis], image.array.shape[col_axis]
    row, c0, c1 = int(n_rows * 0.3), int(n_cols * 0.4), int(n_cols * 0.6)
    y = (row + 0.5) * height / n_rows
    x0, x1 = (c0 + 0.5) * width / n_cols, (c1 + 0.5) * width / n_cols
    page.mouse.move(box["x"] + x0, box["y"] + y)
    page.mouse.down()
    page.mouse.move(box["x"] + x1, box["y"] + y, steps=20)
    page.mouse.up()
    page.get_by_text("Last stroke changed").wait_for()
    page.locator("[data-testid='stStatusWidget']").wait_for(state="hidden")
    page.screenshot(path=str(SHOTS / "brush_stroke.png"), full_page=True)
    reported = int(page.get_by_text("Last stroke changed").inner_text().split()[3])
    brush_px = round(3 * width / n_cols)  # the default brush: 3 voxels
    page.get_by_label("Your name (for the log)").fill("Dr Eve")
    page.get_by_role("button", name="Save corrected mask").click()
    page.get_by_text("Saved ").first.wait_for()

    # Read back with SimpleITK (the viewer writes with nibabel): the input's grid and orientation.
    written, reference = sitk.ReadImage(str(saved)), sitk.ReadImage(str(image_path))
    assert written.GetSize() == reference.GetSize()
    assert np.allclose(written.GetDirection(), reference.GetDirection(), atol=1e-6) and np.allclose(written.GetOrigin(), reference.GetOrigin(), atol=1e-3)
    assert np.allclose(written.GetSpacing(), reference.GetSpacing(), atol=1e-5)
    # Exactly the painted voxels: what the canvas returned under the stroke (the count the page
    # reported) and nothing else. They lie in the crosshair's in-plane slice, cover the voxel row the
    # stroke ran along from c0 to c1, and stay within the brush's reach of that segment.
    index = int(page.get_by_text("Brush on slice").inner_text().split("slice ")[1].split(":")[0])
    after, before = np.asarray(nib.load(str(saved)).dataobj), np.asarray(nib.load(str(source)).dataobj)
    changed = to_canonical(Volume(array=(after != before).astype(np.uint8), affine=nib.load(str(image_path)).affine)).array > 0
    assert int(changed.sum()) == reported > 0
    fixed = 3 - row_axis - col_axis
    assert set(np.argwhere(changed)[:, fixed].tolist()) == {index}
    view_rows = n_rows - 1 - np.argwhere(changed)[:, row_axis]  # back to screen rows / columns
    view_cols = n_cols - 1 - np.argwhere(changed)[:, col_axis]
    on_line = set(zip(view_rows.tolist(), view_cols.tolist()))
    assert {(row, c) for c in range(c0, c1 + 1)} <= on_line
    reach = (brush_px / 2 + 1.5)  # half the stroke width plus anti-aliasing, in canvas pixels
    centres_y, centres_x = (view_rows + 0.5) * height / n_rows, (view_cols + 0.5) * width / n_cols
    distance = np.hypot(np.maximum(0, np.maximum(x0 - centres_x, centres_x - x1)), centres_y - y)
    assert distance.max() <= reach
    assert set(np.unique(after[after != before]).tolist()) == {1}  # the brush's default label, RV
