"""The pipeline on a tiny randomly initialised BERT: fine-tune, export, fuse, quantize, card."""

from __future__ import annotations

import json
import shutil
from itertools import pairwise
from pathlib import Path

import numpy as np
import onnx
import pytest
import yaml

from app.core.card import read_card, verify_files
from app.core.experiment import load_experiment
from app.core.prediction import softmax
from app.runtime.classifier import load_classifier
from app.runtime.session import SessionConfig
from models.__main__ import main as models_main
from models.benchmark import label_heights, label_losses, paired_differences, pareto_front
from models.benchmark import main as benchmark_main
from models.build import BuildConfig, build_variant
from models.data import Split, TextClassificationData
from models.evaluate import mcnemar_p, predict_labels, served_accuracy
from models.export import int8_weight_fraction
from models.model_card import MODEL_CARD_FILE, render
from models.recipe import Recipe
from models.ship import ship
from tests.tiny import save_tiny_bert

pytestmark = pytest.mark.pipeline
INTENTS = ("balance", "book_flight", "weather", "translate", "timer", "oos")
GIB = 2**30


def subset(data: TextClassificationData, intents: tuple[str, ...]) -> TextClassificationData:
    """A few intents of CLINC150, so a tiny model learns something in a few dozen steps."""
    keep = {data.label_to_id[name]: i for i, name in enumerate(sorted(intents))}
    splits = {}
    for name, split in data.splits.items():
        rows = [
            (t, keep[y]) for t, y in zip(split.texts, split.label_ids, strict=True) if y in keep
        ]
        splits[name] = Split([t for t, _ in rows], [y for _, y in rows])
    oos = data.oos_label if data.oos_label in intents else None
    return TextClassificationData("clinc150-subset", tuple(sorted(intents)), splits, oos)


@pytest.fixture(scope="module")
def built(tmp_path_factory, clinc) -> tuple[Path, Path, TextClassificationData]:
    import torch

    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("pipeline")
    data = subset(clinc, INTENTS)
    base = save_tiny_bert(root / "base", clinc.splits["train"].texts, hidden=64)
    config = BuildConfig(
        name="tiny-int8",
        base=str(base),
        finetune={"epochs": 3, "learning_rate": 3e-3, "batch_size": 16, "max_length": 32},
        latency_samples=50,
    )
    folder = build_variant(config, data, root / "work", root / "repository")
    return folder, root / "work", data


def test_variant_folder_holds_model_tokenizer_and_a_valid_card(built):
    folder, _, data = built
    card = read_card(folder)
    verify_files(folder, card)
    assert card.labels == list(data.labels)
    assert [s.step for s in card.lineage] == [
        "finetune",
        "export_onnx",
        "optimize_graph",
        "quantize_dynamic",
        "tune_oos_threshold",
    ]
    assert card.lineage[0].params["epochs"] == 3
    assert card.oos_threshold.label == "oos" and card.oos_threshold.split == "validation"
    assert card.lineage[-1].params["threshold"] == pytest.approx(card.oos_threshold.threshold)
    assert card.base.source == "local" and len(card.base.sha256) == 64
    assert card.metrics.examples == len(data.splits["test"])
    assert 0 <= card.metrics.accuracy <= 1
    assert 0 <= card.metrics.accuracy_batched <= 1 and card.metrics.batched_size == 64
    assert 0 <= card.metrics.answers_changed_by_batching <= 1
    assert card.metrics.size_bytes == (folder / "model.onnx").stat().st_size
    assert card.metrics.latency_batch1.p50_ms <= card.metrics.latency_batch1.p99_ms
    padding = json.loads((folder / "tokenizer.json").read_text())["padding"]
    assert padding["strategy"] == "BatchLongest"  # not the upstream file's fixed 128
    assert (padding["pad_token"], padding["pad_id"]) == ("[PAD]", 0)
    model_card = (folder / MODEL_CARD_FILE).read_text()
    assert model_card == render(card, folder)
    assert "base_model" not in model_card  # a local folder's path is no Hub id


def test_fine_tuning_learned_the_task(built):
    folder, _, data = built
    card = read_card(folder)
    assert card.metrics.accuracy > 2 / len(data.labels)


