"""report.json provenance: inputs' sha256, software versions, parameters, timings."""

from __future__ import annotations

import platform
from importlib.metadata import version
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medsuite import __version__
from medsuite.io import sha256_file
from medsuite.runtime import runtime_summary


def software_versions() -> dict[str, str]:
    return {
        "medsuite": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "monai": version("monai"),  # the installed distribution's version: importing MONAI costs ~3 s
        "numpy": np.__version__,
    }


def describe_inputs(paths: Iterable[str | Path]) -> list[dict[str, str]]:
    return [{"path": str(Path(p).resolve()), "sha256": sha256_file(p)} for p in paths]


def new_report(command: str, inputs: Iterable[str | Path] = (), parameters: dict[str, Any] | None = None) -> dict[str, Any]:
    """The common head of every report.json; pipelines add their figures under their own keys."""
    return {
        "kind": command,
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "versions": software_versions(),
        "runtime": runtime_summary(),
        "inputs": describe_inputs(inputs),
        "parameters": parameters or {},
    }
