"""The engine: loads the registry in the background, reports readiness, runs predictions off the
event loop and records their metrics."""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor

from app.core.errors import NotReady, TooManyTexts
from app.core.experiment import EXPERIMENT_FILE, Experiment, load_experiment
from app.core.metrics import Metrics
from app.core.prediction import PredictionBatch, predict
from app.core.registry import Registry, Variant, choose_default, load_variant, read_cards, warm_up
from app.runtime.session import SessionConfig
from app.settings import Settings

logger = logging.getLogger("brum.engine")


def find_experiment(settings: Settings) -> Experiment | None:
    path = settings.experiment or settings.model_repository / EXPERIMENT_FILE
    if settings.experiment is None and not path.is_file():
        return None
    return load_experiment(path)


class Engine:
    def __init__(self, settings: Settings, metrics: Metrics | None = None) -> None:
        self.settings = settings
        self.metrics = metrics or Metrics()
        self.registry: Registry | None = None
        self.started_at = time.perf_counter()
        self.executor = ThreadPoolExecutor(
            settings.inference_workers, thread_name_prefix="brum-infer"
        )
        self.session_config = SessionConfig(
            intra_op_threads=settings.intra_op_threads,
            inter_op_threads=settings.inter_op_threads,
            graph_optimization_level=settings.graph_optimization_level,
        )
        # Read and verify the cards now: a broken repository should stop start-up with its reason.
        self.cards = read_cards(settings.model_repository, settings.verify_checksums)
        self.variant_names = frozenset(card.name for _, card in self.cards)
        self.experiment = find_experiment(settings)
        if self.experiment is not None:
            self.experiment.check_variants(self.variant_names)
        requested = settings.default_variant or (self.experiment and self.experiment.default)
        self.default_variant = choose_default(sorted(self.variant_names), requested or None)

    @property
    def ready(self) -> bool:
        return self.registry is not None

    def load(self) -> Registry:
        """Create every session and warm it up; only then does the engine become ready."""
        variants: dict[str, Variant] = {}
        for folder, card in self.cards:
            variant = load_variant(folder, card, self.session_config)
            seconds = warm_up(variant, self.settings.warmup_iterations)
            self.metrics.publish_card(variant)
            logger.info("variant %s loaded and warmed up in %.3f s", card.name, seconds)
            variants[card.name] = variant
        self.registry = Registry(variants, self.default_variant)
        elapsed = time.perf_counter() - self.started_at
        self.metrics.startup_duration.set(elapsed)
        self.metrics.ready.set(1)
        logger.info("ready in %.3f s with variants %s", elapsed, ", ".join(sorted(variants)))
        return self.registry

    async def load_in_background(self) -> Registry:
        return await asyncio.get_running_loop().run_in_executor(self.executor, self.load)

    def variant(self, name: str | None) -> Variant:
        if self.registry is None:
            raise NotReady()
        return self.registry.get(name)

    def route(self, sticky_key: str | None) -> Variant:
        """The variant for a request that names none: its experiment arm, else the default."""
        if self.experiment is None:
            return self.variant(None)
        return self.variant(self.experiment.assign(sticky_key))

    async def predict(
        self, variant: Variant, texts: list[str], top_k: int | None
    ) -> PredictionBatch:
        limit = self.settings.max_texts_per_request
        if len(texts) > limit:
            raise TooManyTexts(f"{len(texts)} texts in one request; the limit is {limit}")
        k = top_k or self.settings.default_top_k
        loop = asyncio.get_running_loop()
        batch = await loop.run_in_executor(self.executor, predict, variant, texts, k)
        truncated = sum(p.truncated for p in batch.predictions)
        self.metrics.observe_batch(
            variant.name, len(texts), batch.tokens, truncated, batch.inference_seconds
        )
        return batch

    def close(self) -> None:
        self.executor.shutdown(wait=True, cancel_futures=True)
