"""Split a batch run into parts for a cluster's job array, and merge the parts' outputs into one run.

``--num-parts K --part-id I`` keeps every K-th case of the case list sorted by name, starting at the I-th
(nnU-Net's ``-num_parts/-part_id`` rule: the same command line on every array task gives disjoint parts that
together cover every case). Each part writes its own ``report.part-I-of-K.json``, ``errors.part-I-of-K.tsv``,
``batch.part-I-of-K.log`` (and any per-part CSV) into the shared output folder, beside the per-case outputs.
:func:`merge_parts` (``medsuite merge OUTDIR``) joins them into ``report.json``, ``errors.tsv`` and the CSVs a
single run writes, and refuses parts that ran with different models, options or software.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from medsuite.errors import MedsuiteError
from medsuite.io import atomic_path, write_json

T = TypeVar("T")
PART_FILE = re.compile(r"^(?P<stem>.+)\.part-(?P<id>\d+)-of-(?P<of>\d+)(?P<suffix>\.[a-z]+)$")
# run-level keys of a report that differ between parts by nature; every other key must agree
PER_PART_KEYS = ("created_utc", "cases", "summary", "part", "energy")


@dataclass(frozen=True)
class Part:
    """Part ``part_id`` (0-based) of ``num_parts``; the default is the whole run, whose files keep their names."""

    num_parts: int = 1
    part_id: int = 0

    def __post_init__(self) -> None:
        if self.num_parts < 1:
            raise MedsuiteError("--num-parts", f"{self.num_parts} is not a number of parts", "give --num-parts 1 or more")
        if not 0 <= self.part_id < self.num_parts:
            raise MedsuiteError("--part-id", f"{self.part_id} is not between 0 and --num-parts - 1 = {self.num_parts - 1}", "give --part-id 0..K-1 (SLURM: --array=0-(K-1) and --part-id $SLURM_ARRAY_TASK_ID)")

    @property
    def whole(self) -> bool:
        return self.num_parts == 1

    def file(self, name: str) -> str:
        """This part's name of a run-level file: report.json -> report.part-1-of-3.json."""
        if self.whole:
            return name
        stem, dot, suffix = name.partition(".")
        return f"{stem}.part-{self.part_id}-of-{self.num_parts}{dot}{suffix}"

    def select(self, cases: Sequence[T], key=lambda case: case.name) -> list[T]:
        """This part's cases: every num_parts-th of the list sorted by ``key`` (the whole run keeps its order)."""
        if self.whole:
            return list(cases)
        return sorted(cases, key=key)[self.part_id :: self.num_parts]

    def describe(self) -> dict[str, int]:
        return {"id": self.part_id, "of": self.num_parts}


WHOLE = Part()


def _part_files(out_dir: Path, stem: str, suffix: str) -> dict[tuple[int, int], Path]:
    found = {}
    for path in sorted(out_dir.iterdir()):
        match = PART_FILE.match(path.name)
        if match and match["stem"] == stem and match["suffix"] == suffix:
            found[int(match["id"]), int(match["of"])] = path
    return found


def _read_report(path: Path) -> dict[str, Any]:
    try:
        report = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise MedsuiteError(path, f"cannot be read as a report ({type(exc).__name__})", "rerun that part with --continue") from exc
    if not isinstance(report, dict) or not isinstance(report.get("cases"), dict):
        raise MedsuiteError(path, "is not a batch report (no cases)", "remove it, or rerun that part with --continue")
    if "summary" not in report:
        raise MedsuiteError(path, "belongs to a part that has not finished (its report has no summary)", "wait for the part, or rerun it with --continue")
    return report


def _check_same_run(reports: dict[Path, dict[str, Any]]) -> None:
    (first_path, first), *others = reports.items()
    for path, report in others:
        for key in dict.fromkeys([*first, *report]):
            if key in PER_PART_KEYS or first.get(key) == report.get(key):
                continue
            detail = ""
            if isinstance(first.get(key), dict) and isinstance(report.get(key), dict):
                changed = sorted(k for k in {*first[key], *report[key]} if first[key].get(k) != report[key].get(k))
                detail = f" ({', '.join(changed)})"
            raise MedsuiteError(path, f"was run with another {key}{detail} than {first_path.name}", "rerun every part with the same model, options and software")


