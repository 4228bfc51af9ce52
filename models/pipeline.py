"""Run a recipe's students: distil, optionally prune and recover, prune the vocabulary, package.

Each stage writes under ``runs/<recipe>/<student>/`` and is skipped once its output exists, so a
killed run resumes where it stopped. Every step and its parameters go into the variant's lineage.
"""

from __future__ import annotations

import json
import random
import shutil
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import torch
from transformers import AutoTokenizer

from app.core.card import LineageStep
from models.build import PackageConfig, finetune_step, package_variant, stage
from models.checkpoints import ResolvedCheckpoint, resolve
from models.data import TextClassificationData, with_splits_trained
from models.finetune import (
    FinetuneConfig,
    collate,
    encode,
    finetune,
    length_bucketed_batches,
    predict_logits,
)
from models.pooling import load_classifier
from models.prune import prune_model
from models.recipe import PruneSpec, Recipe, RecipeError, StudentSpec, VocabularySpec
from models.sparsity import zero_smallest
from models.stamps import made_from, texts_digest, weights_digest
from models.student import starting_weights
from models.teacher import split_logits, teacher_dir, transfer_set, unlabelled_set
from models.vocab import prune_vocabulary

DONE = "stage.json"


def student_dir(recipe: Recipe, runs: Path, name: str) -> Path:
    return runs / recipe.name / name


def origin(recipe: Recipe, spec: StudentSpec) -> StudentSpec:
    """The student whose pretrained base ``spec`` ultimately comes from."""
    while spec.start_from is not None:
        spec = recipe.student(spec.start_from)
    return spec


# Export and measurement settings of a student built from the command line (frozen: shareable).
DEFAULT_MEASURE = PackageConfig()


def student_package(
    recipe: Recipe, spec: StudentSpec, measure: PackageConfig = DEFAULT_MEASURE
) -> PackageConfig:
    """How ``spec`` becomes a served variant: its quantization and the recipe's out-of-scope
    tuning, with ``measure``'s export and measurement settings."""
    return replace(
        measure,
        quantization=spec.quantization,
        per_channel=spec.per_channel,
        fp32_attention=spec.fp32_attention,
        oos_objective=recipe.oos.objective,
        oos_share=recipe.oos.share,
    )


