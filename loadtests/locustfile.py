"""Locust traffic for brum's A/B experiment: CLINC150 test utterances from sticky users, with a
share of the predictions followed by feedback carrying the true label.

Three modes (``--mode``), all headless-friendly and CSV-writing (``--csv PREFIX``):

- ``open`` (default): open loop at ``--rate`` predictions per second for ``--run-time``.
- ``step``: open loop, the rate stepping from ``--step-start`` by ``--step-increment`` every
  ``--step-seconds``, ``--steps`` times, to find the knee of the load curve.
- ``closed``: classic locust, ``--users`` users each waiting for its answer, then a think time.

**Why an arrival generator and not ``constant_throughput``.** A locust user is a closed loop: its
next request leaves only after its previous answer came back. ``constant_throughput`` with users
sized to the rate holds the rate only while every answer is faster than ``users / rate`` seconds;
once the service slows down, the users wait on it and the offered load drops exactly when it
matters (coordinated omission), which hides the knee. Here one ``ArrivalUser`` is a generator:
arrivals are scheduled on a clock (Poisson by default, ``--arrivals uniform`` for fixed gaps) and
each is sent from its own greenlet, so arrivals never wait for responses. The only bound is
``--max-in-flight`` concurrent requests: past it an arrival is dropped and counted as a failure
(``arrival dropped``), never silently delayed. How late the generator sent an arrival against its
schedule is reported (``lag``), so a starved load generator shows.

Users: every request carries ``X-User-ID`` from a pool of ``--user-keys`` end users, so the
experiment's sticky assignment holds (and is checked: a key answered by two variants is a
failure, unless ``--no-sticky-check``). Requests are named after the arm that answered,
``predict <variant>`` and ``feedback <variant>``, so locust's statistics and CSVs group them per
arm. ``--feedback-share`` of the successful predictions are followed by ``POST /v1/feedback``
with the utterance's true label.

Besides locust's CSVs, ``PREFIX_steps.csv`` holds one row per step (one step in ``open`` and
``closed`` mode) and per arm (``all`` plus each variant): offered and achieved rate, client-side
p50/p95/p99, failures, dropped arrivals, generator lag and client-side feedback accuracy.

    locust -f loadtests/locustfile.py --headless --host http://127.0.0.1:8000 \\
        --mode open --rate 50 --run-time 60s --feedback-share 0.3 --csv loadtests/results/ab
    locust -f loadtests/locustfile.py --headless --host http://127.0.0.1:8000 \\
        --mode step --step-start 20 --step-increment 20 --step-seconds 10 --steps 10 \\
        --feedback-share 0 --csv loadtests/results/knee
"""

from __future__ import annotations

import csv
import json
import logging
import math
import random
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import gevent
from gevent.pool import Pool
from locust import FastHttpUser, LoadTestShape, between, events, task
from locust.env import Environment

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # locust puts only this folder on the path
    sys.path.insert(0, str(ROOT))

from models.sources.clinc150 import load_clinc150  # noqa: E402

logger = logging.getLogger("brum.locust")
STICKY_HEADER = "X-User-ID"
VARIANT_HEADER = "x-brum-variant"
ALL = "all"


