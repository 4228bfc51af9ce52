"""Service configuration: one pydantic-settings object, read from ``BRUM_*`` variables."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

SHIPPED_REPOSITORY = Path(__file__).resolve().parents[1] / "models" / "repository"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BRUM_", env_file=None, extra="ignore")

    model_repository: Path = Field(SHIPPED_REPOSITORY, description="folder of variant folders")
    default_variant: str | None = Field(
        None, description="variant for /v1/predict; default: first by name"
    )
    experiment: Path | None = Field(
        None,
        description="experiment YAML; default: experiment.yaml in the model repository, if any",
    )
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    intra_op_threads: int = Field(
        0, ge=0, description="onnxruntime threads per session; 0 = one per core"
    )
    inter_op_threads: int = Field(1, ge=1)
    graph_optimization_level: Literal["disable", "basic", "extended", "all"] = "all"
    inference_workers: int = Field(
        1, ge=1, description="threads running sessions off the event loop"
    )
    warmup_iterations: int = Field(3, ge=1, description="warm-up batches per variant before ready")
    verify_checksums: bool = Field(
        True, description="check model files against their cards at start-up"
    )

    max_texts_per_request: int = Field(64, ge=1)
    max_body_bytes: int = Field(1 << 20, ge=1024)
    default_top_k: int = Field(5, ge=1)
