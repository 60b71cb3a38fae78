"""Pipeline YAML files validated by pydantic; errors list each bad field on its own line.

The shipped pipelines (``medsuite/pipelines/*.yaml``) are package data, found through importlib.resources,
so every default works from any folder and from an installed wheel. They are the single source of
defaults: a command without ``--pipeline`` reads the shipped file, never a class's field defaults.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from medsuite.errors import MedsuiteError

Model = TypeVar("Model", bound=BaseModel)

# The folder above the package: relative data roots in data cards are resolved from it (in a source
# checkout, the repository root), never from the current folder.
REPO_ROOT = Path(__file__).resolve().parent.parent
PIPELINES_DIR = Path(str(resources.files("medsuite") / "pipelines"))


def read_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise MedsuiteError(path, "no such file", "check the path")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise MedsuiteError(path, f"is not valid YAML{where}", "fix the syntax") from exc
    if not isinstance(data, dict):
        raise MedsuiteError(path, "does not hold a YAML mapping", "write key: value pairs at the top level")
    return data


def validation_problems(exc: ValidationError) -> list[str]:
    """One readable line per pydantic error: 'field.path: message'."""
    return [f"{'.'.join(str(p) for p in err['loc']) or '(top level)'}: {err['msg']}" for err in exc.errors()]


def load_pipeline(name_or_path: str | Path, model: type[Model]) -> Model:
    """A pipeline YAML (a shipped name or a path) validated by ``model``; one line lists every bad field."""
    path = pipeline_path(name_or_path)
    data = read_yaml(path)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise MedsuiteError(path, "invalid pipeline: " + " | ".join(validation_problems(exc)), "fix these fields") from exc


def shipped_pipelines() -> list[str]:
    return sorted(p.stem for p in PIPELINES_DIR.glob("*.yaml"))


def pipeline_path(name: str | Path) -> Path:
    """A pipeline YAML: a shipped one by name (``registration_girnet``), else a file path (``my.yaml``)."""
    text = str(name)
    if "/" not in text and "\\" not in text and not text.endswith((".yaml", ".yml")):
        shipped = PIPELINES_DIR / f"{text}.yaml"
        if not shipped.is_file():
            raise MedsuiteError(text, "no such shipped pipeline", f"use one of: {', '.join(shipped_pipelines())}, or a path to a pipeline YAML")
        return shipped
    return Path(name)
