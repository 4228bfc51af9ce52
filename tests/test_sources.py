"""Dataset sources: files of every kind, saved and integer-labelled datasets, carved splits, and
a clear error for every kind of bad data, naming the file, the row or the column."""

from __future__ import annotations

import bz2
import gzip
import json
import logging
import lzma
import re
import socket
from pathlib import Path

import datasets
import pytest
from tokenizers import Tokenizer, trainers
from tokenizers.models import BPE

from models.__main__ import main
from models.data import DatasetError
from models.init import epochs_for
from models.recipe import DatasetSpec, RecipeError, load_recipe
from models.sources import load_dataset
from models.sources.files import first_row_is_data
from models.stamps import texts_digest
from tests.tiny import save_tiny_bert

BANKING77 = Path(__file__).resolve().parents[2] / "shared" / "data" / "banking77"

INTENTS = {
    "greet": ["hello there", "hi", "good morning", "hey you", "greetings", "howdy"],
    "bye": ["goodbye", "see you", "bye now", "farewell", "later", "ciao for now"],
    "thanks": ["thank you", "thanks a lot", "cheers", "much obliged", "ta", "thanks mate"],
}


def rows(intents=INTENTS) -> list[tuple[str, str]]:
    return [(text, label) for label, texts in intents.items() for text in texts]


def write_csv(path: Path, pairs, header=("utterance", "intent"), delimiter=",") -> Path:
    lines = [delimiter.join(header)] + [f"{t}{delimiter}{label}" for t, label in pairs]
    path.write_text("\n".join(lines) + "\n")
    return path


def write_jsonl(path: Path, pairs, label=lambda label: label) -> Path:
    lines = (json.dumps({"utterance": t, "intent": label(i)}) + "\n" for t, i in pairs)
    path.write_text("".join(lines))
    return path


def spec(**fields) -> DatasetSpec:
    return DatasetSpec(text_column="utterance", label_column="intent", **fields)


def test_csv_with_its_own_column_names_and_no_validation_split(tmp_path):
    train = write_csv(tmp_path / "train.csv", rows())
    test = write_csv(tmp_path / "test.csv", [("hello", "greet"), ("bye bye", "bye")])
    data = load_dataset(spec(train=train, test=test))
    assert data.labels == ("bye", "greet", "thanks") and data.oos_id is None
    assert data.name == tmp_path.name  # train.csv: named after its folder
    sizes = {name: len(split) for name, split in data.splits.items()}
    assert sizes == {"train": 15, "validation": 3, "test": 2}
    # Stratified: every label in both train and the carved validation split.
    for name in ("train", "validation"):
        assert set(data.splits[name].label_ids) == {0, 1, 2}
    assert data.splits_made["validation"].startswith("carved from train: 0.1")
    assert data.splits_made["test"] == "given"
    # Seeded: the same carve every time; another seed, another carve.
    assert load_dataset(spec(train=train, test=test)).splits == data.splits
    other = load_dataset(spec(train=train, test=test, split={"seed": 1}))
    assert other.splits["validation"].texts != data.splits["validation"].texts


@pytest.mark.parametrize("kind", ["tsv", "semicolons", "jsonl", "parquet"])
def test_every_file_format_reads_the_same(tmp_path, kind):
    pairs = rows()
    if kind == "tsv":
        path = write_csv(tmp_path / "intents.tsv", pairs, delimiter="\t")
    elif kind == "semicolons":  # sniffed
        path = write_csv(tmp_path / "intents.csv", pairs, delimiter=";")
    elif kind == "jsonl":
        path = tmp_path / "intents.jsonl"
        path.write_text("".join(json.dumps({"utterance": t, "intent": i}) + "\n" for t, i in pairs))
    else:
        path = tmp_path / "intents.parquet"
        table = {"utterance": [t for t, _ in pairs], "intent": [i for _, i in pairs]}
        datasets.Dataset.from_dict(table).to_parquet(str(path))
    data = load_dataset(spec(path=path))
    # One file: test, then validation, carved from it, stratified.
    sizes = {name: len(split) for name, split in data.splits.items()}
    assert sizes == {"train": 12, "validation": 3, "test": 3}  # one of each label each
    texts = [t for split in data.splits.values() for t in split.texts]
    assert sorted(texts) == sorted(t for t, _ in pairs)
    assert data.name == "intents" and data.splits_made["test"].startswith("carved from train: 0.2")
    assert data.splits_made["train"] == (
        f"the rest of {path}, once the missing splits were carved from it"
    )


@pytest.mark.parametrize(
    ("name", "opener", "delimiter", "header"),
    [
        ("intents.csv.gz", gzip.open, ",", True),
        ("intents.tsv.bz2", bz2.open, "\t", False),  # no header row, told from the rows
        ("intents.jsonl.xz", lzma.open, None, None),
    ],
)
def test_compressed_files_read_as_their_inner_format(tmp_path, name, opener, delimiter, header):
    pairs = rows()
    if delimiter is None:
        lines = [json.dumps({"utterance": t, "intent": i}) for t, i in pairs]
    else:
        lines = [delimiter.join(("utterance", "intent"))] if header else []
        lines += [f"{t}{delimiter}{i}" for t, i in pairs]
    with opener(tmp_path / name, "wt") as handle:
        handle.write("\n".join(lines) + "\n")
    columns = ("utterance", "intent") if header is not False else ("column_1", "column_2")
    data = load_dataset(
        DatasetSpec(path=tmp_path / name, text_column=columns[0], label_column=columns[1])
    )
    texts = [t for split in data.splits.values() for t in split.texts]
    assert sorted(texts) == sorted(t for t, _ in pairs)  # the first row kept when it is data
    assert data.labels == ("bye", "greet", "thanks") and data.name == "intents"


def test_a_folder_of_files_named_after_their_splits(tmp_path):
    """As the Hugging Face Hub lays them out: split names in the file names, in subfolders too."""
    folder = tmp_path / "support"
    (folder / "data").mkdir(parents=True)
    pairs = rows()
    write_csv(folder / "data" / "train-00000-of-00001.csv", pairs)
    write_csv(folder / "data" / "dev-00000-of-00001.csv", pairs[:6:2])
    write_csv(folder / "data" / "test-00000-of-00001.csv", pairs[1::6])
    (folder / "README.md").write_text("# support intents\n")
    data = load_dataset(spec(path=folder))
    assert data.name == "support"
    assert all(made == "given" for made in data.splits_made.values())
    assert data.splits["validation"].texts == [t for t, _ in pairs[:6:2]]
    assert data.splits["test"].texts == [t for t, _ in pairs[1::6]]
    # One file named for train only: the other splits are carved from it.
    lone = tmp_path / "lone"
    lone.mkdir()
    write_csv(lone / "train.csv", pairs)
    carved = load_dataset(spec(path=lone))
    assert carved.splits_made["test"].startswith("carved from train")


