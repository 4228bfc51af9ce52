"""Seeded simulation of A/B monitoring: how often each test calls a difference that is not there
when people look at every step, and how many judgments it takes to find one that is.

    python -m loadtests.sequential_simulation [--experiments 1000] [--looks 100]

Each simulated experiment judges ``per_look`` texts per arm between looks, at a control accuracy
of 0.90. At every look two tests are read: the confidence sequence of app/rollout/sequential.py,
and the fixed-horizon 95% interval (normal approximation, the same variance) monitored the same
way. Verdicts as the rollout uses them, with a non-inferiority margin: worse (the interval below
-margin), better (above 0), non-inferior (above -margin).
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass

import numpy as np

from app.rollout.sequential import default_tau, difference_variance, radius

Z95 = 1.959964
Z80 = 0.841621


@dataclass(frozen=True)
class Plan:
    experiments: int = 1000
    looks: int = 100
    per_look: int = 300
    control: float = 0.90
    margin: float = 0.01
    alpha: float = 0.05
    seed: int = 0


@dataclass(frozen=True)
class Outcome:
    drop: float
    false_difference: dict[str, float]  # share of experiments whose interval excluded 0 once
    worse: dict[str, float]  # share called worse at some look
    non_inferior: dict[str, float]  # share called non-inferior at some look
    median_judgments_to_worse: dict[str, float | None]  # per arm, among those called worse


def simulate(plan: Plan, drop: float) -> Outcome:
    rng = np.random.default_rng([plan.seed, round(drop * 1000)])
    shape = (plan.experiments, plan.looks)
    control = rng.binomial(plan.per_look, plan.control, shape).cumsum(axis=1)
    candidate = rng.binomial(plan.per_look, plan.control - drop, shape).cumsum(axis=1)
    judged = plan.per_look * np.arange(1, plan.looks + 1)
    estimate = (candidate - control) / judged
    variance = difference_variance(control, judged, candidate, judged)
    halves = {
        "sequential": radius(variance, plan.alpha, default_tau(plan.margin)),
        "fixed-horizon": Z95 * np.sqrt(variance),
    }
    result: dict[str, dict] = {"false": {}, "worse": {}, "noninf": {}, "median": {}}
    for name, half in halves.items():
        low, high = estimate - half, estimate + half
        worse = high < -plan.margin
        result["false"][name] = float(((low > 0) | (high < 0)).any(axis=1).mean())
        result["worse"][name] = float(worse.any(axis=1).mean())
        result["noninf"][name] = float((low > -plan.margin).any(axis=1).mean())
        found = worse.any(axis=1)
        first = worse.argmax(axis=1)[found]
        result["median"][name] = float(np.median(judged[first])) if found.any() else None
    return Outcome(drop, result["false"], result["worse"], result["noninf"], result["median"])


def fixed_horizon_size(plan: Plan, drop: float) -> int:
    """Judgments per arm a fixed-horizon test needs to call a true ``drop`` worse than the
    margin with 80% power (normal approximation)."""
    p1, p2 = plan.control, plan.control - drop
    variance = p1 * (1 - p1) + p2 * (1 - p2)
    return math.ceil((Z95 + Z80) ** 2 * variance / (drop - plan.margin) ** 2)


def markdown(plan: Plan, outcomes: list[Outcome]) -> str:
    lines = [
        f"{plan.experiments} experiments per row, {plan.looks} looks, {plan.per_look} judgments "
        f"per arm between looks, control accuracy {plan.control}, margin {plan.margin:g}, "
        f"alpha {plan.alpha}, seed {plan.seed}",
        "",
        "| true difference | test | interval excluded 0 at some look | called worse | called "
        "non-inferior | median judgments per arm to 'worse' | fixed-horizon size (80% power) |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for outcome in outcomes:
        for name in ("sequential", "fixed-horizon"):
            median = outcome.median_judgments_to_worse[name]
            size = fixed_horizon_size(plan, outcome.drop) if outcome.drop > plan.margin else None
            lines.append(
                f"| {(0.0 - outcome.drop) * 100:+.0f} points | {name} | "
                f"{outcome.false_difference[name]:.1%} | "
                f"{outcome.worse[name]:.1%} | {outcome.non_inferior[name]:.1%} | "
                f"{'–' if median is None else f'{median:,.0f}'} | "
                f"{'–' if size is None else f'{size:,}'} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m loadtests.sequential_simulation")
    parser.add_argument("--experiments", type=int, default=Plan.experiments)
    parser.add_argument("--looks", type=int, default=Plan.looks)
    parser.add_argument("--per-look", type=int, default=Plan.per_look)
    parser.add_argument("--seed", type=int, default=Plan.seed)
    args = parser.parse_args(argv)
    plan = Plan(args.experiments, args.looks, args.per_look, seed=args.seed)
    print(markdown(plan, [simulate(plan, drop) for drop in (0.0, 0.02, 0.05)]))


if __name__ == "__main__":
    main()
