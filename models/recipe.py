"""Recipes: a declarative YAML file per experiment, so a variant's lineage is data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatasetSpec(_Strict):
    name: str = "clinc150"
    config: str = "plus"
    path: Path | None = None


class TeacherSpec(_Strict):
    base: str
    finetune: dict[str, Any] = Field(default_factory=dict)


class Recipe(_Strict):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]*$")
    dataset: DatasetSpec = DatasetSpec()
    teacher: TeacherSpec


class RecipeError(ValueError):
    """The recipe file is missing or invalid."""


def load_recipe(path: Path) -> Recipe:
    if not path.is_file():
        raise RecipeError(f"recipe not found: {path}")
    try:
        return Recipe.model_validate(yaml.safe_load(path.read_text()))
    except (yaml.YAMLError, ValidationError) as exc:
        raise RecipeError(f"{path}: invalid recipe:\n{exc}") from exc