def test_saved_dataset_dict_with_class_label_integers(tmp_path):
    names = ["negative", "positive"]
    features = datasets.Features(
        {"sentence": datasets.Value("string"), "label": datasets.ClassLabel(names=names)}
    )
    split = {"sentence": ["great", "awful", "lovely", "bad", "fine", "poor"]}
    split["label"] = [1, 0, 1, 0, 1, 0]
    saved = datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_dict(split, features=features),
            "dev": datasets.Dataset.from_dict(split, features=features).select([0, 1]),
            "test": datasets.Dataset.from_dict(split, features=features).select([2, 3]),
        }
    )
    saved.save_to_disk(str(tmp_path / "sst"))
    data = load_dataset(DatasetSpec(path=tmp_path / "sst", text_column="sentence"))
    assert data.labels == ("negative", "positive")  # the ClassLabel's order, not sorted by luck
    assert data.splits["validation"].texts == ["great", "awful"]
    assert data.splits["validation"].label_ids == [1, 0]
    assert all(made == "given" for made in data.splits_made.values())


def test_integer_labels_take_their_names_from_the_recipe(tmp_path):
    names = ["zebra", "apple", "mango"]  # deliberately not sorted
    texts = [text for text, _ in rows()]
    pairs = [(text, str(index // 6)) for index, text in enumerate(texts)]
    path = write_csv(tmp_path / "ints.csv", pairs)
    data = load_dataset(spec(path=path, label_names=names))
    assert data.labels == tuple(names)  # id order, as named
    for split in data.splits.values():
        for text, label in zip(split.texts, split.label_ids, strict=True):
            assert label == texts.index(text) // 6
    with pytest.raises(DatasetError, match=r"ints\.csv: row \d+ has label 2, not an index"):
        load_dataset(spec(path=path, label_names=names[:2]))


def test_a_recipe_naming_a_label_twice_is_refused(tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        "name: ints\ndataset:\n  train: ints.csv\n  label_names: [zebra, apple, zebra, mango]\n"
        "teacher:\n  base: bert\nstudents: []\n"
    )
    with pytest.raises(RecipeError, match=r"label names repeat: \['zebra'\]"):
        load_recipe(recipe)


def test_integer_labels_without_names_keep_their_numeric_order(tmp_path, caplog):
    texts = [text for text, _ in rows()]
    # Labels 0, 2, 10: sorted as strings, "10" would come before "2".
    pairs = [(text, str([0, 2, 10][index // 6])) for index, text in enumerate(texts)]
    caplog.set_level(logging.WARNING, "brum.data")
    data = load_dataset(spec(path=write_csv(tmp_path / "ints.csv", pairs)))
    assert data.labels == ("0", "2", "10")
    assert "are integers with no names, so answers will name them '0', '1'" in caplog.text
    caplog.clear()
    load_dataset(spec(path=tmp_path / "ints.csv", label_names=list("abcdefghijk")))
    assert "no names" not in caplog.text


def test_the_out_of_scope_label_is_only_what_the_dataset_names(tmp_path):
    path = write_csv(tmp_path / "all.csv", rows())
    assert load_dataset(spec(path=path)).oos_id is None
    named = load_dataset(spec(path=path, oos_label="bye"))
    assert named.labels[named.oos_id] == "bye"
    with pytest.raises(DatasetError, match="out-of-scope label 'oos' is not among"):
        load_dataset(spec(path=path, oos_label="oos"))


@pytest.mark.parametrize(
    ("gaps", "setting", "warning", "made", "error"),
    [
        (
            [("   ", "greet"), ("", "bye")],
            "empty_texts",
            "dropped 2 empty or whitespace-only texts",
            "2 empty texts dropped",
            r"gaps\.csv: row 19 has an empty text in column 'utterance'",
        ),
        (
            # A whitespace-only label is missing, not a label with spaces around it.
            [("hello there", ""), ("thanks a lot", "  ")],
            "missing_labels",
            "dropped 2 rows with no label in column 'intent' (rows 19, 20)",
            "2 rows with no label dropped",
            r"gaps\.csv: row 19 has no label in column 'intent'",
        ),
    ],
    ids=["empty texts", "missing labels"],
)
def test_rows_with_a_gap_are_dropped_and_counted_or_refused(
    tmp_path, caplog, gaps, setting, warning, made, error
):
    path = write_csv(tmp_path / "gaps.csv", [*rows(), *gaps])
    with caplog.at_level(logging.WARNING, logger="brum.data"):
        data = load_dataset(spec(path=path))
    assert sum(len(s) for s in data.splits.values()) == 18
    assert warning in caplog.text and "had spaces around them" not in caplog.text
    assert made in data.splits_made["train"]
    with pytest.raises(DatasetError, match=error):
        load_dataset(spec(path=path, **{setting: "refuse"}))


def test_labels_too_rare_to_carve_are_all_named_or_dropped_everywhere(tmp_path, caplog):
    pairs = [*rows(), ("one", "rare"), ("two", "rare"), ("lone", "alone")]
    path = write_csv(tmp_path / "long-tail.csv", pairs)
    with pytest.raises(DatasetError, match=r"2 label\(s\) .* 'alone' \(1\), 'rare' \(2\); "):
        load_dataset(spec(path=path))
    with caplog.at_level(logging.WARNING, logger="brum.data"):
        data = load_dataset(spec(path=path, rare_labels="drop"))
    assert data.labels == ("bye", "greet", "thanks")
    assert "dropped 2 label(s) with fewer than 3 different texts" in caplog.text
    assert "2 label(s) too rare to carve dropped: alone, rare" in data.splits_made["train"]
    # Validation given: 2 texts carve test; the dropped labels leave the given split too.
    validation = write_csv(tmp_path / "dev.csv", [("hey", "greet"), ("lone again", "alone")])
    train = write_csv(tmp_path / "train.csv", pairs)
    data = load_dataset(spec(train=train, validation=validation, rare_labels="drop"))
    assert data.labels == ("bye", "greet", "rare", "thanks")
    assert data.splits["validation"].texts == ["hey"]
    recipe = tmp_path / "recipe.yaml"
    assert main(["init", str(path), "--drop-rare-labels", "-o", str(recipe)]) == 0
    assert load_recipe(recipe).dataset.rare_labels == "drop"


def test_spaces_around_a_label_do_not_make_another_label(tmp_path, caplog):
    padded = [f" {label}" if i % 2 else f"{label} " for i, (_, label) in enumerate(rows())]
    pairs = [(text, label) for (text, _), label in zip(rows(), padded, strict=True)]
    path = tmp_path / "padded.csv"
    path.write_text("utterance,intent\n" + "".join(f'{t},"{label}"\n' for t, label in pairs))
    with caplog.at_level(logging.WARNING, logger="brum.data"):
        data = load_dataset(spec(path=path))
    assert data.labels == ("bye", "greet", "thanks")
    assert "18 labels in column 'intent' had spaces around them, removed" in caplog.text


def test_copies_of_a_text_are_carved_together_so_none_is_in_train_and_test(tmp_path, caplog):
    copied = rows() + [(text, label) for text, label in rows()[::2] for _ in range(3)]
    path = write_csv(tmp_path / "copies.csv", copied)
    with caplog.at_level(logging.WARNING, logger="brum.data"):
        data = load_dataset(spec(path=path, split={"test": 0.3, "validation": 0.3}))
    sides = {split: set(data.splits[split].texts) for split in ("train", "validation", "test")}
    assert not sides["train"] & sides["test"] and not sides["train"] & sides["validation"]
    assert not sides["validation"] & sides["test"]
    assert sum(len(s) for s in data.splits.values()) == len(copied)
    assert "also appear in the training split" not in caplog.text
    assert all(set(data.splits[split].label_ids) == {0, 1, 2} for split in sides)
    assert "27 rows repeat another row's text, carved with it" in data.splits_made["train"]


def test_labels_are_carved_by_their_different_texts(tmp_path):
    pairs = [*rows(), ("same", "echo"), ("same", "echo"), ("same", "echo"), ("other", "echo")]
    with pytest.raises(DatasetError, match=r"too few different texts .* 'echo' \(2\); "):
        load_dataset(spec(path=write_csv(tmp_path / "echo.csv", pairs)))


def test_a_text_given_several_labels_is_warned_about(tmp_path, caplog):
    pairs = [*rows(), ("hello there", "bye"), ("cheers", "bye"), ("cheers", "greet")]
    train = write_csv(tmp_path / "train.csv", pairs)
    test_rows = [("yo", "greet"), ("yo", "bye"), ("ta ta", "bye"), ("hi", "bye")]
    test = write_csv(tmp_path / "test.csv", test_rows)
    with caplog.at_level(logging.WARNING, logger="brum.data"):
        data = load_dataset(spec(train=train, test=test))
    assert re.search(
        r"train\.csv: 2 text\(s\) appear with more than one label \(e\.g\. 'hello there' as "
        r"'bye' and 'greet'\)",
        caplog.text,
    )
    assert (
        "test.csv: 1 text(s) appear with more than one label (e.g. 'yo' as 'bye' and 'greet')"
        in (caplog.text)
    )
    relabelled = "test.csv: 1 text(s) have another label in the training split (e.g. 'hi' as "
    assert relabelled + "'bye' here and 'greet' there)" in caplog.text
    # Kept with the data for the recipe, each as it was logged; "hi" is not answered from memory.
    assert len(data.notes) == 3 and all(str(note) in caplog.text for note in data.notes)
    assert "also appear in the training split" not in caplog.text


def test_init_writes_what_it_warned_about_the_labels_into_the_recipe(tmp_path, caplog):
    data = write_csv(tmp_path / "intents.csv", [*rows(), ("hi", "bye"), ("Thanks", "THANKS")])
    recipe = tmp_path / "recipe.yaml"
    with caplog.at_level(logging.WARNING, logger="brum.data"):
        assert main(["init", str(data), "--drop-rare-labels", "-o", str(recipe)]) == 0
    notes = [line for line in recipe.read_text().splitlines() if line.startswith("# Note: ")]
    assert len(notes) == 2, notes
    assert "intents.csv: 1 text(s) appear with more than one label (e.g. 'hi' as" in notes[0]
    assert "'THANKS' / 'thanks'" in notes[1] and notes[1] in [
        f"# Note: {m}." for m in (record.getMessage() for record in caplog.records)
    ]


def test_a_label_written_two_ways_is_warned_about_and_kept_apart(tmp_path, caplog):
    spelt = {"Say-Hello": ["hullo", "hiya", "hey hey"], "say_hello": ["yo", "sup", "hi all"]}
    path = write_csv(tmp_path / "spelt.csv", rows({**INTENTS, **spelt}))
    with caplog.at_level(logging.WARNING, logger="brum.data"):
        data = load_dataset(spec(path=path))
    assert "Say-Hello" in data.labels and "say_hello" in data.labels
    assert "1 label(s) are written more than one way" in caplog.text
    assert "'Say-Hello' / 'say_hello'" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="brum.data"):
        load_dataset(spec(path=write_csv(tmp_path / "plain.csv", rows())))
    assert "more than one way" not in caplog.text and "more than one label" not in caplog.text


def empty_test_file(folder: Path) -> DatasetSpec:
    (folder / "te.jsonl").write_text("")
    return spec(train=write_csv(folder / "tr.csv", rows()), test=folder / "te.jsonl")


def two_train_files(folder: Path) -> DatasetSpec:
    write_csv(folder / "train-1.csv", rows())
    write_csv(folder / "train-2.csv", rows())
    return spec(path=folder)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: spec(path=d / "nowhere.csv"), r"nowhere\.csv: file not found"),
        (
            lambda d: DatasetSpec(path=write_csv(d / "a.csv", rows()), text_column="sentence"),
            r"a\.csv: no text column 'sentence'; the columns are \['utterance', 'intent'\]",
        ),
        (
            lambda d: DatasetSpec(
                path=write_csv(
                    d / "ids.csv",
                    [(t, f"#{i}") for i, (t, _) in enumerate(rows())],
                    header=("a", "b"),
                )
            ),
            r"ids\.csv: cannot tell which column holds the labels among \['a', 'b'\]; name them: "
            r"--text-column and --label-column",
        ),
        (
            lambda d: spec(
                train=write_csv(d / "tr.csv", rows()),
                test=write_csv(d / "te.csv", [("hi", "greet"), ("what", "weather")]),
            ),
            r"te\.csv: row 2 has label 'weather', which the training split never has",
        ),
        (
            lambda d: spec(path=write_csv(d / "one.csv", [(t, "greet") for t, _ in rows()])),
            r"one\.csv: the training split has 1 label\(s\) \(\['greet'\]\)",
        ),
        (
            lambda d: spec(path=write_csv(d / "small.csv", [*rows(), ("rare one", "rare")])),
            r"small\.csv: 1 label\(s\) with too few different texts to carve a stratified test and "
            r"validation split and keep one for training \(each needs 3\): 'rare' \(1\); ",
        ),
        (
            lambda d: spec(path=write_csv(d / "data.txt", rows())),
            r"data\.txt: cannot tell the format from the suffix '\.txt'",
        ),
        (
            lambda d: spec(path=write_csv(d / "ragged.csv", [*rows(), ("so, hello", "greet")])),
            r"ragged\.csv: cannot be read as csv: .*Expected 2 fields in line 20, saw 3",
        ),
        (
            lambda d: spec(path=d, source="saved"),
            r"not a folder written by save_to_disk",
        ),
        (
            lambda d: spec(path=d),
            r"neither a folder written by save_to_disk nor one with a data file named after its "
            r"split \(train\.csv",
        ),
        (
            lambda d: spec(path=write_csv(d / "bare.csv", [])),
            r"bare\.csv: no rows below its header",
        ),
        (empty_test_file, r"te\.jsonl: the file is empty"),
        (
            two_train_files,
            r"2 files for the train split \(train-1\.csv, train-2\.csv\); join them into one",
        ),
        (
            lambda d: spec(path=write_jsonl(d / "multi.jsonl", rows(), lambda label: [label])),
            r"multi\.jsonl: column 'intent' holds lists of labels \(multi-label data\)",
        ),
    ],
)
def test_bad_data_is_a_clear_error(tmp_path, make, message):
    with pytest.raises(DatasetError, match=message):
        load_dataset(make(tmp_path))


def test_columns_the_recipe_does_not_name_are_guessed_and_logged(tmp_path, caplog):
    by_name = write_csv(tmp_path / "named.csv", rows(), header=("Utterance", "intent"))
    with caplog.at_level(logging.WARNING, logger="brum.data"):
        assert load_dataset(DatasetSpec(path=by_name)).columns == ("Utterance", "intent")
    assert "texts from column 'Utterance', labels from 'intent' (text and label guessed" in (
        caplog.text
    )
    # init writes the guess into the recipe, so run reads those columns without guessing again.
    assert main(["init", str(by_name), "-o", str(tmp_path / "recipe.yaml")]) == 0
    dataset = load_recipe(tmp_path / "recipe.yaml").dataset
    assert (dataset.text_column, dataset.label_column) == ("Utterance", "intent")
    assert {"text_column", "label_column"} <= dataset.model_fields_set
    # No usual names: the column of most words is the texts, the one that repeats the labels.
    table = {
        "row": list(range(18)),
        "said": [f"{t}, says the customer" for t, _ in rows()],
        "at": [f"2026-12-0{i % 9 + 1} 10:{i:02}" for i in range(18)],
        "kind": [label for _, label in rows()],
    }
    path = tmp_path / "unnamed.parquet"
    datasets.Dataset.from_dict(table).to_parquet(str(path))
    assert load_dataset(DatasetSpec(path=path)).columns == ("said", "kind")
    # A named column is never second-guessed; the other is still guessed around it.
    assert load_dataset(DatasetSpec(path=path, text_column="at")).columns == ("at", "kind")


def test_a_file_in_another_encoding_says_so_and_reads_with_it(tmp_path):
    pairs = [*rows(), ("café au lait bonjour", "greet")]
    path = tmp_path / "excel.csv"
    path.write_bytes(
        ("utterance,intent\n" + "".join(f"{t},{i}\n" for t, i in pairs)).encode("latin-1")
    )
    with pytest.raises(
        DatasetError,
        match=r"excel\.csv: cannot be read as csv: 'utf-8' codec can't "
        r"decode .*\(not utf-8: give --encoding or dataset\.encoding",
    ):
        load_dataset(spec(path=path))
    data = load_dataset(spec(path=path, encoding="latin-1"))
    assert "café au lait bonjour" in [t for split in data.splits.values() for t in split.texts]


def test_json_records_under_one_key_are_pointed_to_and_read_with_field(tmp_path):
    path = tmp_path / "nested.json"
    records = [{"utterance": t, "intent": i} for t, i in rows()]
    path.write_text(json.dumps({"version": 2, "data": records}))
    with pytest.raises(DatasetError, match=r"nested\.json: the records seem to sit under 'data'"):
        load_dataset(DatasetSpec(path=path))
    data = load_dataset(DatasetSpec(path=path, field="data"))
    assert data.columns == ("utterance", "intent") and data.labels == ("bye", "greet", "thanks")


def test_texts_in_both_train_and_test_are_counted(tmp_path, caplog):
    train = write_csv(tmp_path / "train.csv", rows())
    test = write_csv(tmp_path / "test.csv", [("hello there", "greet"), ("hi", "greet")])
    with caplog.at_level(logging.WARNING, logger="brum.data"):
        load_dataset(spec(train=train, test=test))
    assert "test.csv: 2 test text(s) also appear in the training split" in caplog.text


def test_the_source_is_inferred_from_what_the_recipe_gives(tmp_path):
    assert DatasetSpec().kind == "clinc150"
    assert DatasetSpec(name="clinc150", config="plus").kind == "clinc150"
    assert DatasetSpec(hub_id="banking77").kind == "hub"
    assert DatasetSpec(train=tmp_path / "t.csv").kind == "files"
    assert DatasetSpec(path=write_csv(tmp_path / "a.csv", rows())).kind == "files"
    assert DatasetSpec(path=tmp_path).kind == "files"  # a folder of split files
    datasets.Dataset.from_dict({"text": ["a"]}).save_to_disk(str(tmp_path / "saved"))
    assert DatasetSpec(path=tmp_path / "saved").kind == "saved"


def test_banking77_as_shipped_no_validation_split_no_out_of_scope():
    data = load_dataset(
        DatasetSpec(
            train=BANKING77 / "train.csv", test=BANKING77 / "test.csv", label_column="category"
        )
    )
    assert len(data.labels) == 77 and data.oos_id is None
    assert len(data.splits["test"]) == 3080
    assert len(data.splits["train"]) + len(data.splits["validation"]) == 10003
    assert 950 <= len(data.splits["validation"]) <= 1050
    assert set(data.splits["validation"].label_ids) == set(range(77))
    # The validation split every BANKING77 figure in BENCHMARKS.md was measured with.
    validation = data.splits["validation"]
    assert texts_digest(validation.texts, validation.label_ids).startswith("4d4aea5451c0")


@pytest.mark.parametrize("delimiter", ["\t", ","])
def test_a_file_without_a_header_row_keeps_its_first_row_and_says_so(tmp_path, caplog, delimiter):
    path = write_csv(tmp_path / "intents.txt", rows(), header=(), delimiter=delimiter)
    path.write_text(path.read_text().lstrip("\n"))
    fmt = "tsv" if delimiter == "\t" else "csv"
    caplog.set_level(logging.WARNING, "brum.data")
    data = load_dataset(DatasetSpec(path=path, format=fmt))
    assert data.columns == ("column_1", "column_2") and data.header is False
    assert data.labels == ("bye", "greet", "thanks")
    assert sum(len(split) for split in data.splits.values()) == 18  # "hello there" kept
    assert "hello there" in [t for split in data.splits.values() for t in split.texts]
    assert "no header row ('greet' in column 2 recurs below it)" in caplog.text
    # The recipe decides, when it says: with a header, the first row names the columns.
    named = load_dataset(DatasetSpec(path=path, format=fmt, header=True))
    assert named.columns == ("hello there", "greet")
    assert sum(len(split) for split in named.splits.values()) == 17


def test_a_header_row_is_read_as_column_names(tmp_path):
    data = load_dataset(DatasetSpec(path=write_csv(tmp_path / "intents.csv", rows())))
    assert data.columns == ("utterance", "intent") and data.header is True
    assert sum(len(split) for split in data.splits.values()) == 18


@pytest.mark.parametrize(
    ("first_rows", "reason"),
    [
        ([["hi there", "greet"], ["hello", "greet"]], "'greet' in column 2 recurs below it"),
        ([["hi there", "3"], ["hello", "4"]], "column 2 starts with the number '3'"),
        ([["text", "label"], ["hello", "greet"], ["bye", "bye"]], None),
        ([["", "text", "label"], ["0", "hello", "greet"]], None),  # an index column's blank
        ([["text", "label"]], None),
    ],
)
def test_a_first_row_is_data_when_a_cell_recurs_below_it_or_is_a_number(first_rows, reason):
    assert first_row_is_data(first_rows) == reason


def test_init_writes_a_missing_header_row_into_the_recipe(tmp_path):
    path = write_csv(tmp_path / "intents.tsv", rows(), header=(), delimiter="\t")
    path.write_text(path.read_text().lstrip("\n"))
    recipe_path = tmp_path / "recipe.yaml"
    assert main(["init", str(path), "-o", str(recipe_path)]) == 0
    dataset = load_recipe(recipe_path).dataset
    assert dataset.header is False
    assert (dataset.text_column, dataset.label_column) == ("column_1", "column_2")
    assert sum(len(split) for split in load_dataset(dataset).splits.values()) == 18
    assert main(["init", str(path), "--header", "-o", str(recipe_path)]) == 0
    assert load_recipe(recipe_path).dataset.header is True


def test_init_names_integer_labels_from_a_file(tmp_path):
    names = ["zebra", "apple", "mango"]
    texts = [text for text, _ in rows()]
    data = write_csv(tmp_path / "ints.csv", [(t, str(i // 6)) for i, t in enumerate(texts)])
    (tmp_path / "names.txt").write_text("\n".join(names) + "\n")
    recipe = tmp_path / "recipe.yaml"
    argv = ["init", str(data), "--text-column", "utterance", "--label-column", "intent"]
    assert main([*argv, "--label-names", str(tmp_path / "names.txt"), "-o", str(recipe)]) == 0
    assert load_dataset(load_recipe(recipe).dataset).labels == tuple(names)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ([], r"small\.csv: 1 label\(s\) with too few different texts to carve"),
        (["--label-names", "repeated.txt"], r"repeated\.txt: label names repeat: \['a'\]"),
        (["--label-names", "absent.txt"], r"label names file not found: .*absent\.txt"),
        (["--encoding", "klingon"], r"--encoding: unknown encoding 'klingon'"),
    ],
)
def test_init_reports_bad_data_in_one_line_and_exits_2(tmp_path, capsys, extra, message):
    data = write_csv(tmp_path / "small.csv", [*rows(), ("rare one", "rare")])
    (tmp_path / "repeated.txt").write_text("a\nb\na\n")
    extra = [str(tmp_path / e) if e.endswith(".txt") else e for e in extra]
    argv = ["init", str(data), "--text-column", "utterance", "--label-column", "intent"]
    assert main([*argv, *extra, "-o", str(tmp_path / "recipe.yaml")]) == 2
    stderr = capsys.readouterr().err  # the datasets library's progress bars come first
    error = stderr.splitlines()[-1]
    assert error.startswith("brum-build init: error: ") and "Traceback" not in stderr
    assert re.search(message, error)
    assert not (tmp_path / "recipe.yaml").exists()


def test_a_missing_recipe_is_one_line_and_exit_2(tmp_path, capsys):
    assert main(["run", str(tmp_path / "nowhere.yaml")]) == 2
    assert (
        capsys.readouterr().err
        == f"brum-build run: error: recipe not found: {tmp_path}/nowhere.yaml\n"
    )


def skewed_rows(total: int) -> list[tuple[str, str]]:
    """``total`` distinct texts: 70% 'common', 25% 'middle', 5% 'rare'."""
    labels = ["common"] * 14 + ["middle"] * 5 + ["rare"]
    return [(f"text number {i} here", labels[i % 20]) for i in range(total)]


def counts(data, split: str) -> tuple[int, int, int]:
    labels = [data.labels[i] for i in data.splits[split].label_ids]
    return labels.count("common"), labels.count("middle"), labels.count("rare")


def test_splits_above_their_maximum_are_sampled_and_seeded(tmp_path):
    data_file = write_csv(tmp_path / "all.csv", skewed_rows(2_000))
    split = {"max_train": 300, "max_validation": 40, "max_test": 60}
    data = load_dataset(spec(path=data_file, split=split))
    sizes = {name: len(s) for name, s in data.splits.items()}
    assert sizes == {"train": 300, "validation": 40, "test": 60}
    # Training texts evenly by label, the 72 'rare' ones all kept as fewer than an even share;
    # validation and test keep the labels' shares (70/25/5).
    assert counts(data, "train") == (114, 114, 72)
    assert counts(data, "test") == (42, 15, 3) and counts(data, "validation") == (28, 10, 2)
    made = data.splits_made["train"]
    assert "sampled 300 of 1,440 (split.max_train), evenly by label, seed 0" in made
    assert counts(load_dataset(spec(path=data_file, split={"max_train": 151})), "train") == (
        51,
        50,
        50,
    )
    stratified = load_dataset(spec(path=data_file, split={**split, "train_sample": "stratified"}))
    assert counts(stratified, "train") == (210, 75, 15)
    made = stratified.splits_made["train"]
    assert "sampled 300 of 1,440 (split.max_train), stratified, seed 0" in made
    again = load_dataset(spec(path=data_file, split=split))
    assert again.splits["train"].texts == data.splits["train"].texts
    reseeded = load_dataset(spec(path=data_file, split={**split, "seed": 1}))
    assert reseeded.splits["train"].texts != data.splits["train"].texts
    # Below the maximum, a split is left as it is.
    assert (
        len(load_dataset(spec(path=data_file, split={"max_train": 5_000})).splits["train"]) == 1_440
    )


def test_a_maximum_below_the_label_count_is_refused(tmp_path):
    data_file = write_csv(tmp_path / "all.csv", skewed_rows(200))
    with pytest.raises(
        DatasetError, match=r"split\.max_train is 2, fewer than the split's 3 labels"
    ):
        load_dataset(spec(path=data_file, split={"max_train": 2}))


def test_init_fits_a_large_dataset_to_the_hours_it_is_given(tmp_path, capsys):
    data_file = write_csv(tmp_path / "large.csv", skewed_rows(40_000))
    argv = ["init", str(data_file), "--text-column", "utterance", "--label-column", "intent"]
    assert main([*argv, "--hours", "1", "-o", str(tmp_path / "short.yaml")]) == 0
    said = capsys.readouterr().out
    assert "over --hours 1, so it distils over one perturbed text" in said
    assert "split.max_train" in said
    short = load_recipe(tmp_path / "short.yaml")
    hours, minutes = re.search(r"take about (?:(\d+) h )?(\d+) min", said).groups()
    assert 40 <= 60 * int(hours or 0) + int(minutes) <= 60
    # As many steps on the sample as the default recipe gives so many texts.
    assert short.teacher.finetune["epochs"] == epochs_for(short.dataset.split.max_train)
    data = load_dataset(short.dataset)
    assert len(data.splits["train"]) == short.dataset.split.max_train < 28_800
    augmented = short.students[1].transfer[0]
    assert augmented.copies == 1 and augmented.limit == short.dataset.split.max_train
    # Given the time, all of it, with the default recipe.
    assert main([*argv, "--hours", "100", "-o", str(tmp_path / "long.yaml")]) == 0
    long = load_recipe(tmp_path / "long.yaml")
    assert long.dataset.split.max_train is None and long.dataset.split.max_test is None
    assert long.students[1].transfer[0].limit == 54_000


def test_init_measures_lengths_in_the_students_pieces_not_in_words(tmp_path):
    # Chinese has no spaces: one "word" a sentence, one piece a character.
    sentence = "我想查询一下我的银行卡余额请帮我预订明天晚上两个人的餐厅今天天气怎么样我要转账"
    pairs = [(sentence[i:] + sentence[:i], f"intent{i % 3}") for i in range(18)]
    data_file = write_csv(tmp_path / "zh.csv", pairs)
    argv = ["init", str(data_file), "--text-column", "utterance", "--label-column", "intent"]
    assert main([*argv, "-o", str(tmp_path / "zh.yaml")]) == 0
    recipe = load_recipe(tmp_path / "zh.yaml")
    assert len(sentence) + 2 <= recipe.teacher.finetune["max_length"] <= len(sentence) + 2 + 16


@pytest.mark.parametrize("name", ["traffic.txt", "traffic.txt.gz"])
def test_unlabelled_texts_come_from_a_text_file_without_what_the_splits_hold(
    tmp_path, caplog, name
):
    train = write_csv(tmp_path / "train.csv", rows())
    test = write_csv(tmp_path / "test.csv", [("hello", "greet"), ("bye bye", "bye")])
    logs = tmp_path / name
    # A test text (other case and spaces), a training text, a repeat and an empty line.
    lines = "good evening\n  Bye  BYE\nhowdy\n\ngood evening\nthanks so much\n"
    with (gzip.open if name.endswith(".gz") else open)(logs, "wt") as handle:
        handle.write(lines)
    caplog.set_level(logging.INFO, logger="brum.data")
    data = load_dataset(spec(train=train, test=test, unlabelled=logs))
    assert data.unlabelled == ("good evening", "thanks so much")
    carved_into = "train" if "howdy" in data.splits["train"].texts else "validation"
    assert f"dropped 1 empty, 1 in test, 1 in {carved_into}, 1 repeated" in caplog.text
    assert load_dataset(spec(train=train, test=test)).unlabelled == ()


def test_unlabelled_texts_from_a_table_use_the_text_column_or_the_one_named(tmp_path):
    train = write_csv(tmp_path / "train.csv", rows())
    logs = tmp_path / "logs.jsonl"
    records = [{"at": "2026-12-01T10:00", "utterance": "top of the morning", "user": "u1"}]
    records += [{"at": "2026-12-01T10:01", "utterance": "catch you later", "user": "u2"}]
    logs.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    data = load_dataset(spec(train=train, unlabelled=logs))
    assert data.unlabelled == ("top of the morning", "catch you later")
    named = load_dataset(spec(train=train, unlabelled=logs, unlabelled_column="user"))
    assert named.unlabelled == ("u1", "u2")
    with pytest.raises(DatasetError, match=r"no text column 'said'; the columns are \['at'"):
        load_dataset(spec(train=train, unlabelled=logs, unlabelled_column="said"))
    with pytest.raises(DatasetError, match=r"missing\.txt: file not found"):
        load_dataset(spec(train=train, unlabelled=tmp_path / "missing.txt"))
    nothing_new = tmp_path / "seen.txt"
    nothing_new.write_text("hello there\nhi\n")
    with pytest.raises(DatasetError, match="no texts left in column 'text'"):
        load_dataset(spec(train=train, unlabelled=nothing_new))


def test_init_writes_the_unlabelled_texts_into_the_recipe(tmp_path):
    train = write_csv(tmp_path / "train.csv", rows())
    logs = tmp_path / "traffic.txt"
    logs.write_text("good evening\nthanks so much\n")
    recipe_path = tmp_path / "recipe.yaml"
    main(["init", str(train), "--unlabelled", str(logs), "-o", str(recipe_path)])
    recipe = load_recipe(recipe_path)
    assert recipe.dataset.unlabelled == logs
    assert load_dataset(recipe.dataset).unlabelled == ("good evening", "thanks so much")


def test_unlabelled_texts_above_their_maximum_are_sampled_and_seeded(tmp_path, caplog):
    train = write_csv(tmp_path / "train.csv", rows())
    logs = tmp_path / "traffic.txt"
    lines = [f"request number {i} from the log" for i in range(500)]
    logs.write_text("\n".join(["hello there", *lines]) + "\n")  # a training text, dropped first
    caplog.set_level(logging.INFO, logger="brum.data")
    data = load_dataset(spec(train=train, unlabelled=logs, max_unlabelled=40))
    assert len(data.unlabelled) == len(set(data.unlabelled)) == 40
    assert set(data.unlabelled) <= set(lines)
    assert list(data.unlabelled) == sorted(data.unlabelled, key=lines.index)  # the log's order
    assert "sampled 40 of 500 texts (dataset.max_unlabelled), seed 0" in caplog.text
    again = load_dataset(spec(train=train, unlabelled=logs, max_unlabelled=40))
    assert again.unlabelled == data.unlabelled
    reseeded = load_dataset(
        spec(train=train, unlabelled=logs, max_unlabelled=40, split={"seed": 1})
    )
    assert reseeded.unlabelled != data.unlabelled
    whole = load_dataset(spec(train=train, unlabelled=logs, max_unlabelled=500))
    assert whole.unlabelled == tuple(lines)


def test_init_samples_unlabelled_texts_to_its_flag_and_to_the_hours_it_is_given(tmp_path, capsys):
    data_file = write_csv(tmp_path / "intents.csv", skewed_rows(2_000))
    logs = tmp_path / "traffic.txt"
    logs.write_text("\n".join(f"request number {i} from the log" for i in range(200_000)))
    argv = ["init", str(data_file), "--text-column", "utterance", "--label-column", "intent"]
    argv += ["--unlabelled", str(logs)]
    assert main([*argv, "--max-unlabelled", "300", "-o", str(tmp_path / "flag.yaml")]) == 0
    flagged = load_recipe(tmp_path / "flag.yaml")
    assert flagged.dataset.max_unlabelled == 300
    assert len(load_dataset(flagged.dataset).unlabelled) == 300
    capsys.readouterr()
    # 200,000 log lines would be most of the run: the lean recipe keeps as many as it perturbs.
    assert main([*argv, "--hours", "1", "-o", str(tmp_path / "short.yaml")]) == 0
    said = capsys.readouterr().out
    short = load_recipe(tmp_path / "short.yaml")
    kept = short.dataset.max_unlabelled
    assert kept == short.students[1].transfer[0].limit == 1_440
    assert f"max_unlabelled {kept:,}" in said
    assert short.dataset.split.max_train is None  # the training texts all fit
    assert len(load_dataset(short.dataset).unlabelled) == kept


def test_an_unreachable_hub_is_said_at_once_and_a_listening_one_is_tried(monkeypatch):
    from huggingface_hub import constants

    from models.sources.hub import why_unreachable

    for proxy in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy"):
        monkeypatch.delenv(proxy, raising=False)
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        port = listening.getsockname()[1]
        assert why_unreachable(f"http://127.0.0.1:{port}") is None
    # The port is closed now: nothing listens on it.
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    with pytest.raises(
        DatasetError,
        match=r"banking77: the hub at http://127\.0\.0\.1:\d+ cannot "
        r"be reached from here \(.*refused.*\).*HF_HUB_OFFLINE=1",
    ):
        load_dataset(DatasetSpec(hub_id="PolyAI/banking77"))


def test_init_refuses_a_teacher_run_could_not_find_or_whose_labels_differ(
    tmp_path, monkeypatch, capsys
):
    from huggingface_hub import constants

    from tests.test_adopt import fine_tuned_checkpoint

    path = write_csv(tmp_path / "intents.csv", rows())
    recipe = tmp_path / "recipe.yaml"

    def refused(teacher: Path | str, *extra: str) -> str:
        assert main(["init", str(path), "--teacher", str(teacher), *extra, "-o", str(recipe)]) == 2
        assert not recipe.exists()
        return capsys.readouterr().err.splitlines()[-1]

    assert re.search(r"--teacher .*nowhere: no folder .*nowhere$", refused(tmp_path / "nowhere"))
    with socket.socket() as closed:  # bound, never listening: a hub that does not answer
        closed.bind(("127.0.0.1", 0))
        monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{closed.getsockname()[1]}")
        monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub-cache"))
        assert re.search(
            r"--teacher org/bert: not a local folder, not pinned .* the hub at "
            r"http://127\.0\.0\.1:\d+ cannot be reached",
            refused("org/bert"),
        )
    tuned = fine_tuned_checkpoint(tmp_path, {0: "greet", 1: "bye", 2: "weather"})
    assert re.search(
        r"only in the checkpoint \['weather'\], only in the dataset \['thanks'\]",
        refused(tuned, "--fine-tuned"),
    )
    tuned = fine_tuned_checkpoint(tmp_path / "right", {0: "greet", 1: "bye", 2: "thanks"})
    assert (
        main(["init", str(path), "--teacher", str(tuned), "--fine-tuned", "-o", str(recipe)]) == 0
    )


def test_an_excel_workbook_is_read_from_its_first_sheet(tmp_path, caplog):
    import pandas

    texts = [text for text, _ in rows()]
    labels = [["greet", "bye", "thanks"].index(label) for _, label in rows()]
    sheet = pandas.DataFrame({"Anfrage": texts, "Klasse": labels})
    sheet.loc[0, "Anfrage"] = 12345  # a number in a text column is text
    sheet.loc[1, "Anfrage"] = None  # an empty cell is an empty text
    path = tmp_path / "Intents.xlsx"
    sheet.to_excel(path, index=False)
    names = ["greet", "bye", "thanks"]
    with caplog.at_level(logging.WARNING, logger="brum.data"):
        data = load_dataset(DatasetSpec(path=path, label_names=names))
    assert data.columns == ("Anfrage", "Klasse") and data.labels == tuple(names)
    assert "dropped 1 empty or whitespace-only texts" in caplog.text
    texts_read = {t for s in data.splits.values() for t in s.texts}
    assert "12345" in texts_read and len(texts_read) == 17
    headless = tmp_path / "bare.xlsx"
    sheet.iloc[2:].to_excel(headless, index=False, header=False)
    data = load_dataset(DatasetSpec(path=headless, header=False, label_names=names))
    assert data.columns == ("column_1", "column_2")
    (tmp_path / "fake.xlsx").write_text("not a workbook")
    with pytest.raises(DatasetError, match=r"fake\.xlsx: cannot be read as an Excel workbook"):
        load_dataset(DatasetSpec(path=tmp_path / "fake.xlsx"))


GERMAN = {
    "sperren": [
        "Meine Karte wurde gestohlen bitte sperren",
        "Karte verloren sofort sperren",
        "Bitte sperren Sie meine Karte",
    ],
    "kontostand": [
        "Wie hoch ist mein aktueller Kontostand?",
        "Zeigen Sie mir mein Guthaben",
        "Wie viel Geld habe ich noch",
    ],
    "ueberweisung": [
        "Warum wurde meine Überweisung abgelehnt?",
        "Überweisung ins Ausland",
        "Meine Überweisung ist nicht angekommen",
    ],
}
CHINESE = {
    "freeze": ["我的卡被偷了请冻结", "请冻结我的银行卡", "我的卡丢了"],
    "balance": ["我的账户余额是多少", "查询余额", "我还有多少钱"],
    "transfer": ["为什么我的转账被拒绝了", "我想转账到国外", "转账还没有到账"],
}


@pytest.mark.parametrize(
    ("intents", "warned"),
    [
        (INTENTS, None),
        (GERMAN, r"2\.\d\d pieces a word \("),
        (CHINESE, r"[1-9]\d% of them unknown"),
    ],
)
def test_init_says_when_the_texts_are_not_english(tmp_path, caplog, intents, warned):
    pairs = [(text, label) for text, label in rows(intents) for _ in range(3)]
    data = write_csv(tmp_path / "intents.csv", pairs)
    recipe = tmp_path / "recipe.yaml"
    with caplog.at_level(logging.WARNING, logger="brum.data"):
        assert main(["init", str(data), "-o", str(recipe)]) == 0
    header = "".join(line for line in recipe.read_text().splitlines() if line.startswith("#"))
    if warned is None:
        assert "another language" not in caplog.text and "another language" not in header
    else:
        assert re.search(warned, caplog.text) and "they look like another language" in caplog.text
        assert re.search(warned, header)


@pytest.mark.parametrize(("common", "rare", "warned"), [(120, 10, True), (90, 10, False)])
def test_init_says_when_one_label_holds_most_texts(tmp_path, caplog, common, rare, warned):
    pairs = [(f"where is my card number {i}", "card") for i in range(common)]
    pairs += [(f"please close my account {i}", "close") for i in range(rare)]
    data = write_csv(tmp_path / "skewed.csv", pairs)
    recipe = tmp_path / "recipe.yaml"
    with caplog.at_level(logging.WARNING, logger="brum.data"):
        assert main(["init", str(data), "-o", str(recipe)]) == 0
    header = "".join(line for line in recipe.read_text().splitlines() if line.startswith("#"))
    found = re.search(r"label 'card' has (\d+) training texts \((\d+)%\) and 'close' (\d+)", header)
    assert bool(found) == warned and ("macro F1" in caplog.text) == warned
    if warned:
        card, share, close = map(int, found.groups())
        assert card >= 10 * close and share == round(100 * card / (card + close))
        assert "answering 'card' to everything" in caplog.text


def student_texts() -> list[str]:
    return [text for text, _ in rows()] * 3


@pytest.mark.parametrize("tokenizer", ["WordPiece", "BPE"])
def test_init_names_sizes_and_cuts_the_students_from_the_student_given(tmp_path, tokenizer):
    student = save_tiny_bert(tmp_path / "My_Student-4L", student_texts(), layers=4)
    if tokenizer == "BPE":  # as multilingual MiniLM's SentencePiece: no vocabulary pruning
        bpe = Tokenizer(BPE(unk_token="[UNK]"))
        bpe.train_from_iterator(student_texts(), trainers.BpeTrainer(special_tokens=["[UNK]"]))
        bpe.save(str(student / "tokenizer.json"))
    data = write_csv(tmp_path / "intents.csv", [*rows(), *rows()])
    recipe_path = tmp_path / "recipe.yaml"
    argv = ["init", str(data), "--name", "shop", "--student", str(student)]
    assert main([*argv, "-o", str(recipe_path)]) == 0
    recipe = load_recipe(recipe_path)
    students = {s.name: s for s in recipe.students}
    assert list(students) == [
        "shop-my-student-4l-int8",
        "shop-my-student-4l-augmented-int8",
        "shop-my-student-4l-l2-int8",
        "shop-my-student-4l-augmented-pruned-int8",
    ]
    assert students["shop-my-student-4l-l2-int8"].layers == [0, 2]
    assert {s.base for s in recipe.students if s.base} == {str(student)}
    pruned = [s.vocabulary is not None for s in recipe.students]
    assert pruned == [tokenizer == "WordPiece"] * 4
    assert [arm["variant"] for arm in recipe.experiment["arms"]] == [
        "shop-my-student-4l-augmented-int8",
        "shop-my-student-4l-augmented-pruned-int8",
    ]


def test_init_refuses_a_student_it_cannot_cut_or_find(tmp_path, capsys):
    data = write_csv(tmp_path / "intents.csv", rows())
    roberta = save_tiny_bert(tmp_path / "roberta", student_texts())
    config = json.loads((roberta / "config.json").read_text())
    (roberta / "config.json").write_text(json.dumps({**config, "model_type": "roberta"}))
    for student, message in [
        (roberta, "a roberta checkpoint; students are cut and pruned as BERT encoders"),
        (tmp_path / "nowhere", f"--student {tmp_path / 'nowhere'}: no folder"),
    ]:
        argv = ["init", str(data), "--student", str(student), "-o", str(tmp_path / "r.yaml")]
        assert main(argv) == 2
        assert message in capsys.readouterr().err.splitlines()[-1]
    assert not (tmp_path / "r.yaml").exists()


@pytest.mark.parametrize(
    ("file_name", "recipe_name"),
    [
        ("Anfragen_März.csv", "anfragen-marz"),
        ("客户意图.csv", "data"),
        # Cut so that its longest variant name keeps within 63 characters.
        ("customer_support_intents_2024_export.csv", "customer-support-intents-2024-e"),
    ],
)
def test_init_names_the_recipe_after_any_file_name(tmp_path, file_name, recipe_name):
    data = write_csv(tmp_path / file_name, rows())
    assert main(["init", str(data), "-o", str(tmp_path / "recipe.yaml")]) == 0
    recipe = load_recipe(tmp_path / "recipe.yaml")
    assert recipe.name == recipe_name
    assert max(len(s.name) for s in recipe.students) <= 63


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("My Data", "lower-case letters a-z, digits"),
        ("customer-support-intents-2024-v2", "at most 31 characters"),
    ],
)
def test_init_refuses_a_name_its_variants_could_not_carry(tmp_path, capsys, name, message):
    data = write_csv(tmp_path / "intents.csv", rows())
    assert main(["init", str(data), "--name", name, "-o", str(tmp_path / "recipe.yaml")]) == 2
    assert message in capsys.readouterr().err.splitlines()[-1]


def test_a_column_named_twice_in_the_header_is_said(tmp_path, caplog):
    path = tmp_path / "twice.csv"
    lines = ["text,text,label"] + [f"{t},{t} again,{label}" for t, label in rows()]
    path.write_text("\n".join(lines) + "\n")
    with caplog.at_level(logging.WARNING, logger="brum.data"):
        data = load_dataset(DatasetSpec(path=path))
    assert data.splits["train"].texts[0] in {t for t, _ in rows()}  # the first of the two
    assert "the header names column 'text' 2 times" in caplog.text
    assert "the others as ['text.1']" in caplog.text


@pytest.mark.parametrize("hours", ["0", "-1", "soon"])
def test_init_refuses_hours_it_cannot_fit_a_run_in(tmp_path, capsys, hours):
    data = write_csv(tmp_path / "intents.csv", rows())
    with pytest.raises(SystemExit) as exited:
        main(["init", str(data), "--hours", hours, "-o", str(tmp_path / "recipe.yaml")])
    assert exited.value.code == 2
    error = capsys.readouterr().err.splitlines()[-1]
    assert error.startswith(f"brum-build init: error: argument --hours: {hours}: ")