def test_int8_model_holds_int8_weights_and_is_smaller(built):
    folder, work, _ = built
    assert int8_weight_fraction(folder / "model.onnx") > 0.5
    assert int8_weight_fraction(work / "onnx" / "model.onnx") == 0
    int8_types = {t.data_type for t in onnx.load(str(folder / "model.onnx")).graph.initializer}
    assert onnx.TensorProto.INT8 in int8_types
    assert (folder / "model.onnx").stat().st_size < (work / "onnx" / "model.onnx").stat().st_size


def test_int8_argmax_agrees_with_fp32_onnx(built):
    folder, work, data = built
    config = SessionConfig(intra_op_threads=1)
    fp32 = load_classifier(work / "onnx" / "model.onnx", folder / "tokenizer.json", 32, config)
    int8 = load_classifier(folder / "model.onnx", folder / "tokenizer.json", 32, config)
    texts = data.splits["validation"].texts
    agreement = np.mean(predict_labels(fp32, texts, 1) == predict_labels(int8, texts, 1))
    assert agreement >= 0.9
    quantize = next(s for s in read_card(folder).lineage if s.step == "quantize_dynamic")
    assert quantize.params["fp32_argmax_agreement"] == round(agreement, 4)


def test_rebuild_reuses_finished_stages(built, clinc):
    folder, work, data = built
    exported = (work / "onnx" / "model.onnx").stat().st_mtime_ns
    config = BuildConfig(
        name="tiny-again",
        base=str(work.parent / "base"),
        finetune={"epochs": 3, "learning_rate": 3e-3, "batch_size": 16, "max_length": 32},
        latency_samples=10,
    )
    again = build_variant(config, data, work, folder.parent)
    assert (work / "onnx" / "model.onnx").stat().st_mtime_ns == exported
    assert (again / "model.onnx").read_bytes() == (folder / "model.onnx").read_bytes()


