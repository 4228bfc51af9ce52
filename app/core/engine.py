"""The engine: loads the registry in the background, batches each variant's requests, routes
requests through the experiment, scores the shadow, judges feedback, records the metrics that
compare variants, and follows what the replicas share (the experiment, repository rescans)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from app.core.batcher import Batcher, BatchPolicy
from app.core.card import MODEL_FILE, TOKENIZER_FILE, VariantCard
from app.core.coordination import (
    Coordination,
    CoordinationUnavailable,
    LocalCoordination,
    RedisCoordination,
)
from app.core.errors import (
    BrumError,
    NotReady,
    QueueFull,
    QueueTimeout,
    TooManyTexts,
    UnknownVariant,
)
from app.core.experiment import EXPERIMENT_FILE, Experiment, ExperimentError, load_experiment
from app.core.experiment_source import ExperimentSource, experiment_hash
from app.core.feedback import (
    AlreadyJudged,
    FeedbackError,
    Judgement,
    Ledger,
    MemoryLedger,
    RedisLedger,
    Served,
    TokenSigner,
    UnknownRequest,
)
from app.core.lone import LoneRoute
from app.core.metrics import Metrics
from app.core.placement import Placement, place
from app.core.prediction import PredictionBatch, predictions_from_ranking
from app.core.registry import (
    WARMUP_TEXTS,
    Registry,
    Variant,
    choose_default,
    fingerprint,
    load_variant,
    read_cards,
    warm_up,
)
from app.core.store import connect
from app.core.workers import InferenceWorkers
from app.heap import settle
from app.runtime.classifier import OnnxClassifier, load_classifier
from app.runtime.cores import available_cores, cpu_quota
from app.runtime.session import SessionConfig
from app.runtime.tokenizer import load_tokenizer
from app.settings import Settings
from app.siblings import Share

logger = logging.getLogger("brum.engine")


def experiment_path(settings: Settings) -> Path:
    return settings.experiment or settings.model_repository / EXPERIMENT_FILE


def find_experiment(settings: Settings) -> Experiment | None:
    path = experiment_path(settings)
    if settings.experiment is None and not path.is_file():
        return None
    return load_experiment(path)


@dataclass(frozen=True)
class Resolved:
    variant: Variant
    experiment: str | None  # the experiment that chose the variant, if one did


@dataclass(frozen=True)
class Rescan:
    added: list[str]
    replaced: list[str]
    removed: list[str]
    kept: dict[str, str]  # removed from the repository but still needed: why


def batch_policy(settings: Settings, placement: Placement) -> BatchPolicy:
    plan = placement.plan
    return BatchPolicy(
        max_batch_size=placement.max_batch_size,
        max_batch_tokens=settings.max_batch_tokens,
        max_wait=settings.max_wait_ms / 1000,
        max_queue_texts=settings.max_queue_texts,
        queue_timeout=settings.queue_timeout_seconds,
        threads_per_batch=plan.threads,
        cost=placement.cost,
        oldest_first=plan.threads == plan.side_by_side == 1,  # one core
    )


def lone_run_seconds(classifier: OnnxClassifier, runs: int = 5) -> float:
    """One text through the model, the fastest of a few runs (the least disturbed, and past
    the first run's allocations): whether a lone request may run inline."""
    return min(classifier.classify(WARMUP_TEXTS[1:]).inference_seconds for _ in range(runs))


class Engine:
    def __init__(
        self, settings: Settings, metrics: Metrics | None = None, share: Share | None = None
    ) -> None:
        self.settings = settings
        # This process's part of the machine, when it is one of several (app/siblings.py).
        self.share = share
        self.metrics = metrics or Metrics(settings.cpu_hour_price, settings.currency)
        self.registry: Registry | None = None
        # By variant object, not name: a request that holds a variant being replaced is served
        # by the batcher (and model) it was routed to.
        self.batchers: dict[Variant, Batcher] = {}
        self.draining = False
        # Set last in load(): the registry exists before the first experiment sync has run.
        self.loaded = False
        self.started_at = time.perf_counter()
        # Set by load(), once the plan for the cores is known (configured or measured).
        self.placement: Placement | None = None
        self.workers: InferenceWorkers | None = None
        self.policy: BatchPolicy | None = None
        # Open HTTP connections, set by the server that runs the app (see Batcher, "lone").
        self.connections: Callable[[], int] | None = None
        self.store = connect(settings.redis_url) if settings.redis_url else None
        self.ledger: Ledger = (
            RedisLedger(
                self.store, settings.feedback_ttl_seconds, self.metrics.count_dropped_predictions
            )
            if self.store is not None
            else MemoryLedger(settings.feedback_capacity)
        )
        key = settings.feedback_key
        self.signer = (
            TokenSigner(key.get_secret_value().encode(), settings.feedback_ttl_seconds)
            if key
            else None
        )
        # A supervisor's child is told once, by the supervisor, in the words of processes.
        if self.signer is not None and self.store is None and share is None:
            logger.warning(
                "BRUM_FEEDBACK_KEY without BRUM_REDIS_URL: any replica judges a token, but only "
                "this one knows what it judged; with several replicas, share a store"
            )
        self.coordination: Coordination = (
            RedisCoordination(self.store) if self.store is not None else LocalCoordination()
        )
        self.experiment_source = ExperimentSource(
            experiment_path(settings), settings.experiment is not None, self.coordination
        )
        self._rescans_seen = 0
        self._rescan_lock = asyncio.Lock()
        self._sync_error: str | None = None
        self._background: set[asyncio.Task[None]] = set()
        self._follower: asyncio.Task[None] | None = None
        self._shadow_tasks: set[asyncio.Task[None]] = set()
        # Read and verify the cards now: a broken repository should stop start-up with its reason.
        self.cards: list[tuple[Path, VariantCard]] = read_cards(
            settings.model_repository, settings.verify_checksums
        )
        # Kept beside the cards, not derived per call: routes and metrics look it up per request.
        self.variant_names = frozenset(card.name for _, card in self.cards)
        self.experiment = find_experiment(settings)
        self.experiment_origin = "file" if self.experiment else "none"
        if self.experiment is not None:
            self.experiment.check_variants(self.variant_names)
        requested = settings.default_variant or (self.experiment and self.experiment.default)
        self.default_variant = choose_default(sorted(self.variant_names), requested or None)

    @property
    def ready(self) -> bool:
        """Ready to take traffic: this process, and every process beside it (app/siblings.py)."""
        mine = self.loaded and not self.draining
        return mine and (self.share is None or self.share.readiness.all_ready())

    def _place(self) -> Placement:
        """The plan for the cores, measured on the default variant's model if not configured.
        Blocking: runs off the event loop."""
        folder, card = next((f, c) for f, c in self.cards if c.name == self.default_variant)
        tokenizer = load_tokenizer(folder / TOKENIZER_FILE, card.max_length)
        cores, quota = available_cores(), cpu_quota()
        return place(self.settings, folder / MODEL_FILE, tokenizer, cores, quota)

    def _session_config(self, threads: int, helper_cores: tuple[int, ...] = ()) -> SessionConfig:
        return SessionConfig(
            intra_op_threads=threads,
            inter_op_threads=self.settings.inter_op_threads,
            graph_optimization_level=self.settings.graph_optimization_level,
            helper_cores=helper_cores,
        )

    def _lone_session(
        self, folder: Path, variant: Variant, threads: int, helper_cores: tuple[int, ...] = ()
    ) -> OnnxClassifier:
        """The variant's own session if it has ``threads`` (and no ``helper_cores``), else a
        new one, warmed up."""
        assert self.placement is not None
        if threads == self.placement.plan.threads and not helper_cores:
            return variant.classifier
        card = variant.card
        config = self._session_config(threads, helper_cores)
        model, tokenizer = folder / MODEL_FILE, folder / TOKENIZER_FILE
        session = load_classifier(model, tokenizer, card.max_length, config)
        warm_up(Variant(card.name, card, session, folder), self.settings.warmup_iterations)
        return session

    def _lone_route(self, folder: Path, variant: Variant) -> LoneRoute[OnnxClassifier] | None:
        """What runs the variant's lone texts on the event loop: the session calibration found
        fastest for one text (its own, or with sessions of fewer threads side by side, one with
        more), and the other candidate, which served lone texts may prove faster; None if a lone
        text takes longer than BRUM_INLINE_MAX_MS. In one of several processes, first a session
        on every core of the machine, which runs lone texts while the others have no connection
        (app/siblings.py)."""
        assert self.placement is not None
        if self.settings.inline_max_ms == 0:
            return None
        first, *others = self.placement.lone_candidates
        chosen = self._lone_session(folder, variant, first)
        lone = lone_run_seconds(chosen)
        inline = lone * 1000 <= self.settings.inline_max_ms
        logger.info(
            "variant %s: one text in %.3f ms on %s; lone requests run %s",
            variant.name,
            lone * 1000,
            "its session" if chosen is variant.classifier else f"a session of {first} threads",
            "inline" if inline else "through the queue",
        )
        if not inline:
            return None
        sessions = [chosen, *(self._lone_session(folder, variant, t) for t in others)]
        share = self.share
        if share is None or len(share.machine) == len(share.cores):
            return LoneRoute(sessions, self._lone_switch_observer(variant.name, sessions))
        # Not calibrated: the other processes calibrate on their cores at the same time. The
        # duels judge it against the process's own choice on the lone texts served.
        machine = self._lone_session(folder, variant, len(share.machine), share.helper_cores)
        sessions.insert(0, machine)
        logger.info(
            "variant %s: lone texts run on all %d cores while no other process has a connection",
            variant.name,
            len(share.machine),
        )
        return LoneRoute(sessions, self._lone_switch_observer(variant.name, sessions), confined=1)

    def _lone_switch_observer(
        self, name: str, sessions: list[OnnxClassifier]
    ) -> Callable[[int, list[float]], None]:
        def switched(index: int, medians: list[float]) -> None:
            logger.info(
                "variant %s: lone texts now run on the session of %d threads: lone texts served "
                "took a median %s ms on sessions of %s threads",
                name,
                sessions[index].threads,
                " / ".join(f"{m * 1000:.3f}" for m in medians),
                " / ".join(str(s.threads) for s in sessions),
            )
            self.metrics.inline_threads.labels(name).set(sessions[index].threads)

        return switched

    def _load(
        self, cards: list[tuple[Path, VariantCard]]
    ) -> dict[str, tuple[Variant, LoneRoute[OnnxClassifier] | None]]:
        """Create each session and warm it up; with it, what runs its lone texts inline.
        Blocking: runs off the event loop."""
        assert self.placement is not None
        config = self._session_config(self.placement.plan.threads)
        variants: dict[str, tuple[Variant, LoneRoute[OnnxClassifier] | None]] = {}
        for folder, card in cards:
            variant = load_variant(folder, card, config)
            seconds = warm_up(variant, self.settings.warmup_iterations)
            logger.info("variant %s loaded and warmed up in %.3f s", card.name, seconds)
            variants[card.name] = (variant, self._lone_route(folder, variant))
        return variants

    def _start_batchers(
        self, variants: dict[str, tuple[Variant, LoneRoute[OnnxClassifier] | None]]
    ) -> dict[str, Variant]:
        assert self.workers is not None and self.policy is not None
        for name, (variant, lone) in variants.items():
            on_depth, on_running = self.metrics.queue_gauges(name)
            batcher = Batcher(
                variant.classifier,
                self.workers,
                self.policy,
                on_batch=self.metrics.batch_observer(name),
                on_depth=on_depth,
                on_running=on_running,
                lone=lone,
            )
            batcher.start()
            self.batchers[variant] = batcher
            self.metrics.publish_batcher(
                name,
                self.policy.max_queue_texts,
                lone.sessions[lone.current].threads if lone else 0,
            )
            self.metrics.publish_card(variant)
        return {name: variant for name, (variant, _) in variants.items()}

    async def load(self) -> Registry:
        """Choose the plan for the cores, then load every variant off the event loop; the engine
        is ready only after warm-up, and once it runs the shared experiment."""
        self.placement = await asyncio.to_thread(self._place)
        self.metrics.publish_placement(self.placement)
        plan = self.placement.plan
        self.policy = batch_policy(self.settings, self.placement)
        elsewhere = self.share.counts.elsewhere if self.share is not None else None
        self.workers = InferenceWorkers(plan.side_by_side, self.connections, elsewhere)
        self.workers.start()
        variants = self._start_batchers(await asyncio.to_thread(self._load, self.cards))
        self.registry = Registry(variants, self.default_variant)
        self.metrics.publish_experiment(
            self.experiment, self.experiment_origin, experiment_hash(self.experiment)
        )
        # Rescans asked for before this replica started are in what it just loaded.
        self._rescans_seen = await self._quietly(self.coordination.rescans(), 0)
        await self.sync()
        if self.settings.sync_seconds > 0:
            self._follower = asyncio.get_running_loop().create_task(self._follow())
        settle()
        elapsed = time.perf_counter() - self.started_at
        self.metrics.mark_ready(True, startup_seconds=elapsed)
        self.loaded = True
        if self.share is not None:
            self.share.readiness.publish(True)
        logger.info("ready in %.3f s with variants %s", elapsed, ", ".join(sorted(variants)))
        return self.registry

    def variant(self, name: str | None) -> Variant:
        if self.registry is None:
            raise NotReady()
        return self.registry.get(name)

    def resolve(self, model: str | None, sticky_key: str | None) -> Resolved:
        """What serves a request for ``model``: the variant of that name; for no name or the
        experiment's name, the experiment's arm for this caller (the default variant when no
        experiment runs)."""
        experiment = self.experiment
        if model is not None and model in self.variant_names:
            return Resolved(self.variant(model), None)
        if model is None or (experiment is not None and model == experiment.name):
            if experiment is None:
                return Resolved(self.variant(None), None)
            return Resolved(self.variant(experiment.assign(sticky_key)), experiment.name)
        raise self.unknown_model(model)

    def card(self, model: str) -> VariantCard:
        """The card of ``model``: a variant's, or for the experiment its first arm's (the arms
        serve one task). Cards are read at start-up, so this answers before the sessions load."""
        experiment = self.experiment
        name = model
        if experiment is not None and model == experiment.name and model not in self.variant_names:
            name = experiment.arms[0].variant
        for _, card in self.cards:
            if card.name == name:
                return card
        raise self.unknown_model(model)

    def unknown_model(self, model: str) -> UnknownVariant:
        experiment = [self.experiment.name] if self.experiment else []
        names = ", ".join(sorted(self.variant_names) + experiment)
        return UnknownVariant(f"unknown model {model!r}; available: {names}")

    def metered_variant(self, model: str | None) -> str:
        """The variant a request for ``model`` is counted under until it is routed (its answer's
        x-brum-variant then names the arm). Only known names: a path is caller input and must
        not grow the series."""
        experiment = self.experiment
        if model is None or (experiment is not None and model == experiment.name):
            return self.default_variant
        return model if model in self.variant_names else "none"

    async def predict(
        self,
        variant: Variant,
        texts: list[str],
        top_k: int | None,
        request_id: str | None = None,
        routed: bool = False,
    ) -> PredictionBatch:
        """Classify through the variant's batcher. With ``request_id`` the answer can be judged
        by feedback (and carries a feedback token when a key is set); a ``routed`` request may
        also be scored by the experiment's shadow."""
        limit = self.settings.max_texts_per_request
        if len(texts) > limit:
            raise TooManyTexts(f"{len(texts)} texts in one request; the limit is {limit}")
        batch = await self._score(variant, texts, top_k or self.settings.default_top_k)
        if request_id is not None:
            served = Served(request_id, variant.name, batch.labels, int(time.time()))
            self.ledger.remember(served)
            if self.signer is not None:
                batch = replace(batch, feedback_token=self.signer.sign(served))
        experiment = self.experiment
        if routed and experiment is not None and experiment.shadows():
            self._shadow(experiment, variant, texts, batch.labels)
        return batch

    async def _score(self, variant: Variant, texts: list[str], top_k: int) -> PredictionBatch:
        try:
            scored = await self.batchers[variant].submit(texts, top_k)
        except QueueFull:
            self.metrics.reject(variant.name, "full")
            raise
        except QueueTimeout:
            self.metrics.reject(variant.name, "timeout")
            raise
        predictions = predictions_from_ranking(
            variant.card, scored.ranking, scored.token_counts, scored.truncated, top_k
        )
        # On the loop's next turn, as the batch's own metrics (see Batcher._run_inline).
        asyncio.get_running_loop().call_soon(
            self.metrics.observe_scored,
            variant.name,
            scored.queue_seconds,
            [p.top_k[0].score for p in predictions],
        )
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
        count = self.metrics.count_shadow
        # Shed first: the shadow runs only while no queue has texts waiting for the model.
        if any(b.queued_texts for b in self.batchers.values()) or self._shadow_tasks:
            count(served.name, name, "shed")
            return

        async def score() -> None:
            try:
                shadow = await self._score(self.variant(name), texts, 1)
            except Exception:
                logger.exception("shadow variant %s failed", name)
                count(served.name, name, "error")
                return
            agree = shadow.labels == labels
            count(served.name, name, "agree" if agree else "disagree")

        task = asyncio.get_running_loop().create_task(score())
        self._shadow_tasks.add(task)
        task.add_done_callback(self._shadow_tasks.discard)

    async def judge(
        self, request_id: str | None, label: str, index: int, token: str | None = None
    ) -> Judgement:
        """Judge one served text: from its feedback token (any replica, no lookup) or its
        request id; counted once, whichever replica gets the call."""
        if token is not None:
            if self.signer is None:
                raise FeedbackError("feedback tokens are off: BRUM_FEEDBACK_KEY is not set")
            served = self.signer.open(token)
            if request_id is not None and request_id != served.request_id:
                raise FeedbackError(
                    f"the feedback token is of request {served.request_id!r}, not {request_id!r}"
                )
        else:
            assert request_id is not None
            found = await self.ledger.recall(request_id)
            if found is None:
                window = (
                    f"the last {self.settings.feedback_capacity} requests of this replica"
                    if isinstance(self.ledger, MemoryLedger)
                    else f"{self.settings.feedback_ttl_seconds} s"
                )
                raise UnknownRequest(
                    f"no recent prediction with request id {request_id!r} (remembered: {window}; "
                    "send the response's feedback_token to judge it on any replica)"
                )
            served = found
        self._check_judgement(served, label, index)
        if not await self.ledger.claim(served.request_id, index):
            raise AlreadyJudged(f"text {index} of request {served.request_id!r} was already judged")
        judgement = Judgement(served.request_id, index, served.variant, served.labels[index], label)
        self.metrics.count_feedback(judgement.variant, judgement.correct)
        return judgement

    def _check_judgement(self, served: Served, label: str, index: int) -> None:
        if not 0 <= index < len(served.labels):
            raise FeedbackError(
                f"index {index} is out of range: request {served.request_id!r} had "
                f"{len(served.labels)} text(s)"
            )
        variant = self.registry.variants.get(served.variant) if self.registry else None
        if variant is None:
            raise UnknownRequest(f"variant {served.variant!r} is no longer served")
        if label not in variant.label_set:
            raise FeedbackError(f"unknown label {label!r} for variant {served.variant!r}")

    def _apply_experiment(self, experiment: Experiment | None, origin: str) -> None:
        """Swap the experiment in one assignment: a request sees the old one or the new one."""
        if experiment is not None:
            experiment.check_variants(self.variant_names)
        old = self.experiment
        if experiment == old and origin == self.experiment_origin:
            return
        self.experiment, self.experiment_origin = experiment, origin
        self.metrics.publish_experiment(experiment, origin, experiment_hash(experiment))
        logger.info(
            "experiment (%s): %s -> %s",
            origin,
            old.model_dump_json() if old else None,
            experiment.model_dump_json() if experiment else None,
        )

    async def set_experiment(self, experiment: Experiment | None) -> None:
        """The admin API's change: checked, written to the shared source so that every replica
        takes it at its next sync, and taken here at once."""
        if experiment is not None:
            experiment.check_variants(self.variant_names)
        await self.experiment_source.override(experiment)
        self._apply_experiment(experiment, "admin")

    async def sync(self) -> None:
        """Take the shared experiment if it changed, and rescan if a replica was asked to.
        A failure keeps what runs, and says so once per distinct failure (log and metric)."""
        try:
            resolved = await self.experiment_source.resolve()
            self._apply_experiment(resolved.experiment, resolved.source)
            rescans = await self.coordination.rescans()
        except (ExperimentError, BrumError) as exc:
            message = str(exc)
            if message != self._sync_error:
                reason = "store" if isinstance(exc, CoordinationUnavailable) else "invalid"
                self.metrics.count_sync_error(reason)
                logger.error("kept the running experiment: %s", message)
            self._sync_error = message
            return
        if self._sync_error is not None:
            logger.info("experiment source readable and valid again")
            self._sync_error = None
        if rescans != self._rescans_seen:
            self._rescans_seen = rescans
            await self.rescan()

    async def _follow(self) -> None:
        while True:
            await asyncio.sleep(self.settings.sync_seconds)
            try:
                await self.sync()
            except Exception:  # a sync must never stop the syncing
                logger.exception("sync failed")

    @staticmethod
    async def _quietly(call, default):
        try:
            return await call
        except BrumError:
            return default

    def _needed(self) -> dict[str, str]:
        """Variants that must stay loaded, and why."""
        needed = {self.default_variant: "the default variant"}
        experiment = self.experiment
        if experiment is not None:
            named = [arm.variant for arm in experiment.arms]
            if experiment.default:
                named.append(experiment.default)
            if experiment.shadow:
                named.append(experiment.shadow.variant)
            needed.update({name: f"named by experiment {experiment.name!r}" for name in named})
        return needed

    async def ask_rescan(self) -> Rescan:
        """Rescan here, and have every other replica rescan at its next sync."""
        self._rescans_seen = await self.coordination.ask_rescan()
        return await self.rescan()

    async def rescan(self) -> Rescan:
        """Bring the loaded variants in line with the repository: load new ones, replace those
        whose files changed (warmed up before they take traffic; the old one finishes what it
        was given), unload removed ones once their queues are empty."""
        if self.registry is None:
            raise NotReady()
        async with self._rescan_lock:
            verify = self.settings.verify_checksums
            cards = await asyncio.to_thread(read_cards, self.settings.model_repository, verify)
            found = {card.name: (folder, card) for folder, card in cards}
            loaded = self.registry.variants
            added = [name for name in found if name not in loaded]
            replaced = [
                name
                for name, (folder, card) in found.items()
                if name in loaded and fingerprint(folder, card) != loaded[name].fingerprint
            ]
            needed = self._needed()
            gone = sorted(set(loaded) - set(found))
            kept = {name: needed[name] for name in gone if name in needed}
            removed = [name for name in gone if name not in kept]
            fresh = self._start_batchers(
                await asyncio.to_thread(self._load, [found[n] for n in added + replaced])
            )
            variants = {
                name: variant
                for name, variant in {**loaded, **fresh}.items()
                if name not in removed
            }
            self.registry = Registry(variants, self.default_variant)
            self.cards = [(v.folder, v.card) for _, v in sorted(variants.items())]
            self.variant_names = frozenset(variants)
            for name in replaced + removed:
                self._retire(loaded[name], forget=name in removed)
        report = Rescan(sorted(added), sorted(replaced), removed, kept)
        for change in ("added", "replaced", "removed"):
            self.metrics.count_rescan(change, len(getattr(report, change)))
        for name, why in kept.items():
            logger.warning("variant %s was removed from the repository but stays: %s", name, why)
        logger.info(
            "repository rescanned: added %s, replaced %s, removed %s",
            report.added or "nothing",
            report.replaced or "nothing",
            report.removed or "nothing",
        )
        return report

    def _retire(self, variant: Variant, forget: bool) -> None:
        batcher = self.batchers[variant]

        async def retire() -> None:
            await batcher.drain()
            del self.batchers[variant]
            if forget:
                self.metrics.forget_variant(variant)
            logger.info("variant %s: old model unloaded (%s)", variant.name, variant.folder)

        task = asyncio.get_running_loop().create_task(retire())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def drain(self) -> None:
        """Stop being ready; requests already accepted still finish."""
        self.draining = True
        self.metrics.mark_ready(False)
        if self.share is not None:
            self.share.readiness.publish(False)
        logger.info("draining: no longer ready")

    async def close(self) -> None:
        if self._follower is not None:
            self._follower.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        if self.workers is not None:
            await self.workers.stop()
        for batcher in self.batchers.values():
            await batcher.stop()
        await self.ledger.close()
        if self.store is not None:
            await self.store.aclose()