def build_student(
    recipe: Recipe,
    spec: StudentSpec,
    data: TextClassificationData,
    runs: Path,
    repository: Path,
    measure: PackageConfig = DEFAULT_MEASURE,
) -> Path:
    """Train, compress and package one student; ``measure`` sets the export and the
    measurements (opset, latency samples), the recipe everything else."""
    if spec.refit and data.oos_id is not None:
        raise RecipeError(
            f"student {spec.name}: refit trains on the validation split, where the "
            "out-of-scope threshold is tuned; drop refit or the dataset's oos_label"
        )
    workdir = student_dir(recipe, runs, spec.name)
    workdir.mkdir(parents=True, exist_ok=True)
    base = resolve(origin(recipe, spec).base or "")
    teacher_ref = {"teacher": recipe.teacher.base, "teacher_run": str(teacher_dir(recipe, runs))}
    if spec.refit:
        teacher_ref["refit"] = True
    teacher_logits = torch.cat(
        [split_logits(recipe, data, runs, split) for split in spec.trained_on]
    )
    train_data = with_splits_trained(data, spec.trained_on)
    lineage: list[LineageStep] = []

    if spec.start_from is not None:
        parent = recipe.student(spec.start_from)
        init = student_dir(recipe, runs, parent.name) / "distill"
        lineage = json.loads((init / "lineage.json").read_text())
        lineage = [LineageStep(**step) for step in lineage]
    else:
        init = starting_weights(base.path, spec.layers, workdir, spec.pooling or "cls")
        if spec.layers is not None:
            stage(f"{spec.name}: kept layers {spec.layers} of {base.reference}")
            lineage.append(LineageStep(step="keep_layers", params={"layers": spec.layers}))

    transfer = None
    if spec.transfer:
        sets = [
            [transfer_set(recipe, data, runs, augment_spec, split) for split in spec.trained_on]
            for augment_spec in spec.transfer
        ]
        pairs = [pair for per_split in sets for pair in per_split]
        teacher_ref["transfer_sets"] = [
            {
                **augment_spec.model_dump(exclude_none=True),
                "texts": sum(len(t) for t, _ in per_split),
            }
            for augment_spec, per_split in zip(spec.transfer, sets, strict=True)
        ]
        if data.unlabelled:
            pairs.append(unlabelled_set(recipe, data, runs))
            teacher_ref["transfer_sets"].append(
                {
                    "unlabelled": str(recipe.dataset.unlabelled),
                    "texts": len(data.unlabelled),
                    "texts_sha256": texts_digest(data.unlabelled),
                }
            )
        texts = [text for set_texts, _ in pairs for text in set_texts]
        transfer = (texts, torch.cat([logits for _, logits in pairs]))

    if spec.start_from is None or spec.distill:
        stage(
            f"{spec.name}: distil from the teacher"
            + (" on train + validation" if spec.refit else "")
        )
        config = FinetuneConfig(**spec.distill)
        trained = finetune(
            init,
            train_data,
            workdir / "distill",
            config,
            teacher_logits=teacher_logits,
            transfer=transfer,
        )
        lineage.append(finetune_step("distill", config, train_data, trained, **teacher_ref))
        (trained / "lineage.json").write_text(
            json.dumps([step.model_dump() for step in lineage], indent=2)
        )
    else:
        trained = init

    if spec.prune is not None:
        structured = spec.prune.heads > 0 or spec.prune.neurons > 0
        kind = "structured" if structured else "magnitude"
        stage(f"{spec.name}: {kind} pruning")
        pruned = workdir / "pruned"
        summary = prune_stage(trained, pruned, train_data, spec.prune)
        lineage.append(LineageStep(step=f"prune_{kind}", params=summary))
        stage(f"{spec.name}: distil to recover")
        recover = FinetuneConfig(**spec.prune.recover, keep_zeros=spec.prune.magnitude > 0)
        trained = finetune(
            pruned,
            train_data,
            workdir / "recover",
            recover,
            teacher_logits=teacher_logits,
            transfer=transfer,
        )
        lineage.append(
            finetune_step("distill_recover", recover, train_data, trained, **teacher_ref)
        )

    if spec.vocabulary is not None:
        vocab_dir = vocabulary_dir(recipe, runs, spec)
        parent = recipe.student(spec.start_from) if spec.start_from else None
        vocabulary, chosen_on = spec.vocabulary, "validation"  # or: "<student>, on validation"
        if spec.refit and parent is not None:
            # Validation is training data now, so it cannot choose: the parent chose on it unseen.
            parent_vocab = vocabulary_dir(recipe, runs, parent) / DONE
            general = json.loads(parent_vocab.read_text())["general"]
            vocabulary = vocabulary.model_copy(update={"general": [general]})
            chosen_on = f"{parent.name}, on validation"
        stage(f"{spec.name}: prune the vocabulary, its size chosen by {chosen_on}")
        trained, summary = vocabulary_stage(trained, vocab_dir, train_data, vocabulary, chosen_on)
        lineage.append(LineageStep(step="prune_vocabulary", params=summary))

    package = student_package(recipe, spec, measure)
    return package_variant(spec.name, trained, base, lineage, data, workdir, repository, package)


def vocabulary_dir(recipe: Recipe, runs: Path, spec: StudentSpec) -> Path:
    """Where ``spec``'s vocabulary is chosen: its parent's folder where the weights and the
    choice are the same, rather than a second identical result."""
    parent = recipe.student(spec.start_from) if spec.start_from else None
    same_weights = spec.prune is None and not spec.distill
    if parent is not None and same_weights and parent.vocabulary == spec.vocabulary:
        return vocabulary_dir(recipe, runs, parent)
    return student_dir(recipe, runs, spec.name) / "vocab"


def prune_stage(trained: Path, output: Path, data: TextClassificationData, spec: PruneSpec) -> dict:
    inputs = {"weights": weights_digest(trained), "texts": len(data.splits["train"])}
    made_from(output, inputs | spec.model_dump(exclude={"recover"}))
    if (output / DONE).is_file():
        return json.loads((output / DONE).read_text())
    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(trained)
    model = load_classifier(trained)
    summary: dict = {}
    if spec.heads > 0 or spec.neurons > 0:
        train = data.splits["train"]
        max_length = json.loads((trained / "finetune.json").read_text())["config"]["max_length"]
        ids = encode(tokenizer, train.texts, max_length)
        labels = torch.tensor(train.label_ids)
        rng = random.Random(0)
        batches = length_bucketed_batches([len(x) for x in ids], 32, rng)[: spec.batches]
        inputs = [
            {**collate(tokenizer, [ids[i] for i in batch]), "labels": labels[batch]}
            for batch in batches
        ]
        summary = prune_model(model, inputs, spec.heads, spec.neurons)
    if spec.magnitude > 0:
        summary |= zero_smallest(model, spec.magnitude)
    output.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(output)
    tokenizer.save_pretrained(output)
    shutil.copyfile(trained / "finetune.json", output / "source_finetune.json")
    (output / DONE).write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary), flush=True)
    return summary


