"""Service configuration: one pydantic-settings object, read from ``BRUM_*`` variables."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

SHIPPED_REPOSITORY = Path(__file__).resolve().parents[1] / "models" / "repository"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BRUM_", env_file=None, extra="ignore")

    model_repository: Path = Field(SHIPPED_REPOSITORY, description="folder of variant folders")
    default_variant: str | None = Field(
        None,
        description="variant for /v1/predict when no experiment runs; default: the "
        "experiment's default, else first by name",
    )
    experiment: Path | None = Field(
        None,
        description="experiment YAML; default: experiment.yaml in the model repository, if any",
    )
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    intra_op_threads: int | None = Field(
        None,
        ge=0,
        description="onnxruntime threads per session; 0 = one per core; unset: chosen at start-up",
    )
    inter_op_threads: int = Field(1, ge=1)
    graph_optimization_level: Literal["disable", "basic", "extended", "all"] = "all"
    processes: int = Field(
        1,
        ge=1,
        description="serving processes sharing the port, each on its share of the cores: the "
        'Python of that many requests runs at once (README, "Several processes in one container")',
    )
    inference_workers: int = Field(
        0,
        ge=0,
        description="batches run side by side per variant, each on its own thread; 0 = chosen "
        "at start-up (one per core with one-thread sessions, or one on all cores)",
    )
    calibrate: bool = Field(
        True,
        description="with threads and workers unset, measure both ways of using the cores at "
        "start-up and keep the faster; off: one-thread sessions, one batch per core",
    )
    inline_max_ms: float = Field(
        10.0,
        ge=0,
        description="a lone request runs on the event-loop thread, without a hand-off to an "
        "inference thread, if its variant answers one text within this at warm-up; 0 = never",
    )
    warmup_iterations: int = Field(3, ge=1, description="warm-up batches per variant before ready")
    verify_checksums: bool = Field(
        True, description="check model files against their cards at start-up"
    )

    max_batch_size: int = Field(32, ge=1, description="texts per batch run by the model")
    max_batch_tokens: int = Field(
        4096, ge=1, description="tokens per batch, padding included (texts x longest)"
    )
    max_wait_ms: float = Field(
        2.0, ge=0, description="longest wait for more requests while they keep arriving"
    )
    max_queue_texts: int = Field(
        512, ge=1, description="texts waiting per variant before requests get 429"
    )
    queue_timeout_seconds: float = Field(
        2.0, gt=0, description="longest wait in the queue before a request gets 503"
    )
    cpu_hour_price: float = Field(
        0.04, ge=0, description="price of one CPU-hour, for the cost metric"
    )
    currency: str = Field("USD", pattern=r"^[A-Z]{3}$")
    feedback_capacity: int = Field(
        100_000, ge=1, description="recent requests remembered for POST /v1/feedback"
    )
    feedback_key: SecretStr | None = Field(
        None,
        description="key shared by every replica (a Secret); set: each answer carries a signed "
        "feedback token that any replica can judge",
    )
    feedback_ttl_seconds: int = Field(
        86_400, ge=1, description="how long after a prediction its feedback is accepted"
    )
    redis_url: SecretStr | None = Field(
        None,
        description="shared store of the replicas (redis://host:6379/0): judgments counted once "
        "across replicas, predictions by request id, the admin API's experiment, rescans; unset: "
        "this process only",
    )
    sync_seconds: float = Field(
        1.0,
        ge=0,
        description="how often to re-read the experiment (file and shared store) and check for "
        "rescans asked of any replica; 0 = never",
    )
    admin_token: SecretStr | None = Field(
        None, description="bearer token of the /admin API; unset: the admin API is off"
    )
    drain_delay_seconds: float = Field(
        0.0, ge=0, description="after SIGTERM: not ready but still serving, before draining"
    )
    drain_seconds: float = Field(
        10.0, ge=0, description="after SIGTERM: longest wait for accepted requests to finish"
    )
    log_format: Literal["text", "json"] = "text"

    max_texts_per_request: int = Field(64, ge=1)
    max_body_bytes: int = Field(1 << 20, ge=1024)
    default_top_k: int = Field(5, ge=1)

    @model_validator(mode="after")
    def _one_thread_per_concurrent_batch(self) -> Settings:
        if self.inference_workers > 1 and self.intra_op_threads not in (None, 1):
            raise ValueError(
                "BRUM_INFERENCE_WORKERS > 1 runs batches side by side, one thread each: "
                "set BRUM_INTRA_OP_THREADS=1"
            )
        return self

    @model_validator(mode="after")
    def _processes_share_what_a_request_needs(self) -> Settings:
        if self.processes > 1 and self.admin_token is not None and self.redis_url is None:
            raise ValueError(
                "BRUM_PROCESSES > 1 with BRUM_ADMIN_TOKEN needs BRUM_REDIS_URL: a change made "
                "through the admin API reaches the other processes through the shared store"
            )
        return self
