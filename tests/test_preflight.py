"""``run`` refuses, before its first stage, a recipe it could not finish: checkpoints that
cannot be found here, and vocabulary pruning on a tokenizer that is not WordPiece."""

from __future__ import annotations

import json
from pathlib import Path

from tokenizers import Tokenizer
from tokenizers.models import BPE

from models.__main__ import main
from models.preflight import recipe_problems
from models.recipe import Recipe
from tests.tiny import save_tiny_bert

TEXTS = ["check my balance", "what is my balance", "block my card", "my card was stolen"]


def bpe_checkpoint(directory: Path) -> Path:
    save_tiny_bert(directory, TEXTS)
    Tokenizer(BPE(unk_token="<unk>")).save(str(directory / "tokenizer.json"))
    return directory


def recipe(teacher: str, students: list[dict]) -> Recipe:
    return Recipe.model_validate({"name": "r", "teacher": {"base": teacher}, "students": students})


def test_every_unfindable_checkpoint_is_named_at_once(tmp_path):
    bert = str(save_tiny_bert(tmp_path / "bert", TEXTS))
    students = [
        {"name": "a", "base": str(tmp_path / "missing-student")},
        {"name": "b", "base": bert, "vocabulary": {"general": [0]}},
        {"name": "c", "start_from": "b", "vocabulary": {"general": [0]}},
    ]
    problems = recipe_problems(recipe(str(tmp_path / "missing-teacher"), students))
    assert len(problems) == 2
    assert problems[0].startswith("teacher.base ") and "missing-teacher" in problems[0]
    assert problems[1].startswith("student a: base ") and "missing-student" in problems[1]
    assert recipe_problems(recipe(bert, students[1:])) == []


def test_vocabulary_pruning_needs_a_wordpiece_tokenizer_through_the_lineage(tmp_path):
    bpe = str(bpe_checkpoint(tmp_path / "roberta"))
    students = [
        {"name": "a", "base": bpe},
        {"name": "b", "start_from": "a", "vocabulary": {"general": [0]}},
    ]
    (problem,) = recipe_problems(recipe(bpe, students))
    assert problem.startswith("student b: vocabulary pruning works on WordPiece tokenizers")
    assert "has a BPE one; remove the student's vocabulary section" in problem


def test_a_folder_without_weights_is_named(tmp_path):
    folder = tmp_path / "config-only"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "bert"}))
    (problem,) = recipe_problems(recipe(str(folder), []))
    assert problem == (
        f"teacher.base {folder}: {folder} holds no weights file "
        "(looked for model.safetensors, pytorch_model.bin)"
    )


def test_stages_made_before_are_not_checked_again(tmp_path):
    # A resumed run needs no teacher checkpoint once the teacher's logits are made.
    students = [{"name": "a", "base": str(tmp_path / "gone")}]
    made = {"teacher", "student a"}
    assert recipe_problems(recipe(str(tmp_path / "gone-too"), students), made) == []


def test_run_refuses_such_a_recipe_before_any_stage(tmp_path, capsys):
    data = tmp_path / "intents.csv"
    labelled = zip(TEXTS, "aabb", strict=True)
    rows = [f"{text} {i},{label}" for text, label in labelled for i in range(4)]
    data.write_text("text,label\n" + "\n".join(rows) + "\n")
    path = tmp_path / "recipe.yaml"
    path.write_text(
        json.dumps(
            {
                "name": "r",
                "dataset": {"path": str(data)},
                "teacher": {"base": str(tmp_path / "no-teacher")},
                "students": [{"name": "a", "base": str(tmp_path / "no-student")}],
            }
        )
    )
    runs = tmp_path / "runs"
    assert main(["run", str(path), "--runs", str(runs)]) == 2
    error = capsys.readouterr().err.splitlines()[-1]
    assert error.startswith("brum-build run: error: ") and "no-teacher" in error
    assert "no-student" in error
    assert not (runs / "r" / "teacher").exists()