def _merge_tables(out_dir: Path, stem: str, suffix: str, num_parts: int, delimiter: str) -> Path | None:
    """One table from the parts' tables of ``stem``: one header (all must match), rows sorted by the first
    column (the case) so the result does not depend on how the cases were dealt."""
    parts = {key: path for key, path in _part_files(out_dir, stem, suffix).items() if key[1] == num_parts}
    target = out_dir / f"{stem}{suffix}"
    if not parts:
        return None
    header, rows = None, []
    for path in parts.values():
        lines = _read_rows(path.read_text(), delimiter)
        if not lines:
            continue
        if header is not None and lines[0] != header:
            raise MedsuiteError(path, f"has other columns than the other parts' {stem}{suffix}", "rerun every part with the same options")
        header = lines[0]
        rows += lines[1:]
    rows.sort(key=lambda row: row[0] if row else "")
    with atomic_path(target) as tmp:
        tmp.write_text(_format_rows([header or [], *rows], delimiter))
    return target


def _read_rows(text: str, delimiter: str) -> list[list[str]]:
    """errors.tsv is plain tab-separated lines (tabs in messages are replaced, quotes are not special); CSVs are CSV."""
    if delimiter == "\t":
        return [line.split("\t") for line in text.splitlines() if line]
    return list(csv.reader(io.StringIO(text)))


def _format_rows(rows: list[list[str]], delimiter: str) -> str:
    if delimiter == "\t":
        return "".join("\t".join(row) + "\n" for row in rows)
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    return buffer.getvalue()


def merge_parts(out_dir: str | Path) -> dict[str, Any]:
    """Merge the finished parts of one split run in ``out_dir`` into report.json, errors.tsv and the CSVs;
    returns the merged report. The parts' own files stay, and the merged report names them."""
    out_dir = Path(out_dir)
    if not out_dir.is_dir():
        raise MedsuiteError(out_dir, "no such output folder", "give the folder every part wrote into (-o of the batch command)")
    found = _part_files(out_dir, "report", ".json")
    if not found:
        raise MedsuiteError(out_dir, "holds no part reports (report.part-I-of-K.json)", "run the batch command with --num-parts K --part-id I into this folder first")
    splits = sorted({of for _, of in found})
    if len(splits) > 1:
        raise MedsuiteError(out_dir, f"holds parts of different splits (of {', of '.join(map(str, splits))})", "remove the reports of the split you do not want")
    num_parts = splits[0]
    missing = [i for i in range(num_parts) if (i, num_parts) not in found]
    if missing:
        raise MedsuiteError(out_dir, f"part{'s' if len(missing) > 1 else ''} {', '.join(map(str, missing))} of {num_parts} missing", "run the missing parts (or wait for them) before merging")
    reports = {found[i, num_parts]: _read_report(found[i, num_parts]) for i in range(num_parts)}
    _check_same_run(reports)
    cases: dict[str, Any] = {}
    for path, report in reports.items():
        for name, entry in report["cases"].items():
            if name in cases:
                raise MedsuiteError(path, f"case {name!r} is also in another part", "rerun the parts with one --num-parts value")
            cases[name] = entry
    first = next(iter(reports.values()))
    merged = {key: value for key, value in first.items() if key != "part"}
    merged["cases"] = dict(sorted(cases.items()))
    summaries = [r["summary"] for r in reports.values()]
    merged["summary"] = {key: sum(s.get(key, 0) for s in summaries) for key in summaries[0]}
    energy = next((r["energy"] for r in reports.values() if r.get("energy") is not None), None)  # part 0 holds the first sorted case
    if "energy" in first:
        merged["energy"] = energy
    merged["merged_from"] = [{"report": path.name, "created_utc": report.get("created_utc")} for path, report in reports.items()]
    for stem, suffix in sorted({(m["stem"], m["suffix"]) for p in out_dir.iterdir() if (m := PART_FILE.match(p.name)) and m["suffix"] == ".csv"}):
        _merge_tables(out_dir, stem, suffix, num_parts, ",")
    if _merge_tables(out_dir, "errors", ".tsv", num_parts, "\t") is None and (out_dir / "errors.tsv").exists():
        (out_dir / "errors.tsv").unlink()  # a stale table from an earlier merge: no part failed now
    write_json(out_dir / "report.json", merged)
    return merged