@events.init_command_line_parser.add_listener
def add_options(parser) -> None:
    group = parser.add_argument_group("brum", "brum A/B traffic (loadtests/locustfile.py)")
    group.add_argument(
        "--mode",
        choices=["open", "step", "closed"],
        default="open",
        env_var="BRUM_LOAD_MODE",
        help="open: fixed arrival rate; step: rate steps up to find the knee; closed: --users",
    )
    group.add_argument(
        "--rate", type=float, default=20.0, help="open mode: predictions per second (arrivals)"
    )
    group.add_argument(
        "--arrivals",
        choices=["poisson", "uniform"],
        default="poisson",
        help="open/step: exponential gaps (Poisson arrivals) or fixed gaps",
    )
    group.add_argument("--step-start", type=float, default=20.0, help="step: first rate (req/s)")
    group.add_argument("--step-increment", type=float, default=20.0, help="step: rate added")
    group.add_argument("--step-seconds", type=float, default=10.0, help="step: seconds per step")
    group.add_argument("--steps", type=int, default=10, help="step: number of steps")
    group.add_argument(
        "--max-in-flight",
        type=int,
        default=512,
        help="open/step: concurrent requests; arrivals past it are dropped (and counted)",
    )
    group.add_argument(
        "--feedback-share",
        type=float,
        default=0.3,
        env_var="BRUM_FEEDBACK_SHARE",
        help="share of successful predictions followed by POST /v1/feedback with the true label",
    )
    group.add_argument(
        "--user-keys", type=int, default=2000, help="distinct X-User-ID keys (end users)"
    )
    group.add_argument(
        "--think-time", type=float, default=1.0, help="closed: mean seconds between requests"
    )
    group.add_argument("--seed", type=int, default=0, help="seed of utterances, keys, arrivals")
    group.add_argument(
        "--no-sticky-check",
        action="store_true",
        help="do not fail a key answered by two variants: the weights change during the run "
        "(a rollout moves keys from the control to the candidate by design)",
    )
    group.add_argument(
        "--drain-seconds",
        type=float,
        default=10.0,
        help="at the end, how long to wait for requests still in flight",
    )


# --- the traffic: utterances, user keys, per-step records ------------------------------------


@dataclass
class Step:
    index: int
    start: float  # seconds since the shape started
    end: float
    rate: float | None  # offered predictions per second; None in closed mode


@dataclass
class ArmRecord:
    latencies_ms: list[float] = field(default_factory=list)
    failures: int = 0
    feedback: int = 0
    correct: int = 0


@dataclass
class StepRecord:
    arms: dict[str, ArmRecord] = field(default_factory=dict)
    sent: int = 0
    dropped: int = 0
    lags_ms: list[float] = field(default_factory=list)

    def arm(self, name: str) -> ArmRecord:
        return self.arms.setdefault(name, ArmRecord())


class Traffic:
    """What every user shares: the utterances in a shuffled replay order, the user keys, which
    variant each key got (to check stickiness) and the per-step records."""

    def __init__(self, seed: int, user_keys: int) -> None:
        data = load_clinc150()
        test = data.splits["test"]
        pairs = zip(test.texts, test.label_ids, strict=True)
        self.utterances = [(text, data.labels[label]) for text, label in pairs]
        self.random = random.Random(seed)
        self.random.shuffle(self.utterances)
        self.next_utterance = 0
        self.keys = [f"user-{seed}-{i:05d}" for i in range(user_keys)]
        self.assigned: dict[str, str] = {}
        self.records: dict[int, StepRecord] = {}
        self.variants: list[str] = []

    def utterance(self) -> tuple[str, str]:
        """The next test utterance and its true label, cycling through the split."""
        text, label = self.utterances[self.next_utterance % len(self.utterances)]
        self.next_utterance += 1
        return text, label

    def key(self, rng: random.Random) -> str:
        return rng.choice(self.keys)

    def record(self, step: int) -> StepRecord:
        return self.records.setdefault(step, StepRecord())


traffic: Traffic | None = None
pools: list[Pool] = []


@events.init.add_listener
def on_init(environment: Environment, **_kwargs) -> None:
    global traffic
    options = environment.parsed_options
    if options is None:
        return
    if not 0 <= options.feedback_share <= 1:
        raise SystemExit("--feedback-share must be within [0, 1]")
    traffic = Traffic(options.seed, options.user_keys)
    ArrivalUser.concurrency = options.max_in_flight


@events.test_start.add_listener
def on_test_start(environment: Environment, **_kwargs) -> None:
    """Read the variants and the experiment from ``GET /v1/models`` (names are never assumed)."""
    if environment.host is None or traffic is None:
        return
    with urllib.request.urlopen(environment.host.rstrip("/") + "/v1/models", timeout=30) as r:
        models = json.load(r)
    traffic.variants = sorted(card["name"] for card in models["models"])
    experiment = models.get("experiment") or {}
    arms = ", ".join(f"{a['variant']}={a['weight']:g}" for a in experiment.get("arms", []))
    logger.info(
        "variants %s; experiment %s (%s), default %s, shadow %s",
        ", ".join(traffic.variants),
        experiment.get("name"),
        arms,
        experiment.get("default") or models.get("default"),
        experiment.get("shadow"),
    )


