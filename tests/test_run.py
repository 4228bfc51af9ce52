"""From data to a served repository in two commands: ``init`` on a CSV with its own column names
and no validation split, then ``run`` on a tiny BERT teacher and student, served by a real
server."""

from __future__ import annotations

import csv
import json

import httpx
import pytest
import yaml

from app.core.card import read_card
from app.core.experiment import EXPERIMENT_FILE
from models.__main__ import main
from models.init import transfer_for
from models.recipe import load_recipe
from models.run import made_before
from models.workload import run_work, split_sizes
from tests.server import run_server
from tests.test_pipeline import INTENTS, subset
from tests.tiny import save_tiny_bert, save_tiny_unigram_bert

pytestmark = pytest.mark.pipeline


def write_split(path, data, split):
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["utterance", "intent"])
        s = data.splits[split]
        writer.writerows((t, data.labels[y]) for t, y in zip(s.texts, s.label_ids, strict=True))
    return path


@pytest.fixture(scope="module")
def made(tmp_path_factory, clinc):
    root = tmp_path_factory.mktemp("run")
    data = subset(clinc, INTENTS)
    train = write_split(root / "train.csv", data, "train")
    test = write_split(root / "test.csv", data, "test")
    recipe = root / "recipe.yaml"
    argv = ["init", "--train", str(train), "--test", str(test), "--name", "tiny"]
    assert (
        main([*argv, "--text-column", "utterance", "--label-column", "intent", "-o", str(recipe)])
        == 0
    )
    written = yaml.safe_load(recipe.read_text())
    written["dataset"]["split"] = {"max_train": 300}  # as `init` writes for data too large
    # A tiny model stands in for the pretrained checkpoints; a few steps stand in for epochs.
    base = str(save_tiny_bert(root / "base", clinc.splits["train"].texts, hidden=64, layers=2))
    quick = {"max_steps": 15, "batch_size": 16, "max_length": 32, "learning_rate": 3e-3}
    written["teacher"].update(base=base, finetune={**written["teacher"]["finetune"], **quick})
    first = written["students"][0]
    first.update(base=base, layers=[0], distill={**first["distill"], **quick}, ship=True)
    del first["vocabulary"]
    # Kept in the recipe only to be measured: --shipped-only must not build it.
    measured_only = {**first, "name": "tiny-measured-only", "ship": False}
    written["students"] = [first, measured_only]
    written["experiment"].update(
        default=first["name"], arms=[{"variant": first["name"], "weight": 1}]
    )
    recipe.write_text(yaml.safe_dump(written, sort_keys=False))
    repository = root / "served"
    argv = ["run", str(recipe), "--runs", str(root / "runs"), "--repository", str(repository)]
    assert main([*argv, "--shipped-only"]) == 0
    return root, repository, written


def test_init_sizes_the_recipe_to_the_data(made):
    root, _, written = made
    dataset = written["dataset"]
    assert (dataset["text_column"], dataset["label_column"]) == ("utterance", "intent")
    assert "oos" not in written  # the data names no out-of-scope label
    assert written["teacher"]["finetune"]["epochs"] == 10  # a few hundred texts: more passes
    assert load_recipe(root / "recipe.yaml").dataset.kind == "files"


def test_init_refits_the_later_l6_stages_unless_validation_tunes_a_threshold(tmp_path, clinc):
    data = subset(clinc, INTENTS)
    train = write_split(tmp_path / "train.csv", data, "train")
    argv = [
        "init",
        str(train),
        "--name",
        "tiny",
        "--text-column",
        "utterance",
        "--label-column",
        "intent",
    ]
    refit = {}
    for oos in (False, True):
        recipe = tmp_path / f"oos-{oos}.yaml"
        assert main([*argv, *(["--oos-label", "oos"] if oos else []), "-o", str(recipe)]) == 0
        refit[oos] = {s.name: s.refit for s in load_recipe(recipe).students}
    assert refit[False] == {
        "tiny-minilm-l6-int8": False,
        "tiny-minilm-l6-augmented-int8": True,
        "tiny-minilm-l3-int8": False,
        "tiny-minilm-l6-augmented-pruned-int8": True,
    }
    assert not any(refit[True].values())


