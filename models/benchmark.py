"""PerformanceBenchmark: every variant, teacher included, measured side by side in one run.

For each variant folder: accuracy on the test split as served (with the card's out-of-scope
threshold), in-scope accuracy and out-of-scope recall, model size, parameters, batch-1 latency
p50/p95/p99 over many different test utterances, batch-32 throughput, at 1 thread and at all
cores, and the peak RSS of a process that loads and runs only that variant. Each variant runs in
its own subprocess so that memory is its own and no session shares a thread pool.

    python -m models benchmark runs/clinc150/built models/repository --output runs/benchmark
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from app.core.card import MODEL_FILE, TOKENIZER_FILE, read_card, write_card
from app.runtime.classifier import load_classifier
from app.runtime.cores import available_cores
from app.runtime.session import SessionConfig
from models.data import TextClassificationData
from models.evaluate import (
    latency_batch1,
    mcnemar_p,
    round_metric,
    score,
    served_accuracy,
    throughput,
)
from models.model_card import write_model_card
from models.recipe import load_recipe
from models.sources import recipe_dataset

BOOK = [
    {
        "variant": "book: BERT-base teacher",
        "accuracy": 0.867,
        "size_bytes": 418_000_000,
        "latency_p50_ms": 54.0,
    },
    {
        "variant": "book: DistilBERT distilled + ORT int8",
        "accuracy": 0.877,
        "size_bytes": 64_000_000,
        "latency_p50_ms": 9.2,
    },
]


# A label this many F1 points under the reference's counts as one compression cost.
LOST_POINTS = 5.0
# Labels named per variant in the table of what compression cost.
WORST_LABELS = 3
# A paired difference with a larger p-value is reported as one the test split cannot show.
SIGNIFICANT = 0.05


def measure_variant(folder: Path, samples: int, recipe: Path | None = None) -> dict:
    """Runs inside the worker subprocess: one variant, all figures."""
    card = read_card(folder)
    data = recipe_dataset(recipe)
    test = data.splits["test"]
    rng = np.random.default_rng(0)
    shuffled = [test.texts[i] for i in rng.permutation(len(test))]
    sample = shuffled[:samples]
    result: dict = {
        "variant": card.name,
        "size_bytes": (folder / MODEL_FILE).stat().st_size,
        "parameters": card.metrics.parameters if card.metrics else None,
        "lineage": [step.step for step in card.lineage],
        "dataset": describe(data),
        "labels": list(data.labels),
        "majority": majority_baseline(data),
    }
    cores = available_cores()
    for threads in sorted({1, cores}):
        classifier = load_classifier(
            folder / MODEL_FILE,
            folder / TOKENIZER_FILE,
            card.max_length,
            SessionConfig(intra_op_threads=threads),
        )
        if threads == 1:
            threshold = card.oos_threshold.threshold if card.oos_threshold else None
            served = served_accuracy(classifier, test, data.oos_id, threshold, progress=False)
            result.update(
                accuracy=served.alone.accuracy,
                macro_f1=served.alone.macro_f1,
                in_scope_accuracy=served.alone.in_scope_accuracy,
                oos_recall=served.alone.oos_recall,
                accuracy_batched=served.batched.accuracy,
                batched_size=served.batch_size,
                answers_changed_by_batching=served.changed_by_batching,
                label_f1=list(served.alone.label_f1),
                right=[int(right) for right in served.right_alone],
            )
        latency = latency_batch1(classifier, sample)
        result[f"latency_{threads}t"] = latency.model_dump()
        result[f"throughput_b32_{threads}t"] = throughput(classifier, shuffled[:2048])
    result["all_threads"] = cores
    result["peak_rss_bytes"] = peak_rss_bytes()
    return result


def check_labels(folders: list[Path], data: TextClassificationData, recipe: Path | None) -> None:
    """Refuse variants whose answers are not the test split's labels, in its order: their
    accuracy would compare label ids that name different things."""
    for folder in folders:
        labels = tuple(read_card(folder).labels)
        if labels != data.labels:
            where = f"the recipe {recipe}" if recipe else "CLINC150, the default without --recipe"
            raise SystemExit(
                f"{folder.name} answers {len(labels)} labels ({_sample(labels)}); the test split "
                f"of {where} has {len(data.labels)} ({_sample(data.labels)}). Benchmark it on "
                "its own data: --recipe RECIPE, the recipe that built it"
            )


def _sample(labels: tuple[str, ...]) -> str:
    return ", ".join(labels[:4]) + (", ..." if len(labels) > 4 else "")


def majority_baseline(data: TextClassificationData) -> dict:
    """What answering the training split's most frequent label to every test text scores: the
    accuracy any variant must beat to have learnt anything, high when one label holds most
    texts."""
    train = np.asarray(data.splits["train"].label_ids)
    truth = np.asarray(data.splits["test"].label_ids)
    label = int(np.bincount(train, minlength=len(data.labels)).argmax())
    report = score(np.full_like(truth, label), truth, data.oos_id)
    return {
        "label": data.labels[label],
        "accuracy": round(report.accuracy, 4),
        "macro_f1": round(report.macro_f1, 4),
    }


def peak_rss_bytes() -> int:
    """This process's own peak. Not ``ru_maxrss``: Linux carries it over fork and exec, so every
    worker started by ``run`` (which has the teacher in memory) would report ``run``'s peak."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:  # no procfs (macOS): there ru_maxrss is in bytes and not inherited
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    (line,) = [line for line in status.splitlines() if line.startswith("VmHWM:")]
    return int(line.split()[1]) * 1024


