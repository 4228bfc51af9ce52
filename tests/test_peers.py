"""The peer benchmark runs end to end on the shipped variant against the peers that need no
environment of their own (brum, the naive app, KServe), in short levels, and reports them all."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from functools import partial

import pytest

from app.core.card import read_card
from app.settings import SHIPPED_REPOSITORY
from loadtests.cgroup import limits_available
from loadtests.machine import machine_cpu, own_cpu_seconds
from loadtests.peers.__main__ import load_texts, main
from loadtests.peers.raw import raw_bracket
from loadtests.peers.render import BUSY_MACHINE_CORES
from loadtests.peers.rounds import fold_server, rotated
from loadtests.processes import only_loopback

LEVELS = ("1x1", "16x8")


@pytest.mark.skipif(
    shutil.which("wrk") is None, reason="wrk is not installed (apt-get install wrk)"
)
def test_peer_benchmark_measures_each_server(tmp_path):
    servers = "brum,brum-processes,naive,kserve"
    argv = ["--servers", servers, "--seconds", "1", "--warmup", "1", "--rounds", "2"]
    argv += ["--levels", ",".join(LEVELS), "--texts", "64", "--output", str(tmp_path)]
    assert main(argv) == 0
    stem = tmp_path / "peers-minilm-l6-augmented-int8"
    result = json.loads(stem.with_suffix(".json").read_text())
    report = stem.with_suffix(".md").read_text()
    assert list(result["servers"]) == ["brum", "brum-processes", "naive", "kserve"]
    for name, server in result["servers"].items():
        assert "skipped" not in server, (name, server.get("skipped"))
        assert server["verified"]["match"], (name, server["verified"])
        assert server["listening"] and only_loopback(set(server["listening"])), name
        assert server["ready_seconds"] > 0 and server["rss_after_bytes"] > 0
        assert list(server["levels"]) == list(LEVELS)
        assert server["rounds"] == 2
        for key, level in server["levels"].items():
            assert level["requests"] > 0 and level["errors"] == 0, (name, level)
            assert len(level["rounds_texts_per_second"]) == 2
            assert level["server_cpu_cores"] > 0
            assert len(level["rounds_other_cpu_cores"]) == 2 and level["other_cpu_cores"] >= 0
            # Only brum says how it batched: at least one text a batch, at most the level's load.
            if name.startswith("brum"):
                connections, texts = map(int, key.split("x"))
                assert 1 <= level["texts_per_batch"] <= min(32, connections * texts), key
            else:
                assert "texts_per_batch" not in level
    assert result["raw"]["raw_batch32_texts_per_second"] > 0
    assert result["raw_before"]["session_run_after_pause_p50_ms_all_cores"] > 0
    assert "after a 0.5 ms pause" in report
    assert "other processes' CPU cores by round" in report
    assert result["dataset"] == "clinc150-plus" and result["text_tokens"] > 0
    assert "64 test texts of clinc150-plus" in report
    assert set(result["ratios"]) == set(LEVELS)
    # brum in another configuration is not a peer of brum.
    assert {r["best_peer"] for r in result["ratios"].values()} <= {"naive", "kserve"}
    assert "BRUM_PROCESSES` set to the cores" in report
    assert {g["goal"].split(":")[0] for g in result["goals"]} >= {"1 conn", "16 conns x 8 texts"}
    assert "## brum against the best peer and raw" in report
    assert "brum's calibration at each start" in report
    assert len(result["servers"]["brum"]["chosen_by_round"]) == 2
    # Each start's row names the threads its lone texts ran on, as its /metrics said.
    starts = report.split("| lone texts on |\n|---", 1)[1]
    rows = starts.split("\n\n", 1)[0].splitlines()[1:]
    lone = [
        start["inline_session_threads"] for start in result["servers"]["brum"]["chosen_by_round"]
    ]
    assert [row.rsplit("|", 2)[1].strip() for row in rows] == [f"{t} thread(s)" for t in lone]
    # After one connection, each process's lone session: one process for brum, two for
    # brum-processes, whose threads it names per process.
    for name, processes in (("brum", 1), ("brum-processes", 2)):
        after = result["servers"][name]["levels"]["1x1"]["rounds_lone_session_threads"]
        assert len(after) == 2 and all(len(threads) == processes for threads in after), after
        assert all(threads >= 1 for round_ in after for threads in round_), after
        each = "; ".join(" + ".join(map(str, threads)) for threads in after)
        assert f"- {name}, after 1x1: lone texts on sessions of {each} thread(s)" in report
    assert "rounds_lone_session_threads" not in result["servers"]["brum"]["levels"]["16x8"]
    assert stem.with_suffix(".png").stat().st_size > 10_000


def test_the_machine_cpu_counts_what_this_process_spends():
    before, own = machine_cpu(), own_cpu_seconds()
    end = time.perf_counter() + 0.5
    while time.perf_counter() < end:
        pass
    assert own_cpu_seconds() - own >= 0.4
    assert (machine_cpu() - before).busy >= 0.4  # other processes only add to it


@pytest.mark.skipif(
    shutil.which("wrk") is None, reason="wrk is not installed (apt-get install wrk)"
)
def test_a_level_run_beside_other_work_is_flagged(tmp_path):
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        argv = ["--servers", "naive", "--levels", "8x1", "--seconds", "2", "--warmup", "1"]
        argv += ["--rounds", "1", "--texts", "32", "--output", str(tmp_path)]
        assert main(argv) == 0
    finally:
        hog.kill()
        hog.wait()
    stem = tmp_path / "peers-minilm-l6-augmented-int8"
    level = json.loads(stem.with_suffix(".json").read_text())["servers"]["naive"]["levels"]["8x1"]
    assert level["other_cpu_cores"] >= BUSY_MACHINE_CORES, level
    assert "**Busy machine:**" in stem.with_suffix(".md").read_text()
    assert "during naive 8x1" in stem.with_suffix(".md").read_text()


SHIPPED_L6 = SHIPPED_REPOSITORY / "minilm-l6-augmented-int8"


def test_load_texts_are_the_recipe_test_split_with_their_length(tmp_path, capsys):
    tickets = [f"ticket {i}: my card was charged twice for order number {i}" for i in range(40)]
    rows = "\n".join(f"{text},{'refund' if i % 2 else 'billing'}" for i, text in enumerate(tickets))
    (tmp_path / "train.csv").write_text("body,queue\n" + rows + "\n")
    (tmp_path / "test.csv").write_text("body,queue\n" + rows + "\n")
    recipe = tmp_path / "tickets.yaml"
    recipe.write_text(
        f"name: tickets\ndataset:\n  train: {tmp_path / 'train.csv'}\n"
        f"  test: {tmp_path / 'test.csv'}\n  text_column: body\n  label_column: queue\n"
        "teacher:\n  base: bert\nstudents: []\n"
    )
    load = load_texts(SHIPPED_L6, 16, recipe)
    assert len(load.texts) == 16 and set(load.texts) <= set(tickets)
    assert load.dataset != "clinc150-plus" and load.tokens > 10
    # The shipped variant was built on CLINC150: loading it with other texts is said.
    assert "give --recipe RECIPE" in capsys.readouterr().err

    shipped = load_texts(SHIPPED_L6, 16, None)
    assert shipped.dataset == "clinc150-plus" and set(read_card(SHIPPED_L6).labels)
    assert shipped.tokens < load.tokens
    assert "--recipe" not in capsys.readouterr().err


def level_run(rate: float, p99: float, errors: int = 0) -> dict:
    return {
        "connections": 32,
        "texts_per_request": 1,
        "requests": int(rate * 10),
        "requests_per_second": rate,
        "texts_per_second": rate,
        "p50_ms": p99 / 2,
        "p95_ms": p99 * 0.9,
        "p99_ms": p99,
        "errors": errors,
        "seconds": 10.0,
        "server_cpu_cores": 1.5,
    }


def server_round(rate: float, p99: float, ready: float, errors: int = 0) -> dict:
    return {
        "settings": "s",
        "ready_seconds": ready,
        "rss_ready_bytes": 100,
        "rss_after_bytes": 120,
        "levels": {"32x1": level_run(rate, p99, errors)},
    }


def test_the_raw_bracket_runs_in_a_process_that_entered_the_limits_first():
    """Not in this one, pinned after it loaded onnxruntime: that process would keep kernels a
    server started inside the limits does not get."""
    folder = SHIPPED_REPOSITORY / "minilm-l3-augmented-int8"
    texts = load_texts(folder, 8, None).texts
    mine = os.sched_getaffinity(0)
    first = min(mine)
    bracket = raw_bracket(folder, texts, 1, partial(os.sched_setaffinity, 0, {first}))
    assert bracket["cpus"] == [first]
    assert bracket["raw_batch32_texts_per_second"] > 0
    assert bracket["session_run_p50_ms_1_thread"] > 0
    assert os.sched_getaffinity(0) == mine
    with pytest.raises(RuntimeError, match="the raw bracket failed"):
        raw_bracket(folder / "missing", texts, 1)


def test_rounds_rotate_the_starting_server():
    names = ["brum", "naive", "kserve"]
    assert [rotated(names, r)[0] for r in range(4)] == ["brum", "naive", "kserve", "brum"]
    assert sorted(rotated(names, 2)) == sorted(names)


def test_rounds_fold_into_medians_with_their_spread():
    folded = fold_server(
        [server_round(600, 80, 1.2), server_round(900, 40, 2.5, errors=1), server_round(700, 60, 1)]
    )
    level = folded["levels"]["32x1"]
    assert level["texts_per_second"] == 700 and level["p99_ms"] == 60
    assert level["rounds_texts_per_second"] == [600, 900, 700]
    assert level["spread"] == round(300 / 700, 3)
    assert level["errors"] == 1 and level["requests"] == 22000
    assert folded["ready_seconds"] == 2.5 and folded["rounds"] == 3


def test_a_round_that_failed_marks_the_server_skipped():
    failed = {"settings": "s", "skipped": "failed: no answer"}
    assert fold_server([server_round(600, 80, 1), failed]) == failed


CGROUP = pytest.mark.skipif(
    shutil.which("wrk") is None or not limits_available() or len(os.sched_getaffinity(0)) < 2,
    reason="needs wrk, two CPUs and a writable cgroup v1 (root)",
)


def confined_run(tmp_path, servers: str, limit: list[str], levels: str, suffix: str) -> dict:
    """A short peer benchmark under ``limit`` (--cpus or --quota); its JSON result."""
    argv = ["--servers", servers, *limit, "--seconds", "2", "--warmup", "1", "--rounds", "1"]
    argv += ["--levels", levels, "--texts", "32", "--output", str(tmp_path)]
    assert main(argv) == 0
    return json.loads((tmp_path / f"peers-minilm-l6-augmented-int8-{suffix}.json").read_text())


@CGROUP
def test_cpus_holds_every_server_to_fewer_cores_and_wrk_to_the_rest(tmp_path):
    result = confined_run(tmp_path, "brum,naive", ["--cpus", "1"], "1x1,8x1", "1cpu")
    cpus = sorted(os.sched_getaffinity(0))
    assert len(cpus) >= 2  # the benchmark gave this process its CPUs back
    assert result["cores"] == 1
    assert result["cpus"] == {
        "servers": cpus[:1],
        "load": cpus[1:],
        "quota": None,
        "isolation": "cgroup",
    }
    # brum sizes itself by the CPUs it may use: one, so one one-thread session.
    assert result["servers"]["brum"]["chosen"]["plan"]["threads"] == "1"
    assert result["servers"]["brum"]["chosen"]["plan"]["side_by_side"] == "1"
    # onnxruntime's default session pins its threads to every core of the machine, which widened
    # an affinity mask to two cores; it cannot widen a cpuset.
    assert result["servers"]["naive"]["levels"]["8x1"]["server_cpu_cores"] <= 1.1
    # The raw bracket ran in a process that loaded onnxruntime inside the cpuset, as they did.
    assert result["raw_before"]["cpus"] == result["raw_after"]["cpus"] == cpus[:1]
    report = (tmp_path / "peers-minilm-l6-augmented-int8-1cpu.md").read_text()
    assert f"servers and raw on CPUs {cpus[:1]}, wrk on {cpus[1:]}; by a cgroup" in report


@CGROUP
def test_quota_holds_every_server_to_a_share_of_the_cores(tmp_path):
    result = confined_run(tmp_path, "naive,brum", ["--quota", "0.5"], "8x1", "quota0.5")
    assert result["cores"] == 1
    assert result["cpus"]["quota"] == 0.5 and result["cpus"]["isolation"] == "cgroup"
    for name in ("naive", "brum"):
        assert result["servers"][name]["levels"]["8x1"]["server_cpu_cores"] <= 0.7, name
    # brum reads the quota from its cgroup (app/runtime/cores.py): one core's plan.
    assert result["servers"]["brum"]["chosen"]["plan"]["threads"] == "1"
    assert result["servers"]["brum"]["chosen"]["plan"]["side_by_side"] == "1"
    report = (tmp_path / "peers-minilm-l6-augmented-int8-quota0.5.md").read_text()
    assert "under a CPU quota of 0.5 CPUs; by a cgroup" in report
