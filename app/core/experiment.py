"""The experiment: which variants share the traffic, and how a request is assigned to one.

Assignment hashes (experiment name, sticky key): the same key lands on the same arm on every
replica and across restarts, with no shared state. Without a key, the request is assigned at random.
"""

from __future__ import annotations

import hashlib
import random
import uuid
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

EXPERIMENT_FILE = "experiment.yaml"


class ExperimentError(ValueError):
    """The experiment file is invalid or names variants the repository does not hold."""


class Arm(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    variant: str
    weight: float = Field(gt=0)


class Shadow(BaseModel):
    """Also score a share of the requests with another variant, off the answer's path."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    variant: str
    fraction: float = Field(gt=0, le=1)


class Experiment(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,62}$")
    arms: list[Arm] = Field(min_length=1)
    sticky_header: str = "X-User-ID"
    default: str | None = Field(None, description="variant for callers outside the experiment")
    shadow: Shadow | None = None

    @model_validator(mode="after")
    def _unique_arms(self) -> Experiment:
        variants = [arm.variant for arm in self.arms]
        if len(set(variants)) != len(variants):
            raise ValueError("each variant may be one arm only")
        return self

    def check_variants(self, known: frozenset[str]) -> None:
        named = {arm.variant for arm in self.arms} | ({self.default} if self.default else set())
        named |= {self.shadow.variant} if self.shadow else set()
        missing = sorted(named - known)
        if missing:
            raise ExperimentError(
                f"experiment {self.name!r} names variants not in the repository: {missing}; "
                f"available: {sorted(known)}"
            )

    def assign(self, key: str | None) -> str:
        """The arm for ``key``: a uniform point in [0, 1) from the hash, walked over the weights."""
        key = key if key is not None else uuid.uuid4().hex
        digest = hashlib.sha256(f"{self.name}\x00{key}".encode()).digest()
        point = int.from_bytes(digest[:8], "big") / 2**64 * sum(a.weight for a in self.arms)
        for arm in self.arms:
            point -= arm.weight
            if point < 0:
                return arm.variant
        return self.arms[-1].variant

    def shadows(self) -> bool:
        """Whether this request is also scored by the shadow: a random share of requests."""
        return self.shadow is not None and random.random() < self.shadow.fraction


def load_experiment(path: Path) -> Experiment:
    try:
        return Experiment.model_validate(yaml.safe_load(path.read_text()))
    except (OSError, yaml.YAMLError, ValidationError) as exc:
        raise ExperimentError(f"{path}: invalid experiment:\n{exc}") from exc
