"""Peer benchmark: brum against a naive FastAPI app, KServe, MLServer and BentoML, all serving the
same ONNX variant on the same cores, one server at a time, bracketed by raw in-process
onnxruntime. Load from wrk; writes peers-<variant>.md, .json and .png.

    python -m loadtests.peers [--variant NAME] [--servers brum,naive,kserve,mlserver,bentoml]
        [--seconds 10] [--rounds 3] [--levels 1x1,8x1,32x1,64x1,16x8] [--texts 1000]
        [--recipe RECIPE] [--output DIR] [--brum-env KEY=VALUE ...] [--peer-workers 0]
        [--cpus N] [--quota CPUS]

The texts are the test split of the recipe that built the variant (``--recipe``; default:
CLINC150's, the shipped repository's): how fast a server is depends on how long the texts are.

Every server runs once per round, the rounds in rotated order; figures are medians over the
rounds (loadtests/peers/rounds.py). ``--cpus`` and ``--quota`` emulate a smaller machine, or a
Kubernetes CPU limit, with a cgroup around every server and the raw bracket (loadtests/cgroup.py).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import numpy as np
import onnxruntime

from app.core.card import TOKENIZER_FILE, read_card
from app.runtime.cores import capped_by_quota
from app.runtime.tokenizer import load_tokenizer
from app.settings import SHIPPED_REPOSITORY
from loadtests.cgroup import cpu_group, limits_available
from loadtests.peers.goals import goals, ratios
from loadtests.peers.measure import Level, context, measure
from loadtests.peers.raw import raw_bracket, reference_label
from loadtests.peers.render import render_markdown, render_plot
from loadtests.peers.rounds import fold_server, rotated
from loadtests.peers.servers import DEFAULT_SERVERS, SERVERS
from loadtests.peers.venvs import VenvError, ensure_venv
from loadtests.processes import ROOT, cpu_model
from models.sources import recipe_dataset

DEFAULT_LEVELS = "1x1,8x1,32x1,64x1,16x8"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repository", type=Path, default=SHIPPED_REPOSITORY)
    parser.add_argument("--variant", default="minilm-l6-augmented-int8")
    parser.add_argument(
        "--servers",
        default=",".join(DEFAULT_SERVERS),
        help=f"comma-separated, in order, of {', '.join(SERVERS)}",
    )
    parser.add_argument("--seconds", type=float, default=10, help="length of each load level")
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="passes over the servers, in rotated order; figures are their medians",
    )
    parser.add_argument("--warmup", type=float, default=2, help="warm-up before the levels, s")
    parser.add_argument(
        "--levels", default=DEFAULT_LEVELS, help="connections x texts per request, e.g. 32x1"
    )
    parser.add_argument("--texts", type=int, default=1000, help="test texts in rotation")
    parser.add_argument(
        "--recipe",
        type=Path,
        help="the texts from this recipe's test split, the variant's own data (default: CLINC150)",
    )
    parser.add_argument("--output", type=Path, default=ROOT / "loadtests" / "results" / "peers")
    parser.add_argument(
        "--brum-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra environment for brum (repeatable), e.g. BRUM_INTRA_OP_THREADS=2",
    )
    parser.add_argument(
        "--peer-workers",
        type=int,
        default=0,
        help="worker processes of KServe, MLServer, BentoML (0: one per core, one-thread "
        "sessions; 1: one process, a session on every core)",
    )
    parser.add_argument(
        "--cpus",
        type=int,
        help="every server and the raw bracket on this many CPUs (a cgroup cpuset, or CPU "
        "affinity where this process cannot make one), wrk on the others: a smaller machine, "
        "emulated (default: every CPU for all of them)",
    )
    parser.add_argument(
        "--quota",
        type=float,
        help="a CFS CPU quota, in CPUs, over the servers and the raw bracket (1.5: 150 ms of CPU "
        "time per 100 ms): a Kubernetes CPU limit, emulated; needs a writable cgroup v1 (root)",
    )
    args = parser.parse_args(argv)
    available = len(os.sched_getaffinity(0))
    if args.cpus is not None and not 1 <= args.cpus <= available:
        parser.error(f"--cpus must be between 1 and the {available} CPUs this process may use")
    if args.quota is not None and args.quota <= 0:
        parser.error("--quota must be a positive number of CPUs")
    if args.quota is not None and not limits_available():
        parser.error("--quota needs a writable cgroup v1 cpu and cpuset controller (run as root)")
    unknown = set(args.servers.split(",")) - set(SERVERS)
    if unknown:
        parser.error(f"unknown servers {sorted(unknown)}; choose from {list(SERVERS)}")
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    if any("=" not in item for item in args.brum_env):
        parser.error("--brum-env takes KEY=VALUE")
    return args


@dataclass(frozen=True)
class LoadTexts:
    dataset: str
    texts: list[str]
    tokens: float  # mean, as the variant's tokenizer cuts them


def load_texts(folder: Path, count: int, recipe: Path | None) -> LoadTexts:
    """``count`` texts of the test split, in a seeded order; a warning when the variant was not
    built on that dataset (its labels differ), since text length drives every figure."""
    data = recipe_dataset(recipe)
    test = data.splits["test"]
    order = np.random.default_rng(0).permutation(len(test.texts))[:count]
    texts = [test.texts[i] for i in order]
    card = read_card(folder)
    if set(card.labels) != set(data.labels):
        print(
            f"warning: {folder.name}'s labels are not those of {data.name}, whose texts it is "
            "loaded with: give --recipe RECIPE, the recipe that built it",
            file=sys.stderr,
            flush=True,
        )
    tokenizer = load_tokenizer(folder / TOKENIZER_FILE, card.max_length)
    tokens = float(np.mean([len(e.ids) for e in tokenizer.encode(texts)]))
    return LoadTexts(data.name, texts, round(tokens, 1))


@dataclass(frozen=True)
class Limits:
    """The emulated machine: the servers' CPUs and quota, and where wrk runs."""

    servers: frozenset[int]
    load: frozenset[int] | None  # None: wrk shares the servers' CPUs
    quota: float | None
    isolation: str  # "cgroup", "affinity" (a process may widen it) or "none"

    @property
    def cores(self) -> int:
        """What a server may use, as brum counts it (app/runtime/cores.py): a quota of 1.5 CPUs
        on 2 cores is 2."""
        return capped_by_quota(len(self.servers), self.quota)