def test_the_transfer_set_grows_as_the_training_split_shrinks_and_is_sampled_when_large():
    sizes = (300, 4_500, 9_000, 15_000, 100_000)
    assert [transfer_for(n)["copies"] for n in sizes] == [4, 4, 2, 1, 1]
    # One copy of each kind of 100,000 texts would be 300,000: a sample of 54,000 instead.
    assert [transfer_for(n).get("limit") for n in sizes] == [None] * 4 + [54_000]


def test_run_ends_with_a_repository_an_experiment_and_the_benchmark(made):
    root, repository, written = made
    (name,) = [s["name"] for s in written["students"] if s["ship"]]
    assert not (root / "runs" / "tiny" / "tiny-measured-only").exists()
    card = read_card(repository / name)
    assert card.labels == sorted(INTENTS) and card.oos_threshold is None
    assert card.metrics.split_sizes["validation"] > 0
    assert card.metrics.split_sizes["train"] == 300
    assert "sampled 300 of " in card.metrics.split_origins["train"]
    assert card.metrics.split_origins["validation"].startswith("carved from train")
    (quantized,) = [step for step in card.lineage if step.step.startswith("quantize")]
    assert (quantized.step, quantized.params["per_channel"]) == ("quantize_dynamic", True)
    assert (repository / EXPERIMENT_FILE).is_file()
    benchmark = root / "runs" / "tiny" / "benchmark"
    rows = json.loads((benchmark / "benchmark.json").read_text())["rows"]
    assert {row["variant"] for row in rows} == {name, "tiny-teacher-fp32"}
    assert (benchmark / "benchmark.png").stat().st_size > 0
    assert "book" not in (benchmark / "benchmark.md").read_text()
    with run_server(root, {"BRUM_MODEL_REPOSITORY": str(repository)}) as server:
        answer = httpx.post(server.url + "/v1/predict", json={"text": "what is the weather"})
    assert answer.status_code == 200
    assert answer.json()["predictions"][0]["label"] in INTENTS


def test_a_resumed_run_counts_the_stages_it_finds_made(made, clinc):
    root = made[0]
    recipe = load_recipe(root / "recipe.yaml")
    students = recipe.shipped_lineage()
    work = run_work(recipe, split_sizes(subset(clinc, INTENTS)), students)
    runs = root / "runs" / "tiny"
    found = made_before(recipe, runs / "teacher", runs / "built", runs / "benchmark", work)
    assert found == set(work) - {"ship"}
    elsewhere = root / "elsewhere"
    assert not made_before(recipe, elsewhere, elsewhere, elsewhere, work)


def test_a_student_with_a_sentencepiece_vocabulary_runs_to_a_served_repository(tmp_path, clinc):
    data = subset(clinc, INTENTS)
    train = write_split(tmp_path / "train.csv", data, "train")
    texts = clinc.splits["train"].texts
    teacher = save_tiny_bert(tmp_path / "teacher", texts, hidden=64, layers=2)
    student = save_tiny_unigram_bert(tmp_path / "Multilingual-MiniLM", texts)
    recipe = tmp_path / "recipe.yaml"
    argv = ["init", str(train), "--name", "uni", "--teacher", str(teacher)]
    argv += ["--student", str(student), "--text-column", "utterance", "--label-column", "intent"]
    assert main([*argv, "-o", str(recipe)]) == 0
    written = yaml.safe_load(recipe.read_text())
    assert not any("vocabulary" in s for s in written["students"])  # Unigram: kept whole
    quick = {"max_steps": 10, "batch_size": 16, "max_length": 32}
    written["teacher"]["finetune"].update(quick)
    for spec in written["students"]:
        if "distill" in spec:
            spec["distill"].update(quick)
        if "prune" in spec:
            spec["prune"]["recover"].update(quick)
    recipe.write_text(yaml.safe_dump(written, sort_keys=False))
    repository = tmp_path / "served"
    argv = ["run", str(recipe), "--runs", str(tmp_path / "runs"), "--repository", str(repository)]
    assert main([*argv, "--shipped-only"]) == 0
    shipped = {
        "uni-multilingual-minilm-augmented-int8",
        "uni-multilingual-minilm-augmented-pruned-int8",
    }
    assert {p.name for p in repository.iterdir() if p.is_dir()} == shipped
    with run_server(tmp_path, {"BRUM_MODEL_REPOSITORY": str(repository)}) as server:
        answer = httpx.post(server.url + "/v1/predict", json={"text": "what is the weather"})
    assert answer.status_code == 200
    assert answer.json()["predictions"][0]["label"] in INTENTS
