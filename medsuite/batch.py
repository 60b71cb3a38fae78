"""Folder in, folder out: the runner every inference command (segment, register, classify) shares.

Load the model once (the caller's ``process`` closes over it), walk the cases with a progress bar,
skip cases already done with ``resume``, log a failing case to ``errors.tsv`` and go on, and write
``report.json`` atomically after every case so a killed run still leaves a true report.
Exit code: 0 all done, 1 some case failed.
"""

from __future__ import annotations

import json
import logging
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from medsuite.errors import EXIT_CASE_FAILED, EXIT_OK, MedsuiteError
from medsuite.io import ITK_SUFFIXES, NIFTI_SUFFIXES, atomic_path, image_kind, sha256_file, write_json
from medsuite.provenance import new_report
from medsuite.sharding import WHOLE, Part

log = logging.getLogger("medsuite.batch")


@dataclass(frozen=True)
class Case:
    """One input: a NIfTI/MHA/NRRD file or a DICOM series folder, with a unique output name."""

    name: str
    path: Path


def case_name(path: Path) -> str:
    name = path.name
    for suffix in sorted(NIFTI_SUFFIXES + ITK_SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def _looks_like_dicom_folder(folder: Path) -> bool:
    files = [p for p in folder.iterdir() if p.is_file()]
    if not files:
        return False
    with open(files[0], "rb") as handle:
        head = handle.read(132)
    return head[128:132] == b"DICM" or files[0].suffix.lower() == ".dcm"


def find_cases(inputs: Iterable[str | Path], *, case_kind: Callable[[Path], bool] | None = None) -> list[Case]:
    """Expand inputs into cases: image files, DICOM series folders, and folders holding either.

    ``case_kind`` overrides what counts as a case folder (the classifier's cases are patient folders).
    Names are made unique with a numeric suffix so two 'image.nii.gz' never overwrite each other.
    """
    found: list[Path] = []
    for item in map(Path, inputs):
        if not item.exists():
            raise MedsuiteError(item, "no such file or folder", "check the path")
        if item.is_file():
            image_kind(item)  # a named file of an unsupported format is a usage error, not a failed case
            found.append(item)
        elif (case_kind or _looks_like_dicom_folder)(item):
            found.append(item)
        else:
            children = sorted(item.iterdir())
            found += [c for c in children if c.is_file() and c.name.lower().endswith(NIFTI_SUFFIXES + ITK_SUFFIXES)]
            found += [c for c in children if c.is_dir() and (case_kind or _looks_like_dicom_folder)(c)]
    if not found:
        raise MedsuiteError(", ".join(map(str, inputs)) or "(no input)", "no images found", "give NIfTI/MHA/NRRD files or DICOM series folders")
    cases, seen = [], {}
    for path in found:
        base = case_name(path)
        seen[base] = seen.get(base, 0) + 1
        cases.append(Case(base if seen[base] == 1 else f"{base}_{seen[base]}", path))
    return cases


def _configure_log(target: Path) -> logging.FileHandler:
    handler = logging.FileHandler(target)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    return handler


def _write_errors(target: Path, failures: Sequence[tuple[Case, str]]) -> None:
    if not failures:
        if target.exists():
            target.unlink()
        return
    with atomic_path(target) as tmp:
        lines = ["case\tinput\terror"] + [f"{c.name}\t{c.path}\t{msg.replace(chr(9), ' ')}" for c, msg in failures]
        tmp.write_text("\n".join(lines) + "\n")


def run_batch(
    cases: Sequence[Case],
    out_dir: str | Path,
    process: Callable[[Case], dict[str, Any]],
    *,
    outputs_of: Callable[[Case], Sequence[Path]],
    command: str,
    parameters: dict[str, Any] | None = None,
    resume: bool = False,
    quiet: bool = False,
    console: Console | None = None,
    report_extra: dict[str, Any] | None = None,
    part: Part = WHOLE,
) -> int:
    """Run ``process`` on every case; returns the exit code (0 all done, 1 some case failed).

    ``report_extra`` adds run-level figures to report.json (the model's energy estimate, its labels...).
    ``part``: a job array's share of the cases, with its own report/errors/log names (medsuite.sharding).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    console = console or Console(stderr=True)
    cases, report_path = part.select(cases), out_dir / part.file("report.json")
    handler = _configure_log(out_dir / part.file("batch.log"))
    report = new_report(command, parameters=parameters) | (report_extra or {}) | ({} if part.whole else {"part": part.describe()})
    previous = _previous_cases(report_path) if resume else {}
    report["cases"] = {}
    failures: list[tuple[Case, str]] = []
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn())
    try:
        with Progress(*columns, console=console, disable=quiet, transient=False) as progress:
            task = progress.add_task(command, total=len(cases))
            for case in cases:
                progress.update(task, description=f"{command} {case.name}")
                if resume and all(p.exists() for p in outputs_of(case)):
                    report["cases"][case.name] = previous.get(case.name, {"input": str(case.path.resolve())}) | {"status": "skipped (done)"}
                    log.info("skip %s: outputs present", case.name)
                    progress.advance(task)
                    continue
                start = time.perf_counter()
                try:
                    figures = process(case)
                    entry = {"input": str(case.path.resolve()), "sha256": sha256_file(case.path), "status": "done", "seconds": round(time.perf_counter() - start, 3), **figures}
                    log.info("done %s in %.2fs", case.name, entry["seconds"])
                except MedsuiteError as exc:
                    failures.append((case, exc.line()))
                    entry = {"input": str(case.path.resolve()), "status": "failed", "error": exc.line()}
                    log.error("failed %s: %s", case.name, exc.line())
                    console.print(f"error: {exc.line()}", markup=False, highlight=False)
                except Exception as exc:  # one broken case must not stop the night's run
                    message = f"{case.path}: internal error ({type(exc).__name__}: {exc})"
                    failures.append((case, message))
                    entry = {"input": str(case.path.resolve()), "status": "failed", "error": message}
                    log.error("failed %s:\n%s", case.name, traceback.format_exc())
                    console.print(f"error: {message}", markup=False, highlight=False)
                report["cases"][case.name] = entry
                write_json(report_path, report)
                progress.advance(task)
    finally:
        log.removeHandler(handler)
        handler.close()
    report["summary"] = {"cases": len(cases), "failed": len(failures), "done_or_skipped": len(cases) - len(failures)}
    write_json(report_path, report)
    _write_errors(out_dir / part.file("errors.tsv"), failures)
    return EXIT_CASE_FAILED if failures else EXIT_OK


def _previous_cases(report: Path) -> dict[str, Any]:
    try:
        return json.loads(report.read_text()).get("cases", {}) if report.exists() else {}
    except (OSError, ValueError):
        return {}
