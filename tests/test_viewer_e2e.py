"""End to end: the real review station in headless Chromium (Debian's package), pages screenshotted.

Screenshots go to /tmp/viewer_shots/ (registration.png, mask.png, concept.png, upload_error.png).
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
from tests.test_viewer_fixtures import make_results

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"]
APP = Path(__file__).resolve().parents[1] / "apps" / "medsuite_viewer.py"
SHOTS = Path("/tmp/viewer_shots")

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is not installed (apt-get install chromium)")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    results = make_results(tmp_path_factory.mktemp("results"))
    port = free_port()
    command = streamlit_command(APP, port, "127.0.0.1") + ["--server.fileWatcherType", "none"]
    env = dict(os.environ, **{RESULTS_ENV: str(results)})
    log = open(tmp_path_factory.mktemp("log") / "streamlit.log", "w")
    process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 30
        while True:
            try:
                if urllib.request.urlopen(f"{url}/_stcore/health", timeout=1).read() == b"ok":
                    break
            except OSError:
                if time.time() > deadline or process.poll() is not None:
                    pytest.fail("streamlit did not start")
                time.sleep(0.3)
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
    SHOTS.mkdir(exist_ok=True)
    open_page(page, f"{server}/Registration", "Warped moving")
    images = page.locator("[data-testid='stImage'] img")
    images.nth(2).wait_for()
    assert images.count() == 3  # fixed, moving, warped side by side
    for n in range(3):
        assert not_blank(images.nth(n).screenshot()) > 10.0
    axial = page.frame_locator("iframe").first.locator("img")  # clickable tri-planar view
    assert not_blank(axial.screenshot()) > 10.0
    page.screenshot(path=str(SHOTS / "registration.png"), full_page=True)
    # A click at the top-left of the axial view moves the crosshair to the most anterior voxel on the
    # patient's right (radiological convention), in the same axial slice.
    axial.click(position={"x": 2, "y": 2})
    page.get_by_text("voxel (23, 19, 6)").first.wait_for()


def test_mask_and_concept_pages_render(page, server: str) -> None:
    open_page(page, f"{server}/Mask", "Label volumes")
    page.frame_locator("iframe").first.locator("img").wait_for()
    assert not_blank(page.frame_locator("iframe").first.locator("img").screenshot()) > 10.0
    page.screenshot(path=str(SHOTS / "mask.png"), full_page=True)
    open_page(page, f"{server}/Concept", "Concept contributions")
    page.locator("[data-testid='stVegaLiteChart'] canvas, [data-testid='stVegaLiteChart'] svg").nth(1).wait_for()
    assert page.get_by_text("US:acoustic hollowing (score +3.00)").count() == 1
    assert page.get_by_text("FUNDUS:orange pigment (score +0.50)").count() == 1
    page.screenshot(path=str(SHOTS / "concept.png"), full_page=True)


def test_corrupt_upload_shows_an_error_and_the_app_keeps_working(page, server: str, tmp_path: Path) -> None:
    page.goto(server)
    page.get_by_text("Look at an image").wait_for()
    chooser = page.locator("[data-testid='stFileUploaderDropzoneInput']")
    chooser.set_input_files(files=[{"name": "broken.nii.gz", "mimeType": "application/gzip", "buffer": b"this is not an image"}])
    page.get_by_text("Cannot open the upload").wait_for()
    page.screenshot(path=str(SHOTS / "upload_error.png"), full_page=True)
    from medsuite.io import write_nifti

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
