"""Folder in, folder out: the runner every inference command (segment, register, classify) shares.

Load the model once (the caller's ``process`` closes over it), walk the cases with a progress bar,
skip cases already done with ``resume``, log a failing case to ``errors.tsv`` and go on, and write
``report.json`` atomically after every case so a killed run still leaves a true report.
Exit code: 0 all done, 1 some case failed.

Before any case runs, the planned outputs are checked (see docs/reliability.md): no two cases may map to
one output, no output may land inside an input or replace a file medsuite did not write there itself
(``manifest.json`` lists what it wrote, with sha256), and ``--continue`` must use the options of the run
it continues. Temp files a killed run left beside the outputs are removed.
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

from medsuite.errors import EXIT_CASE_FAILED, EXIT_OK, MedsuiteError, user_error_in
from medsuite.io import ITK_SUFFIXES, NIFTI_SUFFIXES, atomic_path, check_output_dir, image_kind, orphaned_temp_files, sha256_file, write_json
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
    Two inputs with one name (``d1/image.nii.gz``, ``d2/image.nii.gz``) are refused: their outputs would
    collide, and a made-up suffix could collide with a third input's name.
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
    cases: dict[str, Case] = {}
    for path in found:
        name = case_name(path)
        if name in cases:
            other = cases[name].path
            same = other.resolve() == path.resolve()
            problem = "is given twice" if same else f"and {other} both map to the case name {name!r} (their outputs would collide)"
            raise MedsuiteError(path, problem, "give each input once" if same else "rename one of them, or run them in separate batches with separate -o folders")
        cases[name] = Case(name, path)
    return list(cases.values())


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
    planned = check_outputs(cases, out_dir, outputs_of, part)
    cases, report_path = part.select(cases), out_dir / part.file("report.json")
    previous = _previous_run(report_path, command, parameters or {}) if resume else {}
    check_output_dir(out_dir, sum(_size(c.path) for c in cases))
    out_dir.mkdir(parents=True, exist_ok=True)
    for orphan in orphaned_temp_files([*planned, *(out_dir / part.file(name) for name in RUN_FILES)]):
        orphan.unlink()
    console = console or Console(stderr=True)
    handler = _configure_log(out_dir / part.file("batch.log"))
    manifest = Manifest(out_dir, part)
    manifest.add([out_dir / part.file("batch.log")])
    report = new_report(command, parameters=parameters) | (report_extra or {}) | ({} if part.whole else {"part": part.describe()})
    report["cases"] = {}
    failures: list[tuple[Case, str]] = []
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn())
    try:
        with Progress(*columns, console=console, disable=quiet, transient=False) as progress:
            task = progress.add_task(command, total=len(cases))
            for case in cases:
                progress.update(task, description=f"{command} {case.name}")
                if resume and _done_before(previous.get(case.name), outputs_of(case), manifest):
                    report["cases"][case.name] = previous[case.name] | {"status": "skipped (done)"}
                    log.info("skip %s: done by the run being continued", case.name)
                    progress.advance(task)
                    continue
                start = time.perf_counter()
                manifest.add(outputs_of(case), pending=True)
                try:
                    figures = process(case)
                    manifest.add(outputs_of(case))
                    entry = {"input": str(case.path.resolve()), "sha256": sha256_file(case.path), "status": "done", "seconds": round(time.perf_counter() - start, 3), **figures}
                    log.info("done %s in %.2fs", case.name, entry["seconds"])
                except Exception as exc:  # one broken case must not stop the night's run
                    user = user_error_in(exc)  # a MedsuiteError, possibly wrapped by a library: the user's to fix
                    message = user.line() if user else f"{case.path}: internal error ({type(exc).__name__}: {exc})"
                    failures.append((case, message))
                    entry = {"input": str(case.path.resolve()), "status": "failed", "error": message}
                    log.error("failed %s: %s", case.name, message if user else "\n" + traceback.format_exc())
                    console.print(f"error: {message}", markup=False, highlight=False, soft_wrap=True)  # one line, whatever the width
                report["cases"][case.name] = entry
                manifest.add([report_path])
                write_json(report_path, report)
                progress.advance(task)
    finally:
        log.removeHandler(handler)
        handler.close()
    report["summary"] = {"cases": len(cases), "failed": len(failures), "done_or_skipped": len(cases) - len(failures)}
    errors_path = out_dir / part.file("errors.tsv")
    manifest.add([report_path, *([errors_path] if failures else [])])
    write_json(report_path, report)
    _write_errors(errors_path, failures)
    return EXIT_CASE_FAILED if failures else EXIT_OK


# ---------------------------------------------------------------------------------------------
# What a run may write, and what it did write

#: files of the run itself, beside the case outputs
RUN_FILES = ("report.json", "errors.tsv", "batch.log", "manifest.json")


class Manifest:
    """``OUT/manifest.json``: every file medsuite wrote into OUT (relative path -> sha256; null for the run
    files it rewrites as it goes, and for a case's outputs while the case runs, so a run killed mid-case
    still owns them), so a rerun or ``--continue`` may replace exactly those and no other."""

    def __init__(self, out_dir: Path, part: Part = WHOLE):
        self.out_dir = out_dir
        self.path = out_dir / part.file("manifest.json")  # one per part: job-array tasks write side by side
        self.run_files = {part.file(name) for name in RUN_FILES}
        self.files: dict[str, str | None] = read_manifest(self.path)

    def _relative(self, path: Path) -> str:
        return Path(path).resolve().relative_to(self.out_dir.resolve()).as_posix()

    def add(self, paths: Iterable[Path], *, pending: bool = False) -> None:
        """Record ``paths``: before a case runs (``pending``), then with their sha256 once written."""
        for path in paths:
            relative = self._relative(path)
            self.files[relative] = None if pending or relative in self.run_files or not Path(path).exists() else sha256_file(path)
        self.files[self.path.name] = None
        write_json(self.path, {"written_by": "medsuite", "files": self.files})

    def owns(self, path: Path) -> bool:
        """Written (or being written) by medsuite and not edited since: a mask corrected by hand is the user's."""
        relative = self._relative(path)
        return relative in self.files and (self.files[relative] is None or self.files[relative] == sha256_file(path))

    def confirmed(self, path: Path) -> bool:
        """Written completely by medsuite, unchanged since."""
        relative = self._relative(path)
        return self.files.get(relative) is not None and self.files[relative] == sha256_file(path)