def plan_limits(wanted_cpus: int | None, quota: float | None) -> Limits:
    """The first ``wanted_cpus`` of this process's CPUs for the servers and the rest for wrk (or
    all of them for both), and the quota over the servers."""
    cpus = sorted(os.sched_getaffinity(0))
    servers, load = frozenset(cpus), None
    if wanted_cpus is not None:
        servers, load = frozenset(cpus[:wanted_cpus]), frozenset(cpus[wanted_cpus:] or cpus)
    if wanted_cpus is None and quota is None:
        return Limits(servers, load, quota, "none")
    if limits_available():
        return Limits(servers, load, quota, "cgroup")
    print(
        "warning: no writable cgroup here, so the servers are pinned by CPU affinity, which a "
        "server may widen (onnxruntime's default session does)",
        flush=True,
    )
    return Limits(servers, load, quota, "affinity")


@contextmanager
def entering(limits: Limits) -> Iterator[Callable[[], None] | None]:
    """What each server and the raw bracket run first, in their own process, to enter the
    limits."""
    if limits.isolation == "cgroup":
        cpuset = limits.servers if limits.load is not None else None
        with cpu_group(cpuset, limits.quota) as group:
            yield group.enter
    elif limits.isolation == "affinity":
        yield partial(os.sched_setaffinity, 0, limits.servers)
    else:
        yield None