def vocabulary_stage(
    trained: Path,
    output: Path,
    data: TextClassificationData,
    vocabulary: VocabularySpec,
    chosen_on: str = "validation",
) -> tuple[Path, dict]:
    """Try each ``general`` size; keep the smallest within ``tolerance`` of the full vocabulary."""
    made_from(
        output,
        {
            "weights": weights_digest(trained),
            "general": sorted(vocabulary.general),
            "tolerance": vocabulary.tolerance,
            "texts": len(data.splits["train"]),
        },
    )
    if (output / DONE).is_file():
        return output / "chosen", json.loads((output / DONE).read_text())
    validation = data.splits["validation"]
    truth = torch.tensor(validation.label_ids)
    max_length = json.loads((trained / "finetune.json").read_text())["config"]["max_length"]

    def validation_accuracy(model_dir: Path) -> float:
        model = load_classifier(model_dir)
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        logits = predict_logits(model, tokenizer, validation.texts, max_length)
        return float((logits.argmax(-1) == truth).float().mean())

    full = validation_accuracy(trained)
    candidates = []
    for general in sorted(vocabulary.general):
        candidate = output / f"general-{general}"
        info = prune_vocabulary(trained, candidate, data.splits["train"].texts, general=general)
        info["validation_accuracy"] = round(validation_accuracy(candidate), 4)
        print(json.dumps(info), flush=True)
        candidates.append((candidate, info))
    fitting = [
        (path, info)
        for path, info in candidates
        if info["validation_accuracy"] >= full - vocabulary.tolerance
    ]
    chosen, info = min(fitting or candidates[-1:], key=lambda c: c[1]["vocab_size_after"])
    shutil.copytree(chosen, output / "chosen", dirs_exist_ok=True)
    shutil.copyfile(trained / "finetune.json", output / "chosen" / "finetune.json")
    summary = {
        **info,
        "chosen_on": chosen_on,
        "validation_accuracy_full_vocabulary": round(full, 4),
        "tolerance": vocabulary.tolerance,
        "candidates": [c[1] for c in candidates],
    }
    (output / DONE).write_text(json.dumps(summary, indent=2))
    return output / "chosen", summary


def teacher_variant(
    recipe: Recipe,
    data: TextClassificationData,
    runs: Path,
    repository: Path,
    package: PackageConfig,
) -> Path:
    """The fine-tuned teacher as a served variant: in fp32 the baseline every student is held to;
    in int8 (``package.quantization``) what quantization alone does to it."""
    base: ResolvedCheckpoint = resolve(recipe.teacher.base)
    trained = teacher_dir(recipe, runs) / "finetune"
    config = FinetuneConfig(**recipe.teacher.finetune)
    train_data = with_splits_trained(data, recipe.teacher.trained_on)
    refit = {"refit": True} if recipe.teacher.refit else {}
    lineage = [finetune_step("finetune", config, train_data, trained, **refit)]
    suffix = "fp32" if package.quantization == "none" else "int8"
    name = f"{recipe.name}-teacher-{suffix}"
    return package_variant(
        name, trained, base, lineage, data, teacher_dir(recipe, runs), repository, package
    )


def build_students(
    recipe: Recipe,
    data: TextClassificationData,
    runs: Path,
    repository: Path,
    only: list[str] | None = None,
) -> Iterator[Path]:
    """Every student of the recipe (or those named in ``only``), in recipe order."""
    for spec in recipe.students:
        if only and spec.name not in only:
            continue
        yield build_student(recipe, spec, data, runs, repository)


def build_teacher_variant(
    recipe: Recipe,
    data: TextClassificationData,
    runs: Path,
    repository: Path,
    quantization: str = "none",
) -> Path:
    package = PackageConfig(
        quantization=quantization, oos_objective=recipe.oos.objective, oos_share=recipe.oos.share
    )
    return teacher_variant(recipe, data, runs, repository, package)
