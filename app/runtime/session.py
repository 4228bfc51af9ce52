"""onnxruntime inference sessions, configured from settings rather than left to defaults."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import onnxruntime as ort

from app.runtime.cores import available_cores
from app.runtime.graph import UNFUSED_OPTIMIZERS, session_model

GRAPH_OPTIMIZATION_LEVELS = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}


@dataclass(frozen=True)
class SessionConfig:
    intra_op_threads: int = 0  # 0: one per available core
    inter_op_threads: int = 1
    graph_optimization_level: str = "all"
    # Cores for the session's helper threads, one each (``intra_op_threads`` - 1 of them); empty:
    # they run wherever the process may.
    helper_cores: tuple[int, ...] = ()


def create_session(model_path: Path, config: SessionConfig) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = config.intra_op_threads or available_cores()
    options.inter_op_num_threads = config.inter_op_threads
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = GRAPH_OPTIMIZATION_LEVELS[config.graph_optimization_level]
    # The pool's threads spin while a run hands them one small kernel after another (waking a
    # blocked thread for each costs more than the kernel on a VM), and stop spinning when the run
    # ends: a server mostly waits, and idle spinning would burn its cores and its CPU quota.
    options.add_session_config_entry("session.intra_op.allow_spinning", "1")
    options.add_session_config_entry("session.force_spinning_stop", "1")
    if config.helper_cores:  # onnxruntime numbers logical processors from 1
        affinities = ";".join(str(core + 1) for core in config.helper_cores)
        options.add_session_config_entry("session.intra_op_thread_affinities", affinities)
    with session_model(model_path) as model:
        return ort.InferenceSession(
            model,
            options,
            providers=["CPUExecutionProvider"],
            disabled_optimizers=list(UNFUSED_OPTIMIZERS),
        )