def one_request(user: FastHttpUser, step: int, feedback_share: float, rng: random.Random) -> None:
    """One end user's prediction (named after the arm that answered) and maybe its feedback."""
    assert traffic is not None
    text, label = traffic.utterance()
    key = traffic.key(rng)
    record = traffic.record(step)
    started = time.perf_counter()
    with user.client.post(
        "/v1/predict",
        json={"text": text, "top_k": 1},
        headers={STICKY_HEADER: key},
        name="predict",
        catch_response=True,
    ) as response:
        elapsed_ms = (time.perf_counter() - started) * 1000
        variant = response.headers.get(VARIANT_HEADER) if response.headers else None
        arm = variant or "no-variant"  # e.g. a 503 queue timeout carries no X-Brum-Variant
        response.request_meta["name"] = f"predict {arm}"
        ok = response.status_code == 200
        request_id = None
        if ok:
            request_id = response.json()["request_id"]
            earlier = traffic.assigned.setdefault(key, arm)
            if earlier != arm and not user.environment.parsed_options.no_sticky_check:
                ok = False
                response.failure(f"sticky assignment broke: {key} got {arm}, earlier {earlier}")
        else:
            response.failure(f"HTTP {response.status_code}")
    for name in (ALL, arm):
        if ok:
            record.arm(name).latencies_ms.append(elapsed_ms)
        else:
            record.arm(name).failures += 1
    if not ok or rng.random() >= feedback_share:
        return
    with user.client.post(
        "/v1/feedback",
        json={"request_id": request_id, "label": label},
        name=f"feedback {arm}",
        catch_response=True,
    ) as response:
        if response.status_code != 200:
            response.failure(f"HTTP {response.status_code}")
            return
        correct = bool(response.json()["correct"])
    for name in (ALL, arm):
        record.arm(name).feedback += 1
        record.arm(name).correct += correct


# --- users -------------------------------------------------------------------------------------


class ArrivalUser(FastHttpUser):
    """Open loop: one generator that sends each arrival from its own greenlet on a schedule."""

    concurrency = 512  # connections; set from --max-in-flight
    network_timeout = 30.0
    connection_timeout = 10.0

    @task
    def generate(self) -> None:
        options = self.environment.parsed_options
        shape = self.environment.shape_class
        assert isinstance(shape, BrumShape) and traffic is not None
        rng = random.Random(options.seed + 1)
        pool = Pool(options.max_in_flight)
        pools.append(pool)
        scheduled = shape.get_run_time()
        while True:
            step = shape.step_at(scheduled)
            if step is None:
                gevent.sleep(3600)  # the schedule is over; the shape stops the test
                continue
            delay = scheduled - shape.get_run_time()
            if delay > 0:
                gevent.sleep(delay)
            record = traffic.record(step.index)
            record.lags_ms.append(max(0.0, -delay) * 1000)
            if pool.full():
                record.dropped += 1
                self.environment.events.request.fire(
                    request_type="CLIENT",
                    name="arrival dropped",
                    response_time=0,
                    response_length=0,
                    exception=RuntimeError(f"more than {options.max_in_flight} in flight"),
                    context={},
                )
            else:
                record.sent += 1
                pool.spawn(one_request, self, step.index, options.feedback_share, rng)
            assert step.rate is not None
            gap = rng.expovariate(step.rate) if options.arrivals == "poisson" else 1 / step.rate
            scheduled += gap


class ClosedLoopUser(FastHttpUser):
    """Closed loop: one end user at a time per locust user, waiting for each answer."""

    def wait_time(self) -> float:
        mean = self.environment.parsed_options.think_time
        return between(0.5 * mean, 1.5 * mean)(self)

    def on_start(self) -> None:
        self.rng = random.Random(f"{self.environment.parsed_options.seed}-{id(self)}")

    @task
    def predict(self) -> None:
        record = traffic.record(0) if traffic else None
        if record is not None:
            record.sent += 1
        one_request(self, 0, self.environment.parsed_options.feedback_share, self.rng)


# --- the shape: which users, how many, the rate schedule and when to stop ----------------------


