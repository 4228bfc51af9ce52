"""Experiments: deterministic sticky assignment, weights honoured, invalid configs refused."""

from __future__ import annotations

import json
import shutil
from collections import Counter

import pytest

from app.core.card import read_card, write_card
from app.core.experiment import Arm, Experiment, ExperimentError, load_experiment
from app.settings import SHIPPED_REPOSITORY
from tests.server import run_server

TWO_ARMS = Experiment(
    name="ab", arms=[Arm(variant="control", weight=3), Arm(variant="candidate", weight=1)]
)


def test_the_same_key_always_gets_the_same_arm():
    assert {TWO_ARMS.assign("user-42") for _ in range(100)} == {TWO_ARMS.assign("user-42")}
    renamed = TWO_ARMS.model_copy(update={"name": "other"})
    keys = [f"user-{i}" for i in range(200)]
    # A different experiment reshuffles: assignment depends on (experiment, key).
    assert [TWO_ARMS.assign(k) for k in keys] != [renamed.assign(k) for k in keys]


def test_traffic_splits_by_weight():
    counts = Counter(TWO_ARMS.assign(f"user-{i}") for i in range(20_000))
    assert counts["control"] / 20_000 == pytest.approx(0.75, abs=0.015)
    anonymous = Counter(TWO_ARMS.assign(None) for _ in range(4_000))
    assert anonymous["candidate"] / 4_000 == pytest.approx(0.25, abs=0.03)


def test_invalid_experiments_are_refused(tmp_path):
    with pytest.raises(ExperimentError, match="not in the repository: \\['candidate'\\]"):
        TWO_ARMS.check_variants(frozenset({"control"}))
    path = tmp_path / "experiment.yaml"
    path.write_text("name: x\narms: [{variant: a, weight: 0}]\n")
    with pytest.raises(ExperimentError, match="greater than 0"):
        load_experiment(path)
    path.write_text("name: x\narms: [{variant: a, weight: 1}, {variant: a, weight: 2}]\n")
    with pytest.raises(ExperimentError, match="one arm only"):
        load_experiment(path)


@pytest.fixture(scope="module")
def two_variant_repository(tmp_path_factory):
    """The shipped variant twice, under two names, with a 1:1 experiment between them."""
    root = tmp_path_factory.mktemp("experiment")
    source = sorted(SHIPPED_REPOSITORY.glob("*/variant.json"))[0].parent
    for name in ("arm-a", "arm-b"):
        shutil.copytree(source, root / name)
        raw = json.loads((root / name / "variant.json").read_text())
        (root / name / "variant.json").write_text(json.dumps({**raw, "name": name}))
        write_card(root / name, read_card(root / name))
    (root / "experiment.yaml").write_text(
        "name: ab-test\nsticky_header: X-User-ID\n"
        "arms:\n  - {variant: arm-a, weight: 1}\n  - {variant: arm-b, weight: 1}\n"
    )
    return root


def test_server_routes_by_sticky_key(two_variant_repository, tmp_path):
    env = {"BRUM_MODEL_REPOSITORY": str(two_variant_repository)}
    with run_server(tmp_path, env) as server, server.client() as client:
        seen = Counter()
        for i in range(60):
            key = {"X-User-ID": f"user-{i}"}
            first = client.post("/v1/predict", json={"text": "hi"}, headers=key)
            again = client.post("/v1/predict", json={"text": "hi"}, headers=key)
            assert first.json()["variant"] == again.json()["variant"]
            assert first.headers["x-brum-experiment"] == "ab-test"
            seen[first.json()["variant"]] += 1
        assert set(seen) == {"arm-a", "arm-b"}
        explicit = client.post("/v1/models/arm-b/predict", json={"text": "hi"})
        assert explicit.json()["variant"] == "arm-b" and "x-brum-experiment" not in explicit.headers
        assert client.get("/v1/models").json()["experiment"]["name"] == "ab-test"


def test_server_refuses_an_experiment_naming_a_missing_variant(two_variant_repository, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: broken\narms: [{variant: arm-c, weight: 1}]\n")
    env = {"BRUM_MODEL_REPOSITORY": str(two_variant_repository), "BRUM_EXPERIMENT": str(bad)}
    with (
        pytest.raises(RuntimeError, match="server exited with 2"),
        run_server(tmp_path, env, wait="/healthz"),
    ):
        pass
    log = next(tmp_path.glob("server-*.log")).read_text()
    assert "not in the repository: ['arm-c']" in log
