"""The review log: one JSON line per clinician decision in RESULTS_DIR/reviews.jsonl."""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from medsuite.errors import MedsuiteError
from medsuite.io import sha256_file

DECISIONS = ("approve", "reject", "needs-edit")
LOG_NAME = "reviews.jsonl"


def append_review(
    results_dir: str | Path,
    *,
    case: str,
    output: str | Path,
    model_version: str,
    model_sha256: str | None,
    reviewer: str,
    decision: str | None,
    comment: str = "",
) -> dict[str, Any]:
    """Append a decision about ``output`` and return it. The output is hashed (a later edit of the
    file is detectable) and the model's sha256 recorded, so each decision names exactly what was
    reviewed. There is no default decision: ``None`` is refused like an unknown word."""
    if decision is None:
        raise MedsuiteError("Decision", "is not chosen", f"choose {', '.join(DECISIONS)} before recording")
    if decision not in DECISIONS:
        raise MedsuiteError(decision, "is not a review decision", f"choose one of {', '.join(DECISIONS)}")
    if not reviewer.strip():
        raise MedsuiteError("Reviewer", "is empty", "type your name so the decision can be traced")
    entry = {
        "case": case,
        "output": str(output),
        "output_sha256": sha256_file(output),
        "model_version": model_version,
        "model_sha256": model_sha256,
        "reviewer": reviewer.strip(),
        "time_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "decision": decision,
        "comment": comment.strip(),
    }
    line = (json.dumps(entry) + "\n").encode()
    # One write() on an O_APPEND descriptor: concurrent reviewers never interleave half lines.
    fd = os.open(Path(results_dir) / LOG_NAME, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)
    return entry


def read_reviews(results_dir: str | Path) -> list[dict[str, Any]]:
    path = Path(results_dir) / LOG_NAME
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
