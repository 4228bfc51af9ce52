"""The peer benchmark runs end to end on the shipped variant against the peers that need no
environment of their own (brum, the naive app, KServe), in short levels, and reports them all."""

from __future__ import annotations

import json
import shutil

import pytest

from loadtests.peers.__main__ import main
from loadtests.processes import only_loopback

LEVELS = ("1x1", "16x8")


@pytest.mark.skipif(
    shutil.which("wrk") is None, reason="wrk is not installed (apt-get install wrk)"
)
def test_peer_benchmark_measures_each_server(tmp_path):
    argv = ["--servers", "brum,naive,kserve", "--seconds", "1", "--warmup", "1"]
    argv += ["--levels", ",".join(LEVELS), "--texts", "64", "--output", str(tmp_path)]
    assert main(argv) == 0
    stem = tmp_path / "peers-minilm-l6-augmented-int8"
    result = json.loads(stem.with_suffix(".json").read_text())
    assert list(result["servers"]) == ["brum", "naive", "kserve"]
    for name, server in result["servers"].items():
        assert "skipped" not in server, (name, server.get("skipped"))
        assert server["verified"]["match"], (name, server["verified"])
        assert server["listening"] and only_loopback(set(server["listening"])), name
        assert server["ready_seconds"] > 0 and server["rss_after_bytes"] > 0
        assert list(server["levels"]) == list(LEVELS)
        for level in server["levels"].values():
            assert level["requests"] > 0 and level["errors"] == 0, (name, level)
            assert level["server_cpu_cores"] > 0
    assert result["raw"]["raw_batch32_texts_per_second"] > 0
    assert set(result["ratios"]) == set(LEVELS)
    assert {g["goal"].split(":")[0] for g in result["goals"]} >= {"1 conn", "16 conns x 8 texts"}
    assert "## brum against the best peer and raw" in stem.with_suffix(".md").read_text()
    assert stem.with_suffix(".png").stat().st_size > 10_000
