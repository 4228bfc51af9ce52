"""The servers of the peer benchmark: how to start each on one variant folder, on loopback, with
the settings its own documentation recommends for a small CPU box, and how to speak its protocol.

Every server gets the same cores. Where a framework can run its model in several processes, it
gets by default one worker process per core, each with a one-thread onnxruntime session (more
threads per worker would oversubscribe the cores), which is also what brum does with threads;
``--peer-workers 1`` gives them one process whose session uses every core instead (faster at
batch 1, slower saturated on some machines: measure both where it matters). Per-request
logging is off where the framework has a setting for it, as brum runs at log level warning; the
naive app keeps uvicorn's access log, as its user would.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from loadtests.processes import ROOT, free_port

ONNX_REQUIREMENTS = ("onnxruntime==1.32.0", "tokenizers==0.22.2", "numpy==2.4.6")


@dataclass(frozen=True)
class Context:
    """What a server is started with: the variant, a free port, a scratch folder, the cores."""

    folder: Path
    port: int
    workdir: Path
    python: str
    cores: int
    brum_env: dict[str, str] = field(default_factory=dict)
    peer_workers: int = 0  # worker processes of the framework peers; 0: one per core
    load_cpus: frozenset[int] | None = None  # where wrk runs, when the servers are pinned
    enter: Callable[[], None] | None = None  # run in each server's process first: join a cgroup

    @property
    def workers(self) -> int:
        return self.peer_workers or self.cores

    @property
    def threads(self) -> int:
        """onnxruntime intra-op threads per worker: the cores shared out, at least one."""
        return max(1, self.cores // self.workers)

    def describe(self, server: Server) -> str:
        return server.settings.format(workers=self.workers, threads=self.threads)

    @property
    def variant(self) -> str:
        return self.folder.name

    def env(self, **extra: str) -> dict[str, str]:
        return {**os.environ, "PYTHONPATH": str(ROOT), **extra}


@dataclass(frozen=True)
class Launch:
    command: tuple[str, ...]  # after the python executable
    env: dict[str, str]
    ready_path: str


@dataclass(frozen=True)
class Server:
    name: str
    settings: str  # what was chosen, and why; {workers} and {threads} of the framework peers
    launch: Callable[[Context], Launch]
    path: Callable[[str], str]  # the prediction path for a variant name
    body: Callable[[list[str]], dict]  # texts -> one request's JSON body
    labels: Callable[[object], list[str]]  # one answer's JSON -> its labels, in order
    requirements: tuple[str, ...] = ()  # its own virtualenv's, if it needs one


def _brum(ctx: Context) -> Launch:
    repository = ctx.workdir / "brum-repository"
    repository.mkdir(exist_ok=True)
    (repository / ctx.variant).symlink_to(ctx.folder.resolve(), target_is_directory=True)
    defaults = {
        "BRUM_MODEL_REPOSITORY": str(repository),
        "BRUM_HOST": "127.0.0.1",
        "BRUM_PORT": str(ctx.port),
    }
    env = ctx.env(**{**defaults, **ctx.brum_env})  # --brum-env overrides
    return Launch(("-m", "app"), env, "/readyz")


def _brum_processes(ctx: Context) -> Launch:
    launch = _brum(ctx)
    env = {**launch.env, "BRUM_PROCESSES": str(ctx.cores), **ctx.brum_env}  # --brum-env overrides
    return Launch(launch.command, env, launch.ready_path)


def _naive(ctx: Context) -> Launch:
    app = ("-m", "uvicorn", "loadtests.peers.naive_app:app")
    command = (*app, "--host", "127.0.0.1", "--port", str(ctx.port))
    return Launch(command, ctx.env(NAIVE_VARIANT=str(ctx.folder)), "/healthz")


def _kserve(ctx: Context) -> Launch:
    command = (
        "-m",
        "loadtests.peers.kserve_app",
        *("--http_port", str(ctx.port), "--workers", str(ctx.workers)),
        *("--enable_grpc", "false", "--enable_latency_logging", "false"),
    )
    env = ctx.env(PEER_VARIANT=str(ctx.folder), PEER_THREADS=str(ctx.threads))
    return Launch(command, env, f"/v1/models/{ctx.variant}")


def _mlserver(ctx: Context) -> Launch:
    settings = {
        "host": "127.0.0.1",
        "http_port": ctx.port,
        "grpc_port": free_port(),  # MLServer 1.7 always starts gRPC: on loopback too
        "metrics_port": free_port(),
        "parallel_workers": ctx.workers,
        "debug": False,  # debug (the default) logs every request
        "metrics_dir": str(ctx.workdir / "mlserver-metrics"),
        "environments_dir": str(ctx.workdir / "mlserver-envs"),
    }
    model = {
        "name": ctx.variant,
        "implementation": "loadtests.peers.mlserver_runtime.OnnxTextClassifier",
        "max_batch_size": 32,
        "max_batch_time": 0.005,
        "parameters": {"uri": str(ctx.folder.resolve()), "extra": {"threads": ctx.threads}},
    }
    root = ctx.workdir / "mlserver"
    (root / ctx.variant).mkdir(parents=True)
    (root / "settings.json").write_text(json.dumps(settings, indent=2))
    (root / ctx.variant / "model-settings.json").write_text(json.dumps(model, indent=2))
    command = ("-m", "mlserver.cli.main", "start", str(root))
    return Launch(command, ctx.env(), f"/v2/models/{ctx.variant}/ready")


def _bentoml(ctx: Context) -> Launch:
    service = "loadtests.peers.bentoml_service:Classifier"
    command = ("-m", "bentoml_cli.cli", "serve", service, "--working-dir", str(ROOT))
    env = ctx.env(
        PEER_VARIANT=str(ctx.folder.resolve()),
        PEER_THREADS=str(ctx.threads),
        PEER_WORKERS=str(ctx.workers),
        BENTOML_HOME=str(ctx.workdir / "bentoml-home"),
        BENTOML_DO_NOT_TRACK="true",
    )
    return Launch((*command, "--host", "127.0.0.1", "--port", str(ctx.port)), env, "/readyz")


def _v1_body(texts: list[str]) -> dict:
    return {"text": texts[0]} if len(texts) == 1 else {"texts": texts}


def _v2_body(texts: list[str]) -> dict:
    return {"inputs": [{"name": "text", "shape": [len(texts)], "datatype": "BYTES", "data": texts}]}


def _v2_labels(answer: dict) -> list[str]:
    return next(o for o in answer["outputs"] if o["name"] == "label")["data"]


def _predictions(answer: dict) -> list[str]:
    return [p["label"] for p in answer["predictions"]]


SERVERS = {
    "brum": Server(
        "brum",
        "`python -m app`, README defaults (one-thread sessions, one batch in flight per core, "
        "adaptive batching up to 32 texts), serving only this variant",
        _brum,
        lambda variant: f"/v1/models/{variant}/predict",
        _v1_body,
        _predictions,
    ),
    "brum-processes": Server(
        "brum-processes",
        '`python -m app` with `BRUM_PROCESSES` set to the cores (README, "Several processes in '
        'one container"): one serving process a core, otherwise README defaults, serving only '
        "this variant. Opt-in, and not a peer: brum's goals are read from `brum`",
        _brum_processes,
        lambda variant: f"/v1/models/{variant}/predict",
        _v1_body,
        _predictions,
    ),
    "naive": Server(
        "naive",
        "FastAPI + onnxruntime in 30 lines (`loadtests/peers/naive_app.py`): sync route, session "
        "defaults, batch 1 per text, uvicorn with 1 worker and its access log on",
        _naive,
        lambda variant: "/predict",
        _v1_body,
        _predictions,
    ),
    "kserve": Server(
        "kserve",
        "KServe 0.21 `ModelServer`, custom `kserve.Model`, V1 protocol; `--workers {workers}` "
        "(its multi-process REST server: a sync predict holds the event loop, so one process runs "
        "one request at a time), {threads}-thread session each, gRPC, access and latency logs off",
        _kserve,
        lambda variant: f"/v1/models/{variant}:predict",
        lambda texts: {"instances": texts},
        _predictions,
    ),
    "mlserver": Server(
        "mlserver",
        "MLServer 1.7.1, custom `MLModel`, V2 infer with a BYTES input; `parallel_workers` "
        "{workers} (its parallel inference: inference in worker processes), {threads}-thread "
        "session each, adaptive batching `max_batch_size` 32, `max_batch_time` 5 ms, `debug` off",
        _mlserver,
        lambda variant: f"/v2/models/{variant}/infer",
        _v2_body,
        _v2_labels,
        ("mlserver==1.7.1", "uvloop==0.21.0", *ONNX_REQUIREMENTS),  # uvloop 0.22 kills workers
    ),
    "bentoml": Server(
        "bentoml",
        "BentoML 1.4.40 `@bentoml.service(workers={workers})`, {threads}-thread session each, "
        "`@bentoml.api(batchable=True, max_batch_size=32)`, default `max_latency_ms` "
        "(a 503 deadline, not a batching wait), access log off",
        _bentoml,
        lambda variant: "/classify",
        lambda texts: {"texts": texts},
        lambda answer: [p["label"] for p in answer],
        ("bentoml==1.4.40", *ONNX_REQUIREMENTS),
    ),
}

# What a run compares when --servers is not given: brum against what users would run instead.
DEFAULT_SERVERS = ("brum", "naive", "kserve", "mlserver", "bentoml")
