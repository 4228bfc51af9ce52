"""The engine: loads the registry in the background, batches each variant's requests, routes
requests through the experiment, scores the shadow, remembers predictions for feedback, and
records the metrics that compare variants."""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from app.core.batcher import Batcher, BatchPolicy
from app.core.card import VariantCard
from app.core.errors import NotReady, QueueFull, QueueTimeout, TooManyTexts
from app.core.experiment import EXPERIMENT_FILE, Experiment, load_experiment
from app.core.feedback import FeedbackStore, Judgement
from app.core.metrics import Metrics
from app.core.prediction import PredictionBatch, predictions_from_logits
from app.core.registry import Registry, Variant, choose_default, load_variant, read_cards, warm_up
from app.runtime.session import SessionConfig
from app.settings import Settings

logger = logging.getLogger("brum.engine")


def find_experiment(settings: Settings) -> Experiment | None:
    path = settings.experiment or settings.model_repository / EXPERIMENT_FILE
    if settings.experiment is None and not path.is_file():
        return None
    return load_experiment(path)


def batch_policy(settings: Settings) -> BatchPolicy:
    return BatchPolicy(
        max_batch_size=settings.max_batch_size,
        max_batch_tokens=settings.max_batch_tokens,
        max_wait=settings.max_wait_ms / 1000,
        max_queue_texts=settings.max_queue_texts,
        queue_timeout=settings.queue_timeout_seconds,
        max_concurrent_batches=settings.concurrent_batches,
    )


