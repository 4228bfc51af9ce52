"""The experiment: which variants share the traffic, and how a request is assigned to one.

Assignment hashes (experiment name, sticky key): the same key lands on the same arm on every
replica and across restarts, with no shared state. Without a key, the request is assigned at random.
"""

from __future__ import annotations

import hashlib
import itertools
import random
import uuid
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from app.core.card import NAME_PATTERN

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


class Gates(BaseModel):
    """What a candidate must show at each step of a rollout (app/rollout)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    accuracy_margin: float = Field(
        0.01, gt=0, lt=1, description="non-inferiority margin of online accuracy"
    )
    min_judgments: int = Field(200, ge=1, description="feedback per arm before a promotion")
    p99_latency_ms: float | None = Field(100.0, gt=0, description="candidate's p99 at most")
    max_error_ratio: float = Field(0.01, ge=0, le=1, description="candidate's (5xx + 429) share")
    min_agreement: float | None = Field(
        None, gt=0, le=1, description="shadow agreement with the control at least, if shadowed"
    )
    alpha: float = Field(0.05, gt=0, lt=1, description="error rate of every decision")


class Rollout(BaseModel):
    """A progressive rollout of ``candidate`` against ``control``: the traffic share steps up
    while every gate passes and falls back to the control at once when one fails. The
    controller keeps its state here, so that it survives the controller's restart."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    control: str
    candidate: str
    steps: list[float] = Field(default_factory=lambda: [1.0, 5.0, 25.0, 50.0, 100.0])
    gates: Gates = Field(default_factory=Gates)
    min_step_seconds: float = Field(60.0, ge=0, description="shortest time at a step")
    max_step_seconds: float = Field(
        3600.0, gt=0, description="longest time at a step: still undecided, it rolls back"
    )
    status: Literal["running", "promoted", "rolled-back"] = "running"
    step: int = Field(0, ge=0, description="index of the current step (the controller's)")
    started_at: float | None = Field(None, description="unix time the rollout began")
    step_started_at: float | None = Field(None, description="unix time the step began")
    reason: str = ""

    @model_validator(mode="after")
    def _steps_climb_to_100(self) -> Rollout:
        steps = self.steps
        if not steps or any(b <= a for a, b in itertools.pairwise(steps)):
            raise ValueError("rollout steps must increase")
        if not (steps[0] > 0 and steps[-1] == 100):
            raise ValueError("rollout steps are percentages that end at 100")
        if self.step >= len(steps):
            raise ValueError(f"rollout step {self.step} is past the last of {len(steps)}")
        if self.control == self.candidate:
            raise ValueError("the candidate and the control must differ")
        return self


class Experiment(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=NAME_PATTERN)
    arms: list[Arm] = Field(min_length=1)
    sticky_header: str = "X-User-ID"
    default: str | None = Field(None, description="variant for callers outside the experiment")
    shadow: Shadow | None = None
    rollout: Rollout | None = None

    @model_validator(mode="after")
    def _unique_arms(self) -> Experiment:
        variants = [arm.variant for arm in self.arms]
        if len(set(variants)) != len(variants):
            raise ValueError("each variant may be one arm only")
        return self

    def check_variants(self, known: frozenset[str]) -> None:
        named = {arm.variant for arm in self.arms} | ({self.default} if self.default else set())
        named |= {self.shadow.variant} if self.shadow else set()
        named |= {self.rollout.control, self.rollout.candidate} if self.rollout else set()
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
