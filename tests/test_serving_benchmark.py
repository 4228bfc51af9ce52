"""The serving benchmark runs end to end on the shipped repository (short phases, no naive
server) and reports every figure the issue asks for."""

from __future__ import annotations

import json
import shutil

import pytest

from loadtests import serving_benchmark


@pytest.mark.skipif(
    shutil.which("wrk") is None, reason="wrk is not installed (apt-get install wrk)"
)
def test_serving_benchmark_reports_every_figure(tmp_path):
    argv = ["--seconds", "1", "--texts", "64", "--teacher", str(tmp_path / "no-teacher")]
    assert serving_benchmark.main([*argv, "--output", str(tmp_path)]) == 0
    (result_file,) = tmp_path.glob("serving-*.json")
    result = json.loads(result_file.read_text())
    assert result["naive"] is None and result["over_naive"] is None
    for phase in ("low_load", "saturated_1_text", "saturated_8_texts"):
        assert result[phase]["requests"] > 0 and result[phase]["errors"] == 0
    assert result["raw_batch32_texts_per_second"] > 0
    assert result["saturated_1_text_mean_batch_size"] >= 1
    assert result["saturated_over_raw_1_text"] > 0 and result["saturated_over_raw_8_texts"] > 0
    table = result_file.with_suffix(".md").read_text()
    assert "overhead at low load over raw session.run" in table
