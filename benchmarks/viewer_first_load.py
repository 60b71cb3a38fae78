"""First page load of the review station in headless Chromium (target: 2 s per page).

Starts ``medsuite view``'s server (modules pre-imported) on a results folder, then times, for every
page, from ``goto`` until its main content is rendered: the script finished (Streamlit's status
widget gone, the decision form drawn), its first image decoded, its charts drawn (Concept). Each
server start gives one *first visit* per page (empty caches); then ``--loads`` more visits, each in
a fresh browser context (a new session: what a second reader opening the link gets).

    python benchmarks/viewer_first_load.py [--results DIR] [--starts 3] [--loads 3]

Without ``--results`` it writes the viewer's test results (register, segment, cardiac, an oblique
M&Ms-2 stack) and the concept demo (24 concepts, images per case) to a temporary folder.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from medsuite.commands.view import streamlit_command  # noqa: E402
from medsuite.viewer.results import RESULTS_ENV  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TARGET_S = 2.0
#: page -> (path, what must be on screen): a text, then images / charts that must be decoded or drawn.
PAGES = {
    "home": ("", "segment results", ()),
    "Registration": ("Registration", "Warped moving", ("[data-testid='stImage'] img", "img.medsuite-view")),
    "Mask": ("Mask", "Label volumes", ("img.medsuite-view",)),
    "Concept": ("Concept", "Concept contributions", ("[data-testid='stImage'] img",)),  # charts, then the case's pictures
}


def make_results(root: Path) -> Path:
    from rich.console import Console

    from medsuite.commands.concepts import run_demo
    from tests.test_viewer_fixtures import make_cardiac, make_oblique, make_register, make_segment

    make_register(root)
    make_segment(root)
    make_cardiac(root)
    make_oblique(root)
    run_demo(root / "demo", Console(quiet=True))
    return root


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def serve(results: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    command = streamlit_command(REPO / "apps" / "medsuite_viewer.py", port, "127.0.0.1") + ["--server.fileWatcherType", "none"]
    process = subprocess.Popen(command, env=dict(os.environ, **{RESULTS_ENV: str(results)}), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=1).read() == b"ok":
                return process, url
        except OSError:
            time.sleep(0.2)
    process.terminate()
    raise SystemExit("streamlit did not start within 120 s")


def load_time(browser, url: str, page_name: str) -> float:
    """Seconds from goto until the page's main content is on screen, in a fresh context (new session)."""
    path, text, selectors = PAGES[page_name]
    context = browser.new_context(viewport={"width": 1500, "height": 1400})
    tab = context.new_page()
    tab.set_default_timeout(60_000)
    start = time.perf_counter()
    tab.goto(f"{url}/{path}")
    tab.get_by_text(text).first.wait_for()
    for selector in selectors:
        tab.locator(selector).first.wait_for()
        # every picture the script sent, decoded (the clickable views' <img> sit in open shadow roots,
        # which Playwright's CSS selectors pierce)
        tab.locator(selector).evaluate_all("els => Promise.all(els.map(el => el.decode()))")
    if page_name != "home":
        tab.get_by_text("Record decision").first.wait_for()
    tab.locator("[data-testid='stStatusWidget']").wait_for(state="hidden")
    elapsed = time.perf_counter() - start
    context.close()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, help="a results folder (default: generated test results and the concept demo)")
    parser.add_argument("--starts", type=int, default=3, help="server starts (each gives one first visit per page)")
    parser.add_argument("--loads", type=int, default=3, help="further visits per page and start, fresh sessions")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        results = args.results.resolve() if args.results else make_results(Path(tmp))
        first: dict[str, list[float]] = {name: [] for name in PAGES}
        again: dict[str, list[float]] = {name: [] for name in PAGES}
        cpu0 = os.times()
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
            for _ in range(args.starts):
                process, url = serve(results)
                try:
                    for name in PAGES:
                        first[name].append(load_time(browser, url, name))
                    for _ in range(args.loads):
                        for name in PAGES:
                            again[name].append(load_time(browser, url, name))
                finally:
                    process.terminate()
                    process.wait(timeout=20)
            browser.close()
        cpu = os.times()
    print(f"\n{'page':14s} {'first visit median s':>21s} {'(max)':>7s} {'fresh session median s':>23s} {'(max)':>7s}")
    for name in PAGES:
        print(f"{name:14s} {statistics.median(first[name]):21.2f} {max(first[name]):7.2f} {statistics.median(again[name]) if again[name] else float('nan'):23.2f} {max(again[name], default=float('nan')):7.2f}")
    load = os.getloadavg()
    print(f"target {TARGET_S} s; {args.starts} server starts x (1 first + {args.loads} fresh visits) per page; load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}; {os.cpu_count()} CPU cores visible")
    print(f"CPU s of this script's children (servers, Chromium): {cpu.children_user - cpu0.children_user + cpu.children_system - cpu0.children_system:.0f}")


if __name__ == "__main__":
    main()
