"""``python -m models compare OLD NEW``: does a rebuilt repository reproduce another's cards?

Two repositories' cards, variant by variant: what each build was asked to do (labels, maximum
length, base checkpoint, the lineage's steps and their parameters) must match exactly where both
record it (a parameter only one records is listed apart: an option added since), and what it
measured (accuracy with and without the out-of-scope threshold, vocabulary, size, threshold)
is set side by side with the difference.
Training on CPUs is not bit-reproducible across machines and library versions, so measured
figures are held to ``--tolerance`` (accuracy points) rather than to equality; latency is left
out, as it measures the machine more than the model.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.core.card import CARD_FILE, VariantCard, read_card

# Lineage parameters that record what a step found or measured, not what it was asked to do.
OUTCOMES = frozenset(
    {
        "history",
        "teacher_run",
        "candidates",
        "general",  # the vocabulary size chosen among the candidates on validation
        "vocab_size_after",
        "validation_accuracy",
        "validation_accuracy_full_vocabulary",
        "fp32_argmax_agreement",
        "threshold",
        "value",
        "accuracy",
        "in_scope_accuracy",
        "oos_recall",
        "heads_removed",
    }
)


@dataclass(frozen=True)
class Comparison:
    variant: str
    recipe_differences: list[str]  # empty: both builds were asked the same
    # Parameters only one build records: an option added (or renamed) since the other was built.
    recorded_once: list[str]
    figures: list[tuple[str, Any, Any]]  # (figure, old, new)
    accuracy_delta: float | None  # points, new - old

    def reproduced(self, tolerance: float) -> bool:
        return not self.recipe_differences and (
            self.accuracy_delta is None or abs(self.accuracy_delta) <= tolerance
        )


def cards(repository: Path) -> dict[str, VariantCard]:
    return {
        folder.name: read_card(folder)
        for folder in sorted(repository.iterdir())
        if (folder / CARD_FILE).is_file()
    }


def asked(card: VariantCard) -> dict[str, Any]:
    """What the build was asked to do, flattened to comparable keys."""
    facts: dict[str, Any] = {
        "labels": card.labels,
        "max_length": card.max_length,
        "base": card.base.reference,
        "base sha256": card.base.sha256,
        "steps": [step.step for step in card.lineage],
    }
    for index, step in enumerate(card.lineage):
        for key, value in step.params.items():
            if key not in OUTCOMES:
                facts[f"{index}.{step.step}.{key}"] = value
    return facts


def measured(card: VariantCard) -> dict[str, Any]:
    vocabulary = next(
        (s.params.get("vocab_size_after") for s in card.lineage if s.step == "prune_vocabulary"),
        None,
    )
    metrics = card.metrics
    return {
        "accuracy": metrics.accuracy if metrics else None,
        "macro F1": metrics.macro_f1 if metrics else None,
        # The top label alone: tells the weights apart from the out-of-scope threshold.
        "accuracy without threshold": metrics.accuracy_without_threshold if metrics else None,
        "in-scope accuracy": metrics.in_scope_accuracy if metrics else None,
        "oos recall": metrics.oos_recall if metrics else None,
        "size MB": round(metrics.size_bytes / 1e6, 2) if metrics else None,
        "parameters": metrics.parameters if metrics else None,
        "vocabulary": vocabulary,
        "oos threshold": card.oos_threshold.threshold if card.oos_threshold else None,
    }


def compare_cards(old: VariantCard, new: VariantCard) -> Comparison:
    before, after = asked(old), asked(new)
    differences = [
        f"{key}: {before[key]!r} -> {after[key]!r}"
        for key in sorted(before.keys() & after.keys())
        if before[key] != after[key]
    ]
    recorded_once = [
        f"old only: {key} = {before[key]!r}" for key in sorted(before.keys() - after.keys())
    ]
    recorded_once += [
        f"new only: {key} = {after[key]!r}" for key in sorted(after.keys() - before.keys())
    ]
    old_figures, new_figures = measured(old), measured(new)
    figures = [(name, old_figures[name], new_figures[name]) for name in old_figures]
    delta = None
    if old.metrics and new.metrics:
        delta = round((new.metrics.accuracy - old.metrics.accuracy) * 100, 2)
    return Comparison(old.name, differences, recorded_once, figures, delta)


def compare_repositories(old: Path, new: Path) -> tuple[list[Comparison], list[str], list[str]]:
    """Comparisons of the variants both hold, then those only the old and only the new hold."""
    before, after = cards(old), cards(new)
    both = sorted(before.keys() & after.keys())
    comparisons = [compare_cards(before[name], after[name]) for name in both]
    return comparisons, sorted(before.keys() - after.keys()), sorted(after.keys() - before.keys())


def render(
    comparisons: list[Comparison], only_old: list[str], only_new: list[str], tolerance: float
) -> str:
    lines = []
    for c in comparisons:
        verdict = "reproduced" if c.reproduced(tolerance) else "**differs**"
        lines += [f"## {c.variant}: {verdict}", "", "| figure | old | new |", "|---|---|---|"]
        lines += [f"| {name} | {old} | {new} |" for name, old, new in c.figures]
        if c.accuracy_delta is not None:
            delta = f"{c.accuracy_delta:+.2f} (tolerance {tolerance})"
            lines.append(f"| accuracy, points | | {delta} |")
        lines.append("")
        if c.recipe_differences:
            lines += ["Asked differently:", ""]
            lines += [f"- {difference}" for difference in c.recipe_differences]
            lines.append("")
        if c.recorded_once:
            lines += ["Recorded by one build only (options added or renamed since):", ""]
            lines += [f"- {parameter}" for parameter in c.recorded_once]
            lines.append("")
    for label, names in (("Only in the old repository", only_old), ("Only in the new", only_new)):
        if names:
            lines += [f"{label}: {', '.join(names)}", ""]
    return "\n".join(lines)