def run_all(folders: list[Path], samples: int, recipe: Path | None = None) -> list[dict]:
    rows = []
    for folder in folders:
        print(f"==> {folder.name}", file=sys.stderr, flush=True)
        worker = ["--worker", str(folder), "--samples", str(samples)]
        output = subprocess.run(
            [
                sys.executable,
                "-m",
                "models.benchmark",
                *worker,
                *(["--recipe", str(recipe)] if recipe else []),
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        rows.append(json.loads(output.strip().splitlines()[-1]))
    return rows


def update_card(folder: Path, row: dict, when: datetime) -> None:
    card = read_card(folder)
    if card.metrics is None:
        return
    cores = row["all_threads"]
    metrics = type(card.metrics).model_validate(
        {
            **card.metrics.model_dump(),
            "accuracy": round(row["accuracy"], 4),
            "macro_f1": round(row["macro_f1"], 4),
            "in_scope_accuracy": round_metric(row["in_scope_accuracy"]),
            "oos_recall": round_metric(row["oos_recall"]),
            "accuracy_batched": round(row["accuracy_batched"], 4),
            "batched_size": row["batched_size"],
            "answers_changed_by_batching": round(row["answers_changed_by_batching"], 4),
            "threads": 1,
            "latency_batch1": row["latency_1t"],
            "throughput_batch32_per_second": round(row["throughput_b32_1t"], 1),
            "all_threads": cores,
            "latency_batch1_all_threads": row[f"latency_{cores}t"],
            "throughput_batch32_all_threads_per_second": round(row[f"throughput_b32_{cores}t"], 1),
            "peak_rss_bytes": row["peak_rss_bytes"],
            "benchmarked_at": when,
        }
    )
    card = card.model_copy(update={"metrics": metrics})
    write_card(folder, card)
    write_model_card(folder, card)


def pareto_front(rows: list[dict]) -> set[str]:
    """Variants no other variant beats on both accuracy and batch-1 latency (1 thread)."""

    def beats(a: dict, b: dict) -> bool:
        faster = a["latency_1t"]["p50_ms"] <= b["latency_1t"]["p50_ms"]
        better = a["accuracy"] >= b["accuracy"]
        strictly = a["latency_1t"]["p50_ms"] < b["latency_1t"]["p50_ms"] or (
            a["accuracy"] > b["accuracy"]
        )
        return faster and better and strictly

    return {b["variant"] for b in rows if not any(beats(a, b) for a in rows if a is not b)}


def _share(value: float | None) -> str:
    return "–" if value is None else f"{value:.4f}"


def describe(data: TextClassificationData) -> str:
    oos = f", {data.oos_label} a class" if data.oos_label else ", no out-of-scope class"
    return f"{data.name} ({len(data.splits['test']):,} utterances, {len(data.labels)} labels{oos})"


def render_markdown(
    rows: list[dict],
    reference: str,
    command: str,
    when: datetime,
    book: bool = True,
    dataset: str = "CLINC150 plus (5,500 utterances, 151 labels, oos a class)",
    majority: dict | None = None,
    labels: list[str] | None = None,
) -> str:
    teacher = next(r for r in rows if r["variant"] == reference)
    cores = teacher["all_threads"]
    baseline = (
        f"Answering the training split's most frequent label ('{majority['label']}') to every "
        f"text would score accuracy {majority['accuracy']:.4f}, macro F1 "
        f"{majority['macro_f1']:.4f}. "
        if majority
        else ""
    )
    lines = [
        f"PerformanceBenchmark, {when.isoformat(timespec='seconds')}, `{command}`",
        "",
        f"Test split of {dataset}. "
        "Accuracy, in-scope and oos recall: each utterance served alone (batch 1); "
        f"batched: in length-sorted batches of {teacher['batched_size']}, and the share of "
        "answers that batching changed. "
        f"Latency: batch 1, tokenize + run, over the same {teacher.get('samples', 'many')} "
        "different utterances. "
        f"{baseline}Ratios against `{reference}` in the same run.",
        "",
        "| variant | accuracy | macro F1 | in-scope | oos recall | batched | changed | size MB "
        "| params M | p50 / p95 / p99 ms (1 thread) "
        f"| p50 ms ({cores} threads) | batch-32 /s (1 / {cores} threads) | peak RSS MiB "
        "| smaller | faster (p50, 1 thread) | Pareto |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    front = pareto_front(rows)
    for r in sorted(rows, key=lambda r: r["latency_1t"]["p50_ms"]):
        lat = r["latency_1t"]
        lines.append(
            f"| {r['variant']} | {r['accuracy']:.4f} | {_share(r.get('macro_f1'))} "
            f"| {_share(r['in_scope_accuracy'])} "
            f"| {_share(r['oos_recall'])} | {r['accuracy_batched']:.4f} "
            f"| {r['answers_changed_by_batching']:.2%} | {r['size_bytes'] / 1e6:.1f} "
            f"| {(r['parameters'] or 0) / 1e6:.1f} "
            f"| {lat['p50_ms']:.2f} / {lat['p95_ms']:.2f} / {lat['p99_ms']:.2f} "
            f"| {r[f'latency_{cores}t']['p50_ms']:.2f} "
            f"| {r['throughput_b32_1t']:.0f} / {r[f'throughput_b32_{cores}t']:.0f} "
            f"| {r['peak_rss_bytes'] / 2**20:.0f} "
            f"| {teacher['size_bytes'] / r['size_bytes']:.1f}x "
            f"| {teacher['latency_1t']['p50_ms'] / lat['p50_ms']:.1f}x "
            f"| {'yes' if r['variant'] in front else ''} |"
        )
    for b in BOOK if book else []:
        lines.append(
            f"| {b['variant']} (book, not measured here) | {b['accuracy']:.3f} | | | | "
            f"| | {b['size_bytes'] / 1e6:.0f} | | {b['latency_p50_ms']} (mean) | | | | | | |"
        )
    if labels and teacher.get("label_f1"):
        lines += ["", *label_losses(rows, teacher, labels)]
    if len(rows) > 1:
        lines += ["", *paired_differences(rows)]
    return "\n".join(lines)


def paired_differences(rows: list[dict]) -> list[str]:
    """Each variant against the most accurate, text by text: a few texts either way on one test
    split can be chance, which two accuracies side by side do not say."""
    best = max(rows, key=lambda r: r["accuracy"])
    name = best["variant"]
    lines = [
        f"Against the most accurate, `{name}`, on the same texts: the texts only one of the two "
        "answers right, and the exact McNemar p-value (the chance of a split at least this "
        f"uneven were the two equally accurate; over {SIGNIFICANT:g}: this test split cannot "
        "tell them apart).",
        "",
        f"| variant | right where `{name}` is wrong | wrong where `{name}` is right | p |",
        "|---|---|---|---|",
    ]
    theirs = best["right"]
    for row in sorted(rows, key=lambda r: r["latency_1t"]["p50_ms"]):
        if row is best:
            continue
        ours = row["right"]
        wins = sum(1 for a, b in zip(ours, theirs, strict=True) if a and not b)
        losses = sum(1 for a, b in zip(ours, theirs, strict=True) if b and not a)
        p = mcnemar_p(wins, losses)
        verdict = "" if p <= SIGNIFICANT else " (could be chance)"
        lines.append(f"| {row['variant']} | {wins} | {losses} | {p:.3g}{verdict} |")
    return lines


def label_losses(rows: list[dict], reference: dict, labels: list[str]) -> list[str]:
    """Per variant, the labels it answers worse than the reference: accuracy and macro F1 can
    hold while compression costs a few labels most of what they had."""
    name = reference["variant"]
    lines = [
        f"Labels that compression cost: F1 on the test split against `{name}`; the labels "
        f"{LOST_POINTS:g} points or more under it, and the {WORST_LABELS} that lost most.",
        "",
        f"| variant | labels {LOST_POINTS:g}+ points under | most lost (`{name}` -> variant) |",
        "|---|---|---|",
    ]
    theirs = reference["label_f1"]
    for row in sorted(rows, key=lambda r: r["latency_1t"]["p50_ms"]):
        if row is reference or not row.get("label_f1"):
            continue
        ours = row["label_f1"]
        drops = sorted(
            (
                (before - (ours[label] or 0.0), label)
                for label, before in enumerate(theirs)
                if before is not None and label < len(ours)
            ),
            reverse=True,
        )
        under = sum(1 for drop, _ in drops if drop * 100 >= LOST_POINTS)
        worst = [
            f"'{labels[label]}' {theirs[label]:.2f} -> {ours[label] or 0.0:.2f}"
            for drop, label in drops[:WORST_LABELS]
            if drop > 0
        ]
        lines.append(
            f"| {row['variant']} | {under} of {len(labels)} | {'; '.join(worst) or 'none'} |"
        )
    return lines


def label_heights(points: list[tuple[float, float]], gap: float, reach: float) -> list[float]:
    """Heights (display units) for one label per point so that no two labels within ``reach``
    of each other horizontally sit closer than ``gap`` vertically; each label starts at its
    point's height and only moves up."""
    placed: list[tuple[float, float]] = []
    heights = [0.0] * len(points)
    for i in sorted(range(len(points)), key=lambda i: points[i][1]):
        x, y = points[i]
        # The margin keeps rounding in ``h + gap - h`` from matching the same label again.
        while clash := [h for px, h in placed if abs(px - x) < reach and abs(h - y) < gap * 0.999]:
            y = max(clash) + gap
        placed.append((x, y))
        heights[i] = y
    return heights


def plot(rows: list[dict], path: Path, majority: dict | None = None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dpi = 120
    fig, ax = plt.subplots(figsize=(9, 6))
    xs = [r["latency_1t"]["p50_ms"] for r in rows]
    ys = [r["accuracy"] * 100 for r in rows]
    colors = plt.get_cmap("tab20").colors
    for i, (r, x, y) in enumerate(zip(rows, xs, ys, strict=True)):
        ax.scatter(x, y, s=r["size_bytes"] / 1e6 * 6, alpha=0.6, color=colors[i % len(colors)])
    ax.set_xscale("log")
    ax.set_xlim(min(xs) / 1.3, max(xs) * 4)  # room for the slowest variant's label
    floor = majority["accuracy"] * 100 if majority else None
    # Drawn where one label holds most texts; a balanced dataset's floor would flatten the plot.
    if floor is not None and floor >= min(ys) - (max(ys) - min(ys)):
        ax.axhline(floor, color="0.4", linestyle="--", linewidth=1)
        ax.annotate(
            f"always '{majority['label']}' (the most frequent label): {floor:.2f}%",
            (min(xs) / 1.25, floor),
            textcoords="offset points",
            xytext=(0, -11),
            fontsize=8,
            color="0.3",
        )
    ax.set_xlabel("batch-1 latency p50, 1 thread (ms, log scale)")
    ax.set_ylabel("test accuracy, each utterance served alone (%)")
    name = rows[0]["dataset"].split(" (")[0]  # the test split the workers measured on
    ax.set_title(f"{name}: accuracy against latency (bubble area = model size)")
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    # Close variants would print their names over each other: stack the labels, with a leader
    # line back to the bubble when a label had to move.
    points = [tuple(p) for p in ax.transData.transform(list(zip(xs, ys, strict=True)))]
    heights = label_heights(points, gap=11 * dpi / 72, reach=260 * dpi / 72)
    for r, x, y, (_, py), h in zip(rows, xs, ys, points, heights, strict=True):
        rise = (h - py) * 72 / dpi
        ax.annotate(
            r["variant"],
            (x, y),
            textcoords="offset points",
            xytext=(8, 4 + rise),
            fontsize=8,
            arrowprops={"arrowstyle": "-", "color": "0.6", "lw": 0.6} if rise > 1 else None,
        )
    fig.savefig(path, dpi=dpi)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("repositories", type=Path, nargs="*")
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--reference", help="variant the ratios are against (default: the largest)")
    parser.add_argument("--output", type=Path, default=Path("runs/benchmark"))
    parser.add_argument("--no-card-update", action="store_true")
    parser.add_argument(
        "--recipe", type=Path, help="measure on this recipe's test split (default: CLINC150)"
    )
    args = parser.parse_args(argv)
    if args.worker is not None:
        print(json.dumps(measure_variant(args.worker, args.samples, args.recipe)))
        return 0
    folders = sorted(
        {p.parent.resolve() for repo in args.repositories for p in repo.glob("*/variant.json")}
    )
    when = datetime.now(UTC).replace(microsecond=0)
    if not folders:
        raise SystemExit(f"no variant folders (*/variant.json) in {args.repositories}")
    check_labels(folders, recipe_dataset(args.recipe), args.recipe)
    rows = run_all(folders, args.samples, args.recipe)
    # The book's CLINC150 figures belong beside CLINC150 results only.
    book = args.recipe is None or load_recipe(args.recipe).dataset.kind == "clinc150"
    for row in rows:
        row["samples"] = args.samples
    # The same for every worker: they measured the same test split.
    labels = rows[0]["labels"]
    majority = rows[0]["majority"]
    for row in rows:
        del row["labels"], row["majority"]
    reference = args.reference or max(rows, key=lambda r: r["size_bytes"])["variant"]
    command = "python -m models benchmark " + " ".join(argv if argv is not None else sys.argv[1:])
    # Every worker measured on the same test split: its description is theirs.
    table = render_markdown(
        rows, reference, command, when, book, rows[0]["dataset"], majority, labels
    )
    print(table)
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "benchmark.md").write_text(table + "\n")
    (args.output / "benchmark.json").write_text(
        json.dumps(
            {
                "date": when.isoformat(),
                "command": command,
                "reference": reference,
                "labels": labels,
                "majority": majority,
                "rows": rows,
                "book": BOOK if book else [],
            },
            indent=2,
        )
    )
    plot(rows, args.output / "benchmark.png", majority)
    if not args.no_card_update:
        for folder, row in zip(folders, rows, strict=True):
            update_card(folder, row, when)
    print(f"wrote {args.output}/benchmark.md, .json, .png", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