def run_server(
    name: str, args, folder: Path, texts, reference, workdir: Path, limits: Limits, enter
) -> dict:
    server = SERVERS[name]
    brum_env = dict(item.split("=", 1) for item in args.brum_env)
    scratch = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=workdir))
    ctx = context(
        folder,
        scratch,
        sys.executable,
        limits.cores,
        brum_env,
        args.peer_workers,
        limits.load,
        enter,
    )
    if server.requirements:
        try:
            ctx = replace(ctx, python=str(ensure_venv(name, server.requirements)))
        except VenvError as exc:
            print(f"  skipped: {exc}", flush=True)
            return {"settings": ctx.describe(server), "skipped": f"no environment: {exc}"}
    levels = [Level.parse(level) for level in args.levels.split(",")]
    try:
        return measure(server, ctx, texts, reference, levels, args.seconds, args.warmup)
    except RuntimeError as exc:
        print(f"  failed: {exc}", flush=True)
        return {"settings": ctx.describe(server), "skipped": f"failed: {str(exc)[:500]}"}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    folder = args.repository / args.variant
    if not (folder / "variant.json").is_file():
        raise SystemExit(f"{folder}: no variant.json")
    limits = plan_limits(args.cpus, args.quota)
    cores = limits.cores
    load = load_texts(folder, args.texts, args.recipe)
    texts = load.texts
    reference = (texts[0], reference_label(folder, texts[0]))
    names = args.servers.split(",")
    runs: dict[str, list[dict]] = {name: [] for name in names}
    with entering(limits) as enter:
        print(f"raw onnxruntime, before ({cores} cores)", flush=True)
        raw_before = raw_bracket(folder, texts, cores, enter)
        with tempfile.TemporaryDirectory(prefix="brum-peers-") as workdir:
            for round_index in range(args.rounds):
                for name in rotated(names, round_index):
                    print(f"[{name}, round {round_index + 1} of {args.rounds}]", flush=True)
                    runs[name].append(
                        run_server(
                            name, args, folder, texts, reference, Path(workdir), limits, enter
                        )
                    )
        print("raw onnxruntime, after", flush=True)
        raw_after = raw_bracket(folder, texts, cores, enter)
    servers = {name: fold_server(runs[name]) for name in names}
    raw = {
        key: (min if key.startswith("session_run") else max)(raw_before[key], raw_after[key])
        for key in (
            "raw_batch32_texts_per_second",
            "session_run_p50_ms_1_thread",
            "session_run_p50_ms_all_cores",
        )
    }
    result = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "python -m loadtests.peers "
        + " ".join(argv if argv is not None else sys.argv[1:]),
        "cores": cores,
        "cpus": {
            "servers": sorted(limits.servers),
            "load": sorted(limits.load if limits.load is not None else limits.servers),
            "quota": limits.quota,
            "isolation": limits.isolation,
        },
        "cpu": cpu_model(),
        "onnxruntime": onnxruntime.__version__,
        "variant": args.variant,
        "seconds": args.seconds,
        "rounds": args.rounds,
        "texts": len(texts),
        "dataset": load.dataset,
        "text_tokens": load.tokens,
        "raw_before": raw_before,
        "raw_after": raw_after,
        "raw": raw,
        "servers": servers,
        "ratios": ratios(servers, raw["raw_batch32_texts_per_second"]),
        "goals": goals(servers, raw),
    }
    args.output.mkdir(parents=True, exist_ok=True)
    suffix = f"-{args.cpus}cpu" if args.cpus is not None else ""
    suffix += f"-quota{args.quota:g}" if args.quota is not None else ""
    stem = args.output / f"peers-{args.variant}{suffix}"
    table = render_markdown(result)
    # Not with_suffix: a quota of 0.5 or a variant named v1.2 has a dot of its own.
    Path(f"{stem}.md").write_text(table)
    Path(f"{stem}.json").write_text(json.dumps(result, indent=2) + "\n")
    render_plot(result, Path(f"{stem}.png"))
    print(table)
    print(f"wrote {stem}.md, .json and .png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