def recipe_for_splits(data: TextClassificationData, folder: Path) -> str:
    """A recipe whose dataset is ``data``'s splits, written as JSON Lines files."""
    paths = {}
    for name, split in data.splits.items():
        paths[name] = folder / f"{name}.jsonl"
        paths[name].write_text(
            "".join(
                json.dumps({"text": text, "label": data.labels[label]}) + "\n"
                for text, label in zip(split.texts, split.label_ids, strict=True)
            )
        )
    dataset = {name: str(path) for name, path in paths.items()} | {"oos_label": data.oos_label}
    recipe = {"name": "tiny", "dataset": dataset, "teacher": {"base": "unused"}}
    (folder / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    return str(folder / "recipe.yaml")


def test_benchmark_measures_every_column_and_updates_the_card(built, tmp_path):
    folder, _, data = built
    output = tmp_path / "benchmark"
    # A parent far larger than a variant's worker, as `run` is with the teacher in memory: the
    # worker reports its own peak, not the parent's (ru_maxrss survives fork and exec).
    ballast = bytearray(GIB)
    ballast[::4096] = b"\x01" * len(range(0, GIB, 4096))
    with pytest.raises(SystemExit, match=r"tiny-\S+ answers 6 labels .* has 151 .* --recipe"):
        benchmark_main([str(folder.parent), "--output", str(output)])
    recipe = recipe_for_splits(data, tmp_path)
    command = [str(folder.parent), "--samples", "20", "--output", str(output), "--recipe", recipe]
    assert benchmark_main(command) == 0
    del ballast
    report = json.loads((output / "benchmark.json").read_text())
    [row] = [r for r in report["rows"] if r["variant"] == folder.name] or [None]
    cores = row["all_threads"]
    for key in [
        "accuracy",
        "in_scope_accuracy",
        "oos_recall",
        "accuracy_batched",
        "answers_changed_by_batching",
        "size_bytes",
        "parameters",
        "latency_1t",
        f"latency_{cores}t",
        "throughput_b32_1t",
        f"throughput_b32_{cores}t",
        "peak_rss_bytes",
    ]:
        assert row[key] is not None, key
    assert set(row["latency_1t"]) == {"p50_ms", "p95_ms", "p99_ms"}
    assert len(row["label_f1"]) == len(report["labels"]) == len(read_card(folder).labels)
    assert len(row["right"]) == len(data.splits["test"])
    assert np.mean(row["right"]) == pytest.approx(row["accuracy"])
    majority = report["majority"]
    common = int(np.bincount(data.splits["train"].label_ids).argmax())
    assert majority["label"] == data.labels[common]
    share = np.mean(np.asarray(data.splits["test"].label_ids) == common)
    assert majority["accuracy"] == pytest.approx(share, abs=1e-4)
    table = (output / "benchmark.md").read_text()
    assert folder.name in table and "book: BERT-base teacher" not in table
    assert f"most frequent label ('{majority['label']}')" in table
    assert (output / "benchmark.png").read_bytes()[:4] == b"\x89PNG"
    assert 50 * 2**20 < row["peak_rss_bytes"] < GIB
    card = read_card(folder)
    assert card.metrics.peak_rss_bytes == row["peak_rss_bytes"]
    assert card.metrics.latency_batch1_all_threads.p50_ms == row[f"latency_{cores}t"]["p50_ms"]
    assert card.metrics.accuracy_batched == round(row["accuracy_batched"], 4)
    assert (folder / MODEL_CARD_FILE).read_text() == render(card, folder)


def test_accuracy_alone_and_batched_are_the_served_answers(built):
    folder, _, data = built
    card = read_card(folder)
    classifier = load_classifier(
        folder / "model.onnx", folder / "tokenizer.json", 32, SessionConfig(intra_op_threads=1)
    )
    test = data.splits["test"]
    threshold = card.oos_threshold.threshold
    served = served_accuracy(classifier, test, data.oos_id, threshold, batch_size=8, progress=False)

    def answers(groups: list[list[int]]) -> np.ndarray:
        result = np.empty(len(test), dtype=int)
        for group in groups:
            p = softmax(classifier.classify([test.texts[i] for i in group]).logits)
            result[group] = np.where(p.max(axis=1) < threshold, data.oos_id, p.argmax(axis=1))
        return result

    by_length = sorted(range(len(test)), key=lambda i: len(test.texts[i]))
    alone = answers([[i] for i in range(len(test))])
    batched = answers([by_length[k : k + 8] for k in range(0, len(test), 8)])
    truth = np.asarray(test.label_ids)
    assert served.alone.accuracy == pytest.approx(np.mean(alone == truth))
    assert served.batched.accuracy == pytest.approx(np.mean(batched == truth))
    assert served.changed_by_batching == pytest.approx(np.mean(alone != batched))


def test_static_quantization_is_an_option(built):
    folder, work, data = built
    config = BuildConfig(
        name="tiny-static-int8",
        base=str(work.parent / "base"),
        finetune={"epochs": 3, "learning_rate": 3e-3, "batch_size": 16, "max_length": 32},
        latency_samples=10,
        quantization="static",
        calibration_texts=64,
    )
    static = build_variant(config, data, work, folder.parent / "static")
    card = read_card(static)
    assert [s.step for s in card.lineage][1:3] == ["export_onnx", "quantize_static"]
    step = next(s for s in card.lineage if s.step == "quantize_static")
    assert step.params["format"] == "QDQ" and step.params["calibration_texts"] == 64
    assert step.params["fp32_argmax_agreement"] >= 0.8
    assert step.params["op_types"] == ["MatMul", "Gemm", "Gather"]
    # The embedding tables are int8 as well, as in the dynamic variant.
    assert int8_weight_fraction(static / "model.onnx") > 0.9


def test_ship_makes_the_shipped_students_the_repository(built, tmp_path):
    folder, _, _ = built
    repository = tmp_path / "repository"
    (repository / "stale-variant").mkdir(parents=True)
    recipe = Recipe.model_validate(
        {
            "name": "tiny",
            "teacher": {"base": "unused"},
            "students": [{"name": folder.name, "base": "unused", "ship": True}],
            "experiment": {"name": "tiny-ab", "arms": [{"variant": folder.name, "weight": 1}]},
        }
    )
    assert ship(recipe, folder.parent, repository) == [folder.name]
    assert sorted(p.name for p in repository.iterdir()) == sorted([folder.name, "experiment.yaml"])
    verify_files(repository / folder.name, read_card(repository / folder.name))
    experiment = load_experiment(repository / "experiment.yaml")
    assert experiment.name == "tiny-ab" and experiment.assign("k") == folder.name


def test_ship_command_finds_the_students_where_run_builds_them(built, tmp_path):
    folder, _, _ = built
    runs, repository = tmp_path / "elsewhere", tmp_path / "repository"
    shutil.copytree(folder, runs / "tiny" / "built" / folder.name)
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(
        yaml.safe_dump(
            {
                "name": "tiny",
                "teacher": {"base": "unused"},
                "students": [{"name": folder.name, "base": "unused", "ship": True}],
            }
        )
    )
    argv = ["ship", str(recipe), "--runs", str(runs), "--repository", str(repository)]
    assert models_main(argv) == 0
    verify_files(repository / folder.name, read_card(repository / folder.name))


def test_pareto_front_keeps_only_undominated_variants():
    def row(name, ms, accuracy):
        return {"variant": name, "latency_1t": {"p50_ms": ms}, "accuracy": accuracy}

    rows = [row("big", 30, 0.92), row("fast", 1, 0.90), row("mid", 2, 0.91), row("bad", 3, 0.89)]
    assert pareto_front(rows) == {"big", "fast", "mid"}


def test_the_labels_compression_cost_are_named_per_variant():
    def row(name, ms, f1):
        return {"variant": name, "latency_1t": {"p50_ms": ms}, "label_f1": f1}

    teacher = row("teacher", 30, [0.9, 0.8, 0.7, None])
    student = row("student", 1, [0.95, 0.5, 0.66, 0.2])
    lines = label_losses([teacher, student], teacher, ["a", "b", "c", "d"])
    # 'b' lost 30 points; 'c' 4, under the 5 that count; 'a' gained; 'd' has no reference F1.
    assert lines[-1] == "| student | 1 of 4 | 'b' 0.80 -> 0.50; 'c' 0.70 -> 0.66 |"
    assert all("teacher |" not in line for line in lines[4:])


def test_mcnemar_p_is_the_exact_two_sided_binomial_tail():
    assert mcnemar_p(0, 0) == 1.0
    assert mcnemar_p(5, 5) == 1.0
    assert mcnemar_p(10, 0) == pytest.approx(2 / 2**10)
    # 2 against 8: 2 * (C(10,0) + C(10,1) + C(10,2)) / 2^10
    assert mcnemar_p(2, 8) == pytest.approx(2 * 56 / 1024) == mcnemar_p(8, 2)


def test_each_variant_is_compared_text_by_text_with_the_most_accurate():
    def row(name, ms, right):
        return {
            "variant": name,
            "latency_1t": {"p50_ms": ms},
            "right": right,
            "accuracy": sum(right) / len(right),
        }

    best = row("best", 30, [1] * 40 + [0] * 10)
    close = row("close", 2, [1] * 38 + [0] * 2 + [0] * 10)  # 2 texts fewer: chance
    far = row("far", 1, [0] * 20 + [1] * 20 + [0] * 10)  # 20 fewer: not chance
    lines = paired_differences([best, close, far])
    assert lines[-2] == "| far | 0 | 20 | 1.91e-06 |"
    assert lines[-1] == "| close | 0 | 2 | 0.5 (could be chance) |"
    assert all("| best |" not in line for line in lines)


def test_plot_labels_of_close_variants_do_not_overlap():
    # Three variants at one spot (ties included), one just above them, one far to the right.
    points = [(100.0, 50.0), (100.0, 50.0), (105.0, 52.0), (100.0, 50.0), (900.0, 50.0)]
    heights = label_heights(points, gap=18.0, reach=400.0)
    near = sorted(h for (x, _), h in zip(points, heights, strict=True) if x < 500)
    assert all(b - a >= 18.0 * 0.999 for a, b in pairwise(near))
    assert all(h >= y for (_, y), h in zip(points, heights, strict=True))
    assert heights[-1] == 50.0  # out of reach: stays at its point
