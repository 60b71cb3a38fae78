"""Result folders the viewer opens, recognised by ``report.json`` kind, and path safety.

Every path the viewer opens -- typed, or named by a report.json / prediction.json (``cases[].input``,
``fixed``, ``images``), or reached through a symlink -- is resolved and refused unless it stays inside
RESULTS_DIR: the station may run on a shared workstation, and neither a typed ``../../etc`` nor a
crafted report may turn it into a file browser.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medsuite.errors import MedsuiteError
from medsuite.io import sha256_file

KINDS = ("register", "segment", "classify", "demo")
#: How ``medsuite view`` tells the Streamlit app which folder it serves.
RESULTS_ENV = "MEDSUITE_RESULTS_DIR"
#: Extra read-only folders (``medsuite view --inputs``) whose files reports may name as inputs, os.pathsep-separated.
INPUTS_ENV = "MEDSUITE_INPUT_DIRS"
#: Longer typed paths are refused before touching the file system (Linux PATH_MAX is 4096 bytes).
MAX_PATH_CHARS = 1024


@dataclass(frozen=True)
class ResultFolder:
    path: Path
    kind: str
    report: dict[str, Any]
    root: Path | None = None  # RESULTS_DIR; inputs the report names must lie inside it ...
    input_roots: tuple[Path, ...] = ()  # ... or inside one of these (medsuite view --inputs)

    @property
    def label(self) -> str:
        return f"{self.path.name} ({self.kind})"

    @property
    def cases(self) -> dict[str, dict[str, Any]]:
        """The report's per-case entries that are well-formed (a hand-edited report may hold anything)."""
        cases = self.report.get("cases")
        return {str(k): v for k, v in cases.items() if isinstance(v, dict)} if isinstance(cases, dict) else {}

    def file(self, relative: str) -> Path:
        """A file the report names, resolved inside this folder (never outside it)."""
        return safe_path(self.path, relative)

    def input_file(self, named: str | Path, *, base: Path | None = None) -> Path:
        """A file the report names outside its own folder (an input image), confined to RESULTS_DIR
        or to a folder given with ``medsuite view --inputs``."""
        try:
            return safe_path(self.root or self.path, named, base=base or self.path)
        except MedsuiteError as refused:
            for allowed in self.input_roots:
                try:
                    return safe_path(allowed, named, base=base or self.path)
                except MedsuiteError:
                    continue
            if self.input_roots or "outside" not in refused.problem:
                raise
            raise MedsuiteError(refused.source, refused.problem, "restart with `medsuite view RESULTS --inputs FOLDER_OF_THE_IMAGES`, or serve a folder holding both") from None


    def named_file(self, named: str | Path, *, near: Path) -> Path:
        """A file a case's own record names (a prediction's images): absolute, or relative to ``near``
        (the record's folder), to this result folder or to RESULTS_DIR, the first that exists; each
        confined as ``input_file`` confines it."""
        if Path(str(named)).is_absolute():
            return self.input_file(named)
        first: Path | MedsuiteError | None = None
        for base in dict.fromkeys([near, self.path, *([self.root] if self.root else [])]):
            try:
                path = self.input_file(named, base=base)
            except MedsuiteError as refused:
                first = first or refused
                continue
            if path.exists():
                return path
            first = first or path
        if isinstance(first, MedsuiteError):
            raise first
        return first  # type: ignore[return-value]  # the nearest reading: the caller reports it missing


def _shown(typed: str | Path) -> str:
    """A path as an error line may quote it: printable, at most 80 characters."""
    text = repr(str(typed))[1:-1]
    return text if len(text) <= 80 else f"{text[:77]}..."


def safe_path(results_dir: str | Path, typed: str | Path, *, base: str | Path | None = None) -> Path:
    """``typed`` (absolute, or relative to ``base``, default ``results_dir``) resolved, symlinks
    followed, and refused with one line if it leaves ``results_dir`` or cannot be a path at all."""
    text = str(typed)
    if "\x00" in text:
        raise MedsuiteError(_shown(text), "contains a NUL byte, which no file name can hold", "type the folder's path without control characters")
    if len(text) > MAX_PATH_CHARS:
        raise MedsuiteError(_shown(text), f"is {len(text)} characters long (at most {MAX_PATH_CHARS})", "type a shorter path inside the results folder")
    root = Path(results_dir).resolve()
    candidate = Path(text)
    try:
        resolved = (candidate if candidate.is_absolute() else Path(base or root) / candidate).resolve()
    except (OSError, RuntimeError, ValueError) as exc:  # symlink loops, names too long for the file system
        raise MedsuiteError(_shown(text), f"cannot be resolved ({exc.__class__.__name__})", "type an existing path inside the results folder") from exc
    if resolved != root and root not in resolved.parents:
        raise MedsuiteError(_shown(text), f"is outside the results folder {root}", "open a folder inside it, or restart `medsuite view` on a folder that holds it")
    return resolved


def input_roots_from_env() -> tuple[Path, ...]:
    """The ``--inputs`` folders ``medsuite view`` passed to the app."""
    return tuple(Path(p).resolve() for p in os.environ.get(INPUTS_ENV, "").split(os.pathsep) if p)


def read_result(folder: str | Path, root: str | Path | None = None, input_roots: tuple[Path, ...] = ()) -> ResultFolder:
    """The result folder's kind and report, or a one-line error (``folder`` confined to ``root``)."""
    folder = safe_path(root, folder) if root is not None else Path(folder)
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
    return ResultFolder(path=folder.resolve(), kind=kind, report=report, root=Path(root).resolve() if root is not None else None, input_roots=input_roots)


def find_results(results_dir: str | Path, max_depth: int = 3, input_roots: tuple[Path, ...] = ()) -> list[ResultFolder]:
    """Every recognised result folder under ``results_dir`` (demo parts included), sorted by path;
    a folder reached through a symlink that leaves ``results_dir`` is not listed."""
    root = Path(results_dir)
    found: dict[Path, ResultFolder] = {}
    for report_path in sorted(root.glob("report.json")) + sorted(
        p for depth in range(1, max_depth + 1) for p in root.glob("/".join(["*"] * depth) + "/report.json")
    ):
        try:
            result = read_result(report_path.parent, root, input_roots)
        except MedsuiteError:
            continue  # per-case reports of batch runs and foreign folders are not results to open
        found[result.path] = result
        if result.kind == "demo":
            for part in result.report.get("parts", {}).values():
                try:
                    sub = read_result(result.file(part), root, input_roots)
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


#: Only files with these suffixes are hashed as "the model" (never a device or an arbitrary file).
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt", ".safetensors", ".ts")


def model_sha256(report: dict[str, Any]) -> str | None:
    """The sha256 of the model that produced a result: the one the report declares, else the hash
    of the checkpoint file it names (read only to hash it; nothing of it is shown), else None."""
    params = report.get("parameters", {}) or {}
    model = report.get("model") if isinstance(report.get("model"), dict) else {}
    for declared in (report.get("model_sha256"), params.get("model_sha256"), model.get("sha256")):
        if isinstance(declared, str) and declared:
            return declared
    for key in ("checkpoint", "model", "weights"):
        named = params.get(key) or (report.get(key) if isinstance(report.get(key), str) else None)
        if isinstance(named, str) and "\x00" not in named and len(named) <= MAX_PATH_CHARS:
            path = Path(named)
            if path.suffix.lower() in CHECKPOINT_SUFFIXES and path.is_file():
                return sha256_file(path)
    return None


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
