import json

import pytest

from models.data import DatasetError
from models.sources.clinc150 import default_dir, load_clinc150


def test_plus_configuration_has_the_published_split_sizes(clinc):
    sizes = {name: len(split) for name, split in clinc.splits.items()}
    assert sizes == {"train": 15250, "validation": 3100, "test": 5500}
    assert len(clinc.labels) == 151
    assert clinc.labels[clinc.oos_id] == "oos"
    assert sum(label == clinc.oos_id for label in clinc.splits["test"].label_ids) == 1000


def test_labels_are_sorted_and_ids_point_at_them(clinc):
    assert list(clinc.labels) == sorted(clinc.labels)
    split = clinc.splits["train"]
    index = split.texts.index("what expression would i use to say i love you if i were an italian")
    assert clinc.labels[split.label_ids[index]] == "translate"


def test_the_texts_its_splits_label_two_ways_are_noted(clinc):
    # CLINC150 as released files four texts of validation and test under other intents than
    # the training split's copies: read as every source is, they are noted.
    val, test = map(str, clinc.notes)
    assert "[val]: 2 text(s) have another label in the training split" in val
    assert "'what is on my to do list' as 'reminder' here and 'todo_list' there" in val
    assert "[test]: 2 text(s) have another label in the training split" in test


def test_label_order_does_not_depend_on_file_order(tmp_path, clinc):
    source = json.loads((default_dir() / "data_oos_plus.json").read_text())
    reordered = {key: list(reversed(rows)) for key, rows in reversed(list(source.items()))}
    (tmp_path / "data_oos_plus.json").write_text(json.dumps(reordered))
    reloaded = load_clinc150(tmp_path)
    assert reloaded.labels == clinc.labels
    for name, split in clinc.splits.items():
        other = reloaded.splits[name]
        assert sorted(zip(other.texts, other.label_ids, strict=True)) == sorted(
            zip(split.texts, split.label_ids, strict=True)
        )


def test_missing_directory_is_a_clear_error(tmp_path):
    with pytest.raises(DatasetError, match=r"not found.*BRUM_CLINC150_DIR"):
        load_clinc150(tmp_path / "nowhere")


def test_unknown_configuration_is_refused():
    with pytest.raises(DatasetError, match="unknown CLINC150 configuration 'small'"):
        load_clinc150(config="small")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not valid JSON"),
        ("[]", "expected a JSON object"),
        (json.dumps({"train": [], "oos_train": []}), "missing key 'val'"),
        (
            json.dumps(
                {k: [] for k in ["val", "oos_val", "test", "oos_test", "oos_train"]}
                | {"train": [["text only"]]}
            ),
            r"train\[0\] is not a \[text, intent\] pair",
        ),
    ],
)
def test_malformed_file_is_a_clear_error(tmp_path, content, message):
    (tmp_path / "data_oos_plus.json").write_text(content)
    with pytest.raises(DatasetError, match=message):
        load_clinc150(tmp_path)
