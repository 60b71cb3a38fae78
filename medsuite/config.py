"""Pipeline YAML files validated by pydantic; errors list each bad field on its own line."""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from medsuite.errors import MedsuiteError

Model = TypeVar("Model", bound=BaseModel)

REPO_ROOT = Path(__file__).resolve().parent.parent
PIPELINES_DIR = REPO_ROOT / "pipelines"


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


def load_pipeline(path: str | Path, model: type[Model]) -> Model:
    data = read_yaml(path)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise MedsuiteError(path, "invalid pipeline: " + " | ".join(validation_problems(exc)), "fix these fields") from exc