def read_manifest(target: Path) -> dict[str, str | None]:
    """The files a manifest (``OUT/manifest.json``, or a part's) records; empty when there is none."""
    target = Path(target)
    if not target.exists():
        return {}
    try:
        data = json.loads(target.read_text())
        return dict(data["files"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise MedsuiteError(target, "is not a medsuite manifest (damaged or someone else's)", "choose another output folder with -o") from exc


def check_outputs(cases: Sequence[Case], out_dir: Path, outputs_of: Callable[[Case], Sequence[Path]], part: Part = WHOLE) -> list[Path]:
    """Refuse, before any work, outputs that collide, land inside an input, or replace a file medsuite
    did not write (see :class:`Manifest`). Collisions are checked over every case; replacements over the
    cases of ``part`` (other parts' outputs are theirs). Returns the part's planned outputs."""
    out_dir = Path(out_dir)
    owner: dict[Path, Case] = {}
    inputs = {c.path.resolve(): c for c in cases}
    case_folders = [c.path.resolve() for c in cases if c.path.is_dir()]
    mine = {id(case) for case in part.select(cases)}
    for case in cases:
        for target in map(Path, outputs_of(case)):
            resolved = target.resolve()
            if resolved in owner:
                raise MedsuiteError(case.path, f"and {owner[resolved].path} would both write {target}", "rename one of them, or run them into separate -o folders")
            owner[resolved] = case
            if resolved in inputs:
                raise MedsuiteError(target, f"is an input, and the output of {case.path} would replace it", "choose another output folder with -o")
            inside = next((folder for folder in case_folders if resolved.is_relative_to(folder)), None)
            if inside is not None:
                raise MedsuiteError(target, f"would be written inside the input case folder {inside}", "choose an output folder outside the inputs with -o")
    planned = [target for target, case in owner.items() if id(case) in mine]
    refuse_replacing_others(out_dir, [*planned, *(out_dir.resolve() / part.file(name) for name in RUN_FILES)], part)
    return planned


def refuse_replacing_others(out_dir: Path, targets: Iterable[Path], part: Part = WHOLE) -> None:
    """Refuse if any of ``targets`` exists and is not medsuite's own, unchanged output (see :class:`Manifest`)."""
    manifest = Manifest(Path(out_dir), part) if Path(out_dir).is_dir() else None
    for target in map(Path, targets):
        if target.exists() and not (manifest and manifest.owns(target)):
            what = "a folder" if target.is_dir() else "a file medsuite did not write here (or one edited since)"
            raise MedsuiteError(target, f"would be replaced, and it is {what}", "choose another output folder with -o, or move the file away")


def _previous_run(target: Path, command: str, parameters: dict[str, Any]) -> dict[str, Any]:
    """The cases of the run ``--continue`` continues (its report, ``target``); refused if it ran another
    command or other options."""
    if not target.exists():
        return {}
    try:
        previous = json.loads(target.read_text())
    except (OSError, ValueError) as exc:
        raise MedsuiteError(target, "cannot be read (damaged)", "run without --continue to redo every case") from exc
    before = previous.get("parameters") or {}
    changed = sorted(k for k in {*before, *parameters} if before.get(k) != json.loads(json.dumps(parameters.get(k), default=str)))
    if previous.get("kind", command) != command or changed:
        what = f"command {previous.get('kind')}" if previous.get("kind", command) != command else ", ".join(f"{k}: {before.get(k)!r} -> {parameters.get(k)!r}" for k in changed)
        raise MedsuiteError(target, f"--continue with other options than the run it continues ({what})", "use the same options, or run without --continue to redo every case, or choose a new -o folder")
    return previous.get("cases", {})


def _done_before(entry: dict[str, Any] | None, outputs: Sequence[Path], manifest: Manifest) -> bool:
    """Skip a case only if its report entry is complete and its outputs are the ones medsuite wrote."""
    return bool(entry) and entry.get("status") in ("done", "skipped (done)") and all(p.exists() and manifest.confirmed(p) for p in outputs)


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else path.stat().st_size
