"""Prometheus metrics: histograms (they aggregate across replicas), base units, a variant label."""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
)
from prometheus_client.multiprocess import MultiProcessCollector

from app.core.batcher import BatchRun
from app.core.experiment import Experiment
from app.core.placement import Placement
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
BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 24, 32, 48, 64, 128)
BATCH_TOKEN_BUCKETS = (16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192)
CONFIDENCE_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)
# Series known in advance start at 0 when a variant or an experiment loads. Prometheus'
# increase() takes a series' first sample as its baseline, so a counter born at its first event
# loses that event on every replica: the first incorrect judgment, the first refusal, the first
# disagreement would be missing from exactly the early evidence a rollout decides on.
FEEDBACK_OUTCOMES = ("correct", "incorrect")
PREDICTION_STATUSES = ("200", "429", "500", "503")
REJECTION_REASONS = ("full", "timeout")
SHADOW_OUTCOMES = ("agree", "disagree", "shed", "error")

# The *_created series double the exposition and no dashboard uses them.
disable_created_metrics()


class Metrics:
    def __init__(self, cpu_hour_price: float = 0.0, currency: str = "USD") -> None:
        self.cpu_second_price = cpu_hour_price / 3600
        self.currency = currency
        self.registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)  # collections hold the event loop: app/heap.py
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
        self.queue_duration = Histogram(
            "brum_queue_duration_seconds",
            "Time a request waited in its variant's queue before its batch ran.",
            ["variant"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "brum_batch_size",
            "Texts per batch run by the model.",
            ["variant"],
            buckets=BATCH_SIZE_BUCKETS,
            registry=r,
        )
        self.batch_tokens = Histogram(
            "brum_batch_tokens",
            "Tokens per batch, padding included (texts x longest text).",
            ["variant"],
            buckets=BATCH_TOKEN_BUCKETS,
            registry=r,
        )
        self.queue_depth = Gauge(
            "brum_queue_depth",
            "Texts waiting in the variant's queue.",
            ["variant"],
            multiprocess_mode="livesum",
            registry=r,
        )
        self.batches_running = Gauge(
            "brum_batches_running",
            "Batches of the variant running or being cut from a take now (up to "
            "BRUM_INFERENCE_WORKERS side by side).",
            ["variant"],
            multiprocess_mode="livesum",
            registry=r,
        )
        self.queue_capacity = Gauge(
            "brum_queue_capacity",
            "Texts the variant's queue holds before refusing with 429.",
            ["variant"],
            multiprocess_mode="livesum",
            registry=r,
        )
        self.queue_rejections = Counter(
            "brum_queue_rejections",
            "Requests refused by backpressure: queue full (429) or queue timeout (503).",
            ["variant", "reason"],
            registry=r,
        )
        self.confidence = Histogram(
            "brum_prediction_confidence",
            "Top probability of each prediction.",
            ["variant"],
            buckets=CONFIDENCE_BUCKETS,
            registry=r,
        )
        self.shadow_requests = Counter(
            "brum_shadow_requests",
            "Requests also scored by the shadow variant: agree, disagree, shed (load), error.",
            ["variant", "shadow", "outcome"],
            registry=r,
        )
        self.feedback = Counter(
            "brum_feedback",
            "Predictions judged by POST /v1/feedback: correct or incorrect (online accuracy).",
            ["variant", "outcome"],
            registry=r,
        )
        self.cpu_seconds = Counter(
            "brum_inference_cpu_seconds",
            "CPU time spent running the variant's batches (each run's wall time times the CPU "
            "share of sampled runs).",
            ["variant"],
            registry=r,
        )
        self.cost = Counter(
            "brum_inference_cost",
            "Inference cost: CPU seconds times the configured price per CPU-hour.",
            ["variant", "currency"],
            registry=r,
        )
        self.experiment_weight = Gauge(
            "brum_experiment_weight",
            "Traffic weight of each arm of the running experiment.",
            ["experiment", "variant"],
            multiprocess_mode="livemax",
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
            multiprocess_mode="livemax",
            registry=r,
        )
        self.model_size = Gauge(
            "brum_model_size_bytes",
            "Size of the variant's model.onnx.",
            ["variant"],
            multiprocess_mode="livemax",
            registry=r,
        )
        self.model_parameters = Gauge(
            "brum_model_parameters",
            "Parameters of the variant.",
            ["variant"],
            multiprocess_mode="livemax",
            registry=r,
        )
        self.model_accuracy = Gauge(
            "brum_model_offline_accuracy",
            "Accuracy on the test split, each text served alone, from the card.",
            ["variant"],
            multiprocess_mode="livemax",
            registry=r,
        )
        self.model_macro_f1 = Gauge(
            "brum_model_offline_macro_f1",
            "F1 averaged over labels on the test split, each text served alone, from the card.",
            ["variant"],
            multiprocess_mode="livemax",
            registry=r,
        )
        self.variant_ready = Gauge(
            "brum_variant_ready",
            "1 once the variant is loaded and warmed up.",
            ["variant"],
            multiprocess_mode="livemin",
            registry=r,
        )
        self.ready = Gauge(
            "brum_ready", "1 once every variant is ready.", multiprocess_mode="livemin", registry=r
        )
        self.inference_plan = Gauge(
            "brum_inference_plan_info",
            "How the cores are used: threads per session, batches side by side, and whether "
            "the plan was configured, calibrated at start-up or the default. Always 1.",
            ["threads", "side_by_side", "source"],
            multiprocess_mode="liveall",
            registry=r,
        )
        self.inline_threads = Gauge(
            "brum_inline_session_threads",
            "Threads of the session a lone request on the only open connection runs on, on the "
            "event-loop thread; 0: lone requests go through the queue like any other.",
            ["variant"],
            multiprocess_mode="liveall",
            registry=r,
        )
        self.batch_size_limit = Gauge(
            "brum_batch_size_limit",
            "Texts per batch the batchers cut, at most: BRUM_MAX_BATCH_SIZE.",
            multiprocess_mode="livemax",
            registry=r,
        )
        self.batch_cost = Gauge(
            "brum_batch_cost_seconds",
            "What one run costs with the chosen plan, as the batchers cut batches by it: "
            "part=overhead per run, part=token per token of the padded batch. Measured at "
            "start-up; overhead 1, token 0 (always fill batches) when not measured.",
            ["part"],
            multiprocess_mode="liveall",
            registry=r,
        )
        self.calibration_throughput = Gauge(
            "brum_calibration_texts_per_second",
            "Start-up calibration: texts per second each candidate plan's measured cost predicts "
            "for a full batch of texts of typical lengths in flight.",
            ["threads", "side_by_side"],
            multiprocess_mode="liveall",
            registry=r,
        )
        self.calibration_lone = Gauge(
            "brum_calibration_lone_run_seconds",
            "Start-up calibration: one text through the model with each candidate plan.",
            ["threads", "side_by_side"],
            multiprocess_mode="liveall",
            registry=r,
        )
        self.experiment_info = Gauge(
            "brum_experiment_info",
            "The experiment this replica runs (hash of its content; source: file, admin or none): "
            "every replica shows the same hash once a change has reached it.",
            ["name", "hash", "source"],
            multiprocess_mode="livemax",
            registry=r,
        )
        self.experiment_sync_errors = Counter(
            "brum_experiment_sync_errors",
            "Syncs that kept the running experiment: the file or the override was invalid, or the "
            "shared store could not be read.",
            ["reason"],
            registry=r,
        )
        self.feedback_records_dropped = Counter(
            "brum_feedback_records_dropped",
            "Predictions not written to the shared store (it was down): feedback by request id "
            "alone will not find them; feedback tokens still work.",
            registry=r,
        )
        self.rescans = Counter(
            "brum_repository_rescans",
            "Repository rescans, by what changed: variants added, replaced, removed.",
            ["change"],
            registry=r,
        )
        self.startup_duration = Gauge(
            "brum_startup_duration_seconds",
            "Time from start-up to ready.",
            multiprocess_mode="livemax",
            registry=r,
        )

    def exposed(self) -> CollectorRegistry:
        """What /metrics shows: this process's registry, or, when several processes serve
        (app/supervisor.py), every process's series summed from their files (prometheus_client's
        multiprocess mode, which has no process_* or python_gc_* series)."""
        if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
            return self.registry
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        return registry

    def publish_card(self, variant: Variant) -> None:
        card = variant.card
        self.model_info.labels(variant.name, card.base.reference, card.quantization, card.task).set(
            1
        )
        self.model_size.labels(variant.name).set(variant.size_bytes)
        if card.metrics is not None:
            self.model_parameters.labels(variant.name).set(card.metrics.parameters)
            self.model_accuracy.labels(variant.name).set(card.metrics.accuracy)
            if card.metrics.macro_f1 is not None:
                self.model_macro_f1.labels(variant.name).set(card.metrics.macro_f1)
        self.variant_ready.labels(variant.name).set(1)
        for outcome in FEEDBACK_OUTCOMES:
            self.feedback.labels(variant.name, outcome)
        for status in PREDICTION_STATUSES:
            self.requests.labels(variant.name, status)
        # Zero series from start-up, so a rate() over them exists from the first request on.
        for histogram in (
            self.request_duration,
            self.inference_duration,
            self.queue_duration,
            self.batch_size,
            self.batch_tokens,
            self.confidence,
        ):
            histogram.labels(variant.name)
        for reason in REJECTION_REASONS:
            self.queue_rejections.labels(variant.name, reason)

    def publish_placement(self, placement: Placement) -> None:
        plan = placement.plan
        self.inference_plan.labels(str(plan.threads), str(plan.side_by_side), placement.source).set(
            1
        )
        self.batch_size_limit.set(placement.max_batch_size)
        self.batch_cost.labels("overhead").set(placement.cost.overhead)
        self.batch_cost.labels("token").set(placement.cost.per_token)
        for m in placement.measurements:
            labels = (str(m.plan.threads), str(m.plan.side_by_side))
            self.calibration_throughput.labels(*labels).set(m.texts_per_second)
            self.calibration_lone.labels(*labels).set(m.lone_seconds)

    def batch_observer(self, variant: str) -> Callable[[BatchRun], None]:
        """What records one batch of the variant, its series looked up once rather than per run
        (eight label lookups were 29 us of a lone request's 1.4 ms)."""
        duration = self.inference_duration.labels(variant)
        size = self.batch_size.labels(variant)
        padded = self.batch_tokens.labels(variant)
        texts = self.texts.labels(variant)
        tokens = self.tokens.labels(variant)
        truncated = self.truncated.labels(variant)
        cpu_seconds = self.cpu_seconds.labels(variant)
        cost = self.cost.labels(variant, self.currency)
        price = self.cpu_second_price

        def observe(run: BatchRun) -> None:
            duration.observe(run.seconds)
            size.observe(run.texts)
            padded.observe(run.padded_tokens)
            texts.inc(run.texts)
            tokens.inc(run.tokens)
            if run.truncated:
                truncated.inc(run.truncated)
            cpu_seconds.inc(run.cpu_seconds)
            cost.inc(run.cpu_seconds * price)

        return observe

    def publish_experiment(self, experiment: Experiment | None, source: str, hash_: str) -> None:
        _retire_all(self.experiment_weight)
        for arm in experiment.arms if experiment else []:
            self.experiment_weight.labels(experiment.name, arm.variant).set(arm.weight)
        if experiment is not None and experiment.shadow is not None:
            served = {arm.variant for arm in experiment.arms} | ({experiment.default} - {None})
            for variant in served - {experiment.shadow.variant}:
                for outcome in SHADOW_OUTCOMES:
                    self.shadow_requests.labels(variant, experiment.shadow.variant, outcome)
        _retire_all(self.experiment_info)
        self.experiment_info.labels(experiment.name if experiment else "", hash_, source).set(1)

    def forget_variant(self, variant: Variant) -> None:
        """A removed variant: not ready, and its card's series gone."""
        card = variant.card
        self.variant_ready.labels(variant.name).set(0)
        _retire(self.model_info, variant.name, card.base.reference, card.quantization, card.task)
        for gauge in (
            self.model_size,
            self.model_parameters,
            self.model_accuracy,
            self.model_macro_f1,
        ):
            _retire(gauge, variant.name)

    def publish_batcher(self, variant: str, capacity: int, inline_threads: int) -> None:
        self.queue_capacity.labels(variant).set(capacity)
        self.inline_threads.labels(variant).set(inline_threads)

    def queue_gauges(self, variant: str) -> tuple[Callable[[int], None], Callable[[int], None]]:
        """Setters of the variant's queue depth and batches running, for its batcher to call."""
        return self.queue_depth.labels(variant).set, self.batches_running.labels(variant).set

    def mark_ready(self, ready: bool, startup_seconds: float | None = None) -> None:
        if startup_seconds is not None:
            self.startup_duration.set(startup_seconds)
        self.ready.set(1 if ready else 0)

    def reject(self, variant: str, reason: str) -> None:
        """A request refused by the variant's queue: ``full`` or ``timeout``."""
        self.queue_rejections.labels(variant, reason).inc()

    def observe_scored(self, variant: str, queue_seconds: float, scores: list[float]) -> None:
        """One request's wait in the queue and the top score of each of its texts."""
        self.queue_duration.labels(variant).observe(queue_seconds)
        confidence = self.confidence.labels(variant)
        for score in scores:
            confidence.observe(score)

    def count_shadow(self, served: str, shadow: str, outcome: str) -> None:
        self.shadow_requests.labels(served, shadow, outcome).inc()

    def count_feedback(self, variant: str, correct: bool) -> None:
        self.feedback.labels(variant, "correct" if correct else "incorrect").inc()

    def count_dropped_predictions(self, records: int) -> None:
        """Predictions the shared store never got (see RedisLedger): their feedback will 404."""
        self.feedback_records_dropped.inc(records)

    def count_sync_error(self, reason: str) -> None:
        self.experiment_sync_errors.labels(reason).inc()

    def count_rescan(self, change: str, variants: int) -> None:
        self.rescans.labels(change).inc(variants)

    def observe_request(self, variant: str, status: int, seconds: float) -> None:
        self.requests.labels(variant, str(status)).inc()
        if variant != NO_VARIANT:
            self.request_duration.labels(variant).observe(seconds)


def _retire(gauge: Gauge, *labels: str) -> None:
    """Drop a series, at 0 first: with several processes (app/supervisor.py) prometheus_client
    leaves it in this process's file (and warns so), where 0 says what dropping it says."""
    gauge.labels(*labels).set(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        gauge.remove(*labels)


def _retire_all(gauge: Gauge) -> None:
    for metric in gauge.collect():
        for sample in metric.samples:
            gauge.labels(**sample.labels).set(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        gauge.clear()