class Engine:
    def __init__(self, settings: Settings, metrics: Metrics | None = None) -> None:
        self.settings = settings
        self.metrics = metrics or Metrics(settings.cpu_hour_price, settings.currency)
        self.registry: Registry | None = None
        self.batchers: dict[str, Batcher] = {}
        self.draining = False
        self.started_at = time.perf_counter()
        # Either one batch at a time spread over the cores by onnxruntime, or several batches
        # side by side on one thread each (BRUM_INFERENCE_WORKERS).
        self.executor = ThreadPoolExecutor(
            settings.concurrent_batches, thread_name_prefix="brum-infer"
        )
        self.policy = batch_policy(settings)
        self.session_config = SessionConfig(
            intra_op_threads=settings.intra_op_threads,
            inter_op_threads=settings.inter_op_threads,
            graph_optimization_level=settings.graph_optimization_level,
        )
        self.feedback = FeedbackStore(settings.feedback_capacity)
        self._shadow_tasks: set[asyncio.Task[None]] = set()
        # Read and verify the cards now: a broken repository should stop start-up with its reason.
        self.cards: list[tuple[Path, VariantCard]] = read_cards(
            settings.model_repository, settings.verify_checksums
        )
        # Kept beside the cards, not derived per call: routes and metrics look it up per request.
        self.variant_names = frozenset(card.name for _, card in self.cards)
        self.experiment = find_experiment(settings)
        if self.experiment is not None:
            self.experiment.check_variants(self.variant_names)
        requested = settings.default_variant or (self.experiment and self.experiment.default)
        self.default_variant = choose_default(sorted(self.variant_names), requested or None)

    @property
    def ready(self) -> bool:
        return self.registry is not None and not self.draining

    def _load(self, cards: list[tuple[Path, VariantCard]]) -> dict[str, Variant]:
        """Create each session and warm it up. Blocking: runs on the executor."""
        variants: dict[str, Variant] = {}
        for folder, card in cards:
            variant = load_variant(folder, card, self.session_config)
            seconds = warm_up(variant, self.settings.warmup_iterations)
            logger.info("variant %s loaded and warmed up in %.3f s", card.name, seconds)
            variants[card.name] = variant
        return variants

    def _start_batchers(self, variants: dict[str, Variant]) -> None:
        for name, variant in variants.items():
            batcher = Batcher(
                variant.classifier,
                self.executor,
                self.policy,
                on_batch=lambda run, name=name: self.metrics.observe_batch(name, run),
                on_depth=self.metrics.queue_depth.labels(name).set,
                on_running=self.metrics.batches_running.labels(name).set,
            )
            batcher.start()
            self.batchers[name] = batcher
            self.metrics.queue_capacity.labels(name).set(self.policy.max_queue_texts)
            self.metrics.publish_card(variant)

    async def load(self) -> Registry:
        """Load every variant off the event loop; the engine is ready only after warm-up."""
        loop = asyncio.get_running_loop()
        variants = await loop.run_in_executor(self.executor, self._load, self.cards)
        self._start_batchers(variants)
        self.registry = Registry(variants, self.default_variant)
        self.metrics.publish_experiment(self.experiment)
        elapsed = time.perf_counter() - self.started_at
        self.metrics.startup_duration.set(elapsed)
        self.metrics.ready.set(1)
        logger.info("ready in %.3f s with variants %s", elapsed, ", ".join(sorted(variants)))
        return self.registry

    def variant(self, name: str | None) -> Variant:
        if self.registry is None:
            raise NotReady()
        return self.registry.get(name)

    def route(self, sticky_key: str | None) -> Variant:
        """The variant for a request that names none: its experiment arm, else the default."""
        experiment = self.experiment
        if experiment is None:
            return self.variant(None)
        return self.variant(experiment.assign(sticky_key))

    async def predict(
        self,
        variant: Variant,
        texts: list[str],
        top_k: int | None,
        request_id: str | None = None,
        routed: bool = False,
    ) -> PredictionBatch:
        """Classify through the variant's batcher. With ``request_id`` the answer is remembered
        for feedback; a ``routed`` request may also be scored by the experiment's shadow."""
        limit = self.settings.max_texts_per_request
        if len(texts) > limit:
            raise TooManyTexts(f"{len(texts)} texts in one request; the limit is {limit}")
        batch = await self._score(variant, texts, top_k or self.settings.default_top_k)
        if request_id is not None:
            self.feedback.remember(request_id, variant.name, batch.labels, variant.label_set)
        experiment = self.experiment
        if routed and experiment is not None and experiment.shadows():
            self._shadow(experiment, variant, texts, batch.labels)
        return batch

    async def _score(self, variant: Variant, texts: list[str], top_k: int) -> PredictionBatch:
        encodings = variant.classifier.tokenize(texts)
        try:
            scored = await self.batchers[variant.name].submit(encodings)
        except QueueFull:
            self.metrics.queue_rejections.labels(variant.name, "full").inc()
            raise
        except QueueTimeout:
            self.metrics.queue_rejections.labels(variant.name, "timeout").inc()
            raise
        self.metrics.queue_duration.labels(variant.name).observe(scored.queue_seconds)
        predictions = predictions_from_logits(
            variant.card, scored.logits, scored.token_counts, scored.truncated, top_k
        )
        confidence = self.metrics.confidence.labels(variant.name)
        for prediction in predictions:
            confidence.observe(prediction.top_k[0].score)
        return PredictionBatch(
            variant.name,
            predictions,
            scored.logits,
            scored.queue_seconds,
            scored.inference_seconds,
        )

    def _shadow(
        self, experiment: Experiment, served: Variant, texts: list[str], labels: list[str]
    ) -> None:
        assert experiment.shadow is not None
        name = experiment.shadow.variant
        if name == served.name:
            return
        counter = self.metrics.shadow_requests
        # Shed first: the shadow runs only while no queue has texts waiting for the model.
        if any(b.queued_texts for b in self.batchers.values()) or self._shadow_tasks:
            counter.labels(served.name, name, "shed").inc()
            return

        async def score() -> None:
            try:
                shadow = await self._score(self.variant(name), texts, 1)
            except Exception:
                logger.exception("shadow variant %s failed", name)
                counter.labels(served.name, name, "error").inc()
                return
            agree = shadow.labels == labels
            counter.labels(served.name, name, "agree" if agree else "disagree").inc()

        task = asyncio.get_running_loop().create_task(score())
        self._shadow_tasks.add(task)
        task.add_done_callback(self._shadow_tasks.discard)

    def judge(self, request_id: str, label: str, index: int) -> Judgement:
        judgement = self.feedback.judge(request_id, label, index)
        outcome = "correct" if judgement.correct else "incorrect"
        self.metrics.feedback.labels(judgement.variant, outcome).inc()
        return judgement

    def replace_experiment(self, experiment: Experiment | None) -> None:
        """Swap the experiment in one assignment: a request sees the old one or the new one."""
        if experiment is not None:
            experiment.check_variants(self.variant_names)
        old, self.experiment = self.experiment, experiment
        self.metrics.publish_experiment(experiment)
        logger.info(
            "experiment replaced: %s -> %s",
            old.model_dump_json() if old else None,
            experiment.model_dump_json() if experiment else None,
        )

    async def rescan(self) -> list[str]:
        """Load the repository's new variants, warmed up before they can take traffic."""
        if self.registry is None:
            raise NotReady()
        loop = asyncio.get_running_loop()
        verify = self.settings.verify_checksums
        cards = await loop.run_in_executor(
            self.executor, read_cards, self.settings.model_repository, verify
        )
        new = [(folder, card) for folder, card in cards if card.name not in self.variant_names]
        variants = await loop.run_in_executor(self.executor, self._load, new)
        self._start_batchers(variants)
        self.cards = self.cards + new
        self.variant_names = self.variant_names | {card.name for _, card in new}
        self.registry = Registry({**self.registry.variants, **variants}, self.default_variant)
        logger.info("repository rescanned: added %s", sorted(variants) or "nothing")
        return sorted(variants)

    def drain(self) -> None:
        """Stop being ready; requests already accepted still finish."""
        self.draining = True
        self.metrics.ready.set(0)
        logger.info("draining: no longer ready")

    async def close(self) -> None:
        for batcher in self.batchers.values():
            await batcher.stop()
        self.executor.shutdown(wait=True, cancel_futures=True)
