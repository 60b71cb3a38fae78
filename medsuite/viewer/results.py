"""Result folders the viewer opens, recognised by ``report.json`` kind, and path safety.

Only folders under RESULTS_DIR are opened from what a user types: the station may run on a shared
workstation, and a typed ``../../etc`` must not become a file browser.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medsuite.errors import MedsuiteError

KINDS = ("register", "segment", "classify", "demo")
#: How ``medsuite view`` tells the Streamlit app which folder it serves.
RESULTS_ENV = "MEDSUITE_RESULTS_DIR"


@dataclass(frozen=True)
class ResultFolder:
    path: Path
    kind: str
    report: dict[str, Any]

    @property
    def label(self) -> str:
        return f"{self.path.name} ({self.kind})"

    def file(self, relative: str) -> Path:
        """A file the report names, resolved inside this folder (never outside it)."""
        return safe_path(self.path, relative)


def safe_path(results_dir: str | Path, typed: str | Path) -> Path:
    """``typed`` (absolute, or relative to ``results_dir``) resolved, refused if it leaves ``results_dir``."""
    root = Path(results_dir).resolve()
    candidate = Path(typed)
    resolved = (candidate if candidate.is_absolute() else root / candidate).resolve()
    if resolved != root and root not in resolved.parents:
        raise MedsuiteError(typed, f"is outside the results folder {root}", "open a folder inside it, or restart `medsuite view` on another folder")
    return resolved


def read_result(folder: str | Path) -> ResultFolder:
    """The result folder's kind and report, or a one-line error."""
    folder = Path(folder)
    report_path = folder / "report.json"
    if not report_path.is_file():
        raise MedsuiteError(folder, "has no report.json", "open a folder written by register, segment, classify or demo")
    try:
        report = json.loads(report_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise MedsuiteError(report_path, f"is not valid JSON ({exc.__class__.__name__})", "rerun the command that wrote it") from exc
    kind = report.get("kind") if isinstance(report, dict) else None
    if kind not in KINDS:
        raise MedsuiteError(report_path, f"has kind {kind!r}, which the viewer does not show", f"open a result of kind {', '.join(KINDS)}")
    return ResultFolder(path=folder.resolve(), kind=kind, report=report)


def find_results(results_dir: str | Path, max_depth: int = 3) -> list[ResultFolder]:
    """Every recognised result folder under ``results_dir`` (demo parts included), sorted by path."""
    root = Path(results_dir)
    found: dict[Path, ResultFolder] = {}
    for report_path in sorted(root.glob("report.json")) + sorted(
        p for depth in range(1, max_depth + 1) for p in root.glob("/".join(["*"] * depth) + "/report.json")
    ):
        try:
            result = read_result(report_path.parent)
        except MedsuiteError:
            continue  # per-case reports of batch runs and foreign folders are not results to open
        found[result.path] = result
        if result.kind == "demo":
            for part in result.report.get("parts", {}).values():
                try:
                    sub = read_result(result.file(part))
                except MedsuiteError:
                    continue
                found[sub.path] = sub
    return sorted(found.values(), key=lambda r: str(r.path))


def of_kind(results: list[ResultFolder], kind: str) -> list[ResultFolder]:
    return [r for r in results if r.kind == kind]


def model_version(report: dict[str, Any]) -> str:
    """What produced the output: an explicit model version or checkpoint, else the medsuite version."""
    for key in ("model_version", "checkpoint"):
        if report.get(key):
            return str(report[key])
    params = report.get("parameters", {}) or {}
    for key in ("checkpoint", "model", "weights"):
        if params.get(key):
            return str(params[key])
    return f"medsuite {report.get('versions', {}).get('medsuite', 'unknown')}"


def energy_summary(report: dict[str, Any]) -> str | None:
    """One line on the model's estimated inference energy, when the result's report carries one."""
    energy = report.get("energy") or {}
    if energy.get("energy_mj") is None:
        return None
    per = f" per {energy['per']}" if energy.get("per") else ""
    return (
        f"Estimated inference energy{per}: {energy['energy_mj']:.3g} mJ "
        f"({int(energy.get('macs', 0)):,} MACs, {int(energy.get('acs', 0)):,} synaptic ACs; {energy.get('convention', '45 nm')}). "
        "An estimate from operation counts, not a measurement."
    )