class BrumShape(LoadTestShape):
    """Runs the mode: one ``ArrivalUser`` following the rate schedule (open, step) or
    ``--users`` ``ClosedLoopUser`` (closed); stops at the end of the schedule or ``--run-time``."""

    use_common_options = True

    def _options(self):
        return self.runner.environment.parsed_options

    def steps(self) -> list[Step]:
        o = self._options()
        if o.mode == "step":
            seconds, start, increment = o.step_seconds, o.step_start, o.step_increment
            return [
                Step(i, i * seconds, (i + 1) * seconds, start + i * increment)
                for i in range(o.steps)
            ]
        duration = o.run_time or 60
        return [Step(0, 0.0, float(duration), o.rate if o.mode == "open" else None)]

    def step_at(self, seconds: float) -> Step | None:
        return next((s for s in self.steps() if s.start <= seconds < s.end), None)

    def tick(self):
        o = self._options()
        if self.step_at(self.get_run_time()) is None:
            return None
        if o.mode == "closed":
            return o.num_users or 1, o.spawn_rate or 1, [ClosedLoopUser]
        return 1, 1, [ArrivalUser]


# --- the per-step CSV -------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in [0, 100]); nan when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


STEP_COLUMNS = [
    "step",
    "arm",
    "offered_rps",
    "seconds",
    "sent",
    "completed",
    "throughput_rps",
    "failures",
    "dropped",
    "p50_ms",
    "p95_ms",
    "p99_ms",
    "max_ms",
    "lag_p99_ms",
    "feedback",
    "feedback_correct",
]


def step_rows(steps: list[Step], records: dict[int, StepRecord], arms: list[str]) -> list[dict]:
    rows = []
    for step in steps:
        record = records.get(step.index, StepRecord())
        seconds = step.end - step.start
        names = [ALL, *sorted(set(arms) | set(record.arms) - {ALL})]
        for name in names:
            arm = record.arms.get(name, ArmRecord())
            lat = arm.latencies_ms
            rows.append(
                {
                    "step": step.index,
                    "arm": name,
                    "offered_rps": "" if step.rate is None else round(step.rate, 3),
                    "seconds": round(seconds, 3),
                    "sent": record.sent if name == ALL else "",
                    "completed": len(lat),
                    "throughput_rps": round(len(lat) / seconds, 3) if seconds else "",
                    "failures": arm.failures,
                    "dropped": record.dropped if name == ALL else "",
                    "p50_ms": round(percentile(lat, 50), 3) if lat else "",
                    "p95_ms": round(percentile(lat, 95), 3) if lat else "",
                    "p99_ms": round(percentile(lat, 99), 3) if lat else "",
                    "max_ms": round(max(lat), 3) if lat else "",
                    "lag_p99_ms": (
                        round(percentile(record.lags_ms, 99), 3)
                        if name == ALL and record.lags_ms
                        else ""
                    ),
                    "feedback": arm.feedback,
                    "feedback_correct": arm.correct,
                }
            )
    return rows


@events.test_stop.add_listener
def on_test_stop(environment: Environment, **_kwargs) -> None:
    """Let requests in flight finish (so slow ones count), then write ``PREFIX_steps.csv``."""
    options = environment.parsed_options
    deadline = time.monotonic() + (options.drain_seconds if options else 0)
    for pool in pools:
        pool.join(timeout=max(0.0, deadline - time.monotonic()))
    if traffic is None or options is None or not options.csv_prefix:
        return
    shape = environment.shape_class
    steps = shape.steps() if isinstance(shape, BrumShape) else [Step(0, 0.0, 0.0, None)]
    if options.mode == "closed" and isinstance(shape, BrumShape):
        elapsed = min(shape.get_run_time(), steps[0].end)
        steps = [Step(0, 0.0, elapsed, None)]
    # A step the run never reached (stopped early by --run-time) is left out.
    steps = [s for s in steps if s.index in traffic.records or s.index == 0]
    path = Path(f"{options.csv_prefix}_steps.csv")
    with path.open("w", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=STEP_COLUMNS)
        writer.writeheader()
        writer.writerows(step_rows(steps, traffic.records, traffic.variants))
    logger.info("per-step results in %s", path)
