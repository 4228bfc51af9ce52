"""Prometheus metrics: histograms (they aggregate across replicas), base units, a variant label."""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
)

from app.core.registry import Variant

# 0.5 ms to 1 s and a little beyond: int8 batch-1 inference sits around 1-2 ms on a CPU core.
LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0015,
    0.002,
    0.003,
    0.004,
    0.005,
    0.0075,
    0.01,
    0.015,
    0.02,
    0.03,
    0.05,
    0.075,
    0.1,
    0.15,
    0.25,
    0.5,
    1.0,
    2.5,
)
NO_VARIANT = "none"

# The *_created series double the exposition and no dashboard uses them.
disable_created_metrics()


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        r = self.registry
        self.requests = Counter(
            "brum_requests",
            "Prediction requests by variant and HTTP status.",
            ["variant", "status"],
            registry=r,
        )
        self.request_duration = Histogram(
            "brum_request_duration_seconds",
            "End-to-end time of a prediction request inside the service.",
            ["variant"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.inference_duration = Histogram(
            "brum_inference_duration_seconds",
            "Time inside onnxruntime's session.run for one batch.",
            ["variant"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.texts = Counter("brum_texts", "Texts classified.", ["variant"], registry=r)
        self.tokens = Counter(
            "brum_tokens", "Tokens processed (excluding padding).", ["variant"], registry=r
        )
        self.truncated = Counter(
            "brum_truncated_texts",
            "Texts truncated to the model's maximum length.",
            ["variant"],
            registry=r,
        )
        self.model_info = Gauge(
            "brum_model_info",
            "Variant card: always 1, facts in labels.",
            ["variant", "base", "quantization", "task"],
            registry=r,
        )
        self.model_size = Gauge(
            "brum_model_size_bytes", "Size of the variant's model.onnx.", ["variant"], registry=r
        )
        self.model_parameters = Gauge(
            "brum_model_parameters", "Parameters of the variant.", ["variant"], registry=r
        )
        self.model_accuracy = Gauge(
            "brum_model_offline_accuracy",
            "Accuracy on the test split, from the card.",
            ["variant"],
            registry=r,
        )
        self.variant_ready = Gauge(
            "brum_variant_ready",
            "1 once the variant is loaded and warmed up.",
            ["variant"],
            registry=r,
        )
        self.ready = Gauge("brum_ready", "1 once every variant is ready.", registry=r)
        self.startup_duration = Gauge(
            "brum_startup_duration_seconds", "Time from start-up to ready.", registry=r
        )

    def publish_card(self, variant: Variant) -> None:
        card = variant.card
        self.model_info.labels(variant.name, card.base.reference, card.quantization, card.task).set(
            1
        )
        self.model_size.labels(variant.name).set(variant.size_bytes)
        if card.metrics is not None:
            self.model_parameters.labels(variant.name).set(card.metrics.parameters)
            self.model_accuracy.labels(variant.name).set(card.metrics.accuracy)
        self.variant_ready.labels(variant.name).set(1)

    def observe_batch(
        self, variant: str, texts: int, tokens: int, truncated: int, seconds: float
    ) -> None:
        self.inference_duration.labels(variant).observe(seconds)
        self.texts.labels(variant).inc(texts)
        self.tokens.labels(variant).inc(tokens)
        if truncated:
            self.truncated.labels(variant).inc(truncated)

    def observe_request(self, variant: str, status: int, seconds: float) -> None:
        self.requests.labels(variant, str(status)).inc()
        if variant != NO_VARIANT:
            self.request_duration.labels(variant).observe(seconds)
