"""How the service spends its cores: the plan the ``BRUM_*`` settings give, or, when they give
none, the one measured on this machine at start-up (app/runtime/calibration.py); and what a run
costs with that plan, measured either way unless ``BRUM_CALIBRATE=false``."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from app.core.registry import WARMUP_TEXTS
from app.runtime.batching import FILL_BATCHES, BatchCost
from app.runtime.calibration import (
    Measurement,
    Plan,
    calibrate,
    candidate_plans,
)
from app.runtime.tokenizer import TextEncoder
from app.settings import Settings

logger = logging.getLogger("brum.placement")

# Against a session of several threads, a wider one serves lone texts only if calibration saw it
# answer one this much faster: less is within its noise, not worth another session's memory.
WIDE_LONE_GAIN = 0.9
# A one-thread session runs a lone text wholly on the event loop's core, whose caches the loop's
# own work evicts between two requests; calibration times runs back to back and does not see it.
# Served, a session on both cores of a 2-core Xeon answered 3-4% sooner even where calibration
# had measured it 4% slower, and its calibrated ratio to one thread varies between starts by more
# than 10% (BENCHMARKS.md, 2026-12-06). So against a one-thread session, a wider one serves lone
# texts unless calibration measured it this much slower.
WIDE_LONE_SLOWER = 1.25


@dataclass(frozen=True)
class Placement:
    plan: Plan
    source: str  # "configured", "calibrated" or "default"
    max_batch_size: int  # texts per batch the batchers cut, at most
    cost: BatchCost = FILL_BATCHES  # of one run: where the batchers cut
    measurements: list[Measurement] = field(default_factory=list)

    @property
    def lone_threads(self) -> int:
        """Threads of the session lone texts run on, inline: the fastest for one text of the
        sessions with more threads than the plan's own that WIDE_LONE_GAIN or WIDE_LONE_SLOWER
        admits; the plan's own if there is none. At one connection the other cores are idle."""
        narrow = self.plan.threads
        lone = {m.plan.threads: m.lone_seconds for m in self.measurements}
        if narrow not in lone:
            return narrow
        slowest = lone[narrow] * (WIDE_LONE_SLOWER if narrow == 1 else WIDE_LONE_GAIN)
        wider = [t for t in lone if t > narrow and lone[t] < slowest]
        return min(wider, key=lone.__getitem__, default=narrow)

    @property
    def lone_candidates(self) -> tuple[int, ...]:
        """Threads of the sessions lone texts may run on, ``lone_threads`` first, then the other
        of the plan's own and the widest calibration measured, if it differs: the route
        (app/core/lone.py) times both on served lone texts and follows the faster."""
        chosen, own = self.lone_threads, self.plan.threads
        widest = max((m.plan.threads for m in self.measurements), default=own)
        other = own if chosen != own else widest
        return (chosen,) if other == chosen else (chosen, other)


def configured_plan(settings: Settings, cores: int) -> Plan | None:
    """The plan the settings fix, if they fix one: either setting implies the other."""
    threads, workers = settings.intra_op_threads, settings.inference_workers
    if threads is None and not workers:
        return None
    if threads is None:
        return Plan(1 if workers > 1 else cores, workers)
    threads = threads or cores
    return Plan(threads, workers or (cores if threads == 1 else 1))


def place(
    settings: Settings, model: Path, tokenizer: TextEncoder, cores: int, quota: float | None = None
) -> Placement:
    """``quota``: the cgroup's CPU quota, if any (app/runtime/cores.py); one below ``cores``
    throttles the plans, and calibration measures what it leaves them."""
    plan = configured_plan(settings, cores)
    largest = settings.max_batch_size
    if not settings.calibrate:
        placement = Placement(plan or Plan(1, cores), "configured" if plan else "default", largest)
    else:
        measured = calibrate(
            model,
            tokenizer,
            [plan] if plan else candidate_plans(cores),
            WARMUP_TEXTS[1],  # a typical utterance's length
            in_flight=largest,
            max_tokens=settings.max_batch_tokens,
            graph_optimization_level=settings.graph_optimization_level,
            quota=quota if quota is not None and quota < cores else None,
        )
        for m in measured.measurements:
            logger.info(
                "calibration: %s: %.0f texts/s, lone text %.3f ms, a run %.3f ms + %.4f ms a token",
                m.plan,
                m.texts_per_second,
                m.lone_seconds * 1000,
                m.cost.overhead * 1000,
                m.cost.per_token * 1000,
            )
        chosen = measured.chosen
        source = "configured" if plan else "calibrated"
        placement = Placement(chosen.plan, source, largest, chosen.cost, measured.measurements)
    logger.info(
        "inference plan (%s, %d cores%s): %s, batches of up to %d texts",
        placement.source,
        cores,
        f", a quota of {quota:g} CPUs" if quota is not None else "",
        placement.plan,
        placement.max_batch_size,
    )
    return placement
