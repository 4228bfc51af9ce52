"""Where the running experiment comes from, so that every replica runs the same one.

The *declared* experiment is a file (in Kubernetes, a ConfigMap mounted as a volume), read again
at every sync. A change through the admin API is an *override* in the shared store, recorded
with the hash of the declared file it was made over: while the file stays the same the override
holds, and once the file changes (a new ConfigMap rolled out) the first replica to see it drops
the override and the file holds again. Nothing compares clocks, so replicas that read the same
file and store run the same experiment.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass
from pathlib import Path

import yaml
from pydantic import ValidationError

from app.core.coordination import Coordination, Override
from app.core.experiment import Experiment, ExperimentError

NO_FILE = ""  # the declared hash when there is no experiment file


@dataclass(frozen=True)
class Resolved:
    experiment: Experiment | None
    source: str  # "file", "admin" or "none"
    declared: str  # hash of the declared file's content


def experiment_hash(experiment: Experiment | None) -> str:
    """Short and stable: the dashboard shows whether every replica runs the same experiment."""
    if experiment is None:
        return "none"
    return hashlib.sha256(experiment.model_dump_json().encode()).hexdigest()[:12]


def parse_experiment(data: bytes, where: Path) -> Experiment:
    try:
        return Experiment.model_validate(yaml.safe_load(data))
    except (yaml.YAMLError, ValidationError) as exc:
        raise ExperimentError(f"{where}: invalid experiment:\n{exc}") from exc


class ExperimentSource:
    def __init__(self, path: Path, required: bool, coordination: Coordination) -> None:
        self.path = path
        # A configured file must exist; the repository's experiment.yaml is optional.
        self.required = required
        self.coordination = coordination

    def _read(self) -> bytes | None:
        try:
            return self.path.read_bytes()
        except FileNotFoundError:
            if self.required:
                raise ExperimentError(f"{self.path}: the experiment file is missing") from None
            return None
        except OSError as exc:
            raise ExperimentError(f"{self.path}: cannot read the experiment: {exc}") from exc

    async def _declared(self) -> tuple[bytes | None, str]:
        data = await asyncio.to_thread(self._read)
        return data, hashlib.sha256(data).hexdigest() if data is not None else NO_FILE

    async def declared_hash(self) -> str:
        return (await self._declared())[1]

    async def resolve(self) -> Resolved:
        """The experiment to run now; ExperimentError if what holds is invalid."""
        data, declared = await self._declared()
        override = await self.coordination.override()
        if override is not None:
            if override.declared == declared:
                return Resolved(override.experiment, "admin", declared)
            await self.coordination.drop_override(override)
        experiment = parse_experiment(data, self.path) if data is not None else None
        return Resolved(experiment, "file" if experiment else "none", declared)

    async def override(self, experiment: Experiment | None) -> None:
        """Make ``experiment`` the one every replica runs, until the declared file changes."""
        await self.coordination.set_override(Override(experiment, await self.declared_hash()))
