"""Peer benchmark: brum against a naive FastAPI app, KServe, MLServer and BentoML, all serving the
same ONNX variant on the same cores, one server at a time, bracketed by raw in-process
onnxruntime. Load from wrk; writes peers-<variant>.md, .json and .png.

    python -m loadtests.peers [--variant NAME] [--servers brum,naive,kserve,mlserver,bentoml]
        [--seconds 10] [--rounds 3] [--levels 1x1,8x1,32x1,64x1,16x8] [--texts 1000]
        [--output DIR] [--brum-env KEY=VALUE ...] [--peer-workers 0]

Every server runs once per round, the rounds in rotated order; figures are medians over the
rounds (loadtests/peers/rounds.py).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import onnxruntime

from app.settings import SHIPPED_REPOSITORY
from loadtests.peers.goals import goals, ratios
from loadtests.peers.measure import Level, context, measure
from loadtests.peers.raw import raw_bracket, reference_label
from loadtests.peers.render import render_markdown, render_plot
from loadtests.peers.rounds import fold_server, rotated
from loadtests.peers.servers import SERVERS
from loadtests.peers.venvs import VenvError, ensure_venv
from loadtests.processes import ROOT, cpu_model
from models.sources.clinc150 import load_clinc150

DEFAULT_LEVELS = "1x1,8x1,32x1,64x1,16x8"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repository", type=Path, default=SHIPPED_REPOSITORY)
    parser.add_argument("--variant", default="minilm-l6-augmented-int8")
    parser.add_argument("--servers", default=",".join(SERVERS), help="comma-separated, in order")
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
    parser.add_argument("--texts", type=int, default=1000, help="test utterances in rotation")
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
        help="pin every server and the raw bracket to this many CPUs, and wrk to the others: a "
        "smaller machine, emulated (default: every CPU for all of them)",
    )
    args = parser.parse_args(argv)
    available = len(os.sched_getaffinity(0))
    if args.cpus is not None and not 1 <= args.cpus <= available:
        parser.error(f"--cpus must be between 1 and the {available} CPUs this process may use")
    unknown = set(args.servers.split(",")) - set(SERVERS)
    if unknown:
        parser.error(f"unknown servers {sorted(unknown)}; choose from {list(SERVERS)}")
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    if any("=" not in item for item in args.brum_env):
        parser.error("--brum-env takes KEY=VALUE")
    return args


def test_texts(count: int) -> list[str]:
    test = load_clinc150().splits["test"]
    order = np.random.default_rng(0).permutation(len(test.texts))[:count]
    return [test.texts[i] for i in order]


@contextmanager
def pinned(cpus: frozenset[int]) -> Iterator[None]:
    """This process (and what it starts meanwhile) on ``cpus``, then back where it was."""
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cpus)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def split_cpus(wanted: int | None) -> tuple[frozenset[int], frozenset[int] | None]:
    """(the servers' CPUs, wrk's): the first ``wanted`` of this process's CPUs for the servers
    and the rest for wrk, or all of them for both."""
    cpus = sorted(os.sched_getaffinity(0))
    if wanted is None:
        return frozenset(cpus), None
    return frozenset(cpus[:wanted]), frozenset(cpus[wanted:] or cpus)


def run_server(name: str, args, folder: Path, texts, reference, workdir: Path, cpus: tuple) -> dict:
    server = SERVERS[name]
    brum_env = dict(item.split("=", 1) for item in args.brum_env)
    scratch = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=workdir))
    servers_cpus, load_cpus = cpus
    ctx = context(
        folder, scratch, sys.executable, len(servers_cpus), brum_env, args.peer_workers, load_cpus
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
    cpus = split_cpus(args.cpus)
    cores = len(cpus[0])
    # The servers (started from here) and the raw bracket (run here) inherit these CPUs.
    with pinned(cpus[0]):
        texts = test_texts(args.texts)
        reference = (texts[0], reference_label(folder, texts[0]))
        print(f"raw onnxruntime, before ({cores} cores)", flush=True)
        raw_before = raw_bracket(folder, texts, cores)
        names = args.servers.split(",")
        runs: dict[str, list[dict]] = {name: [] for name in names}
        with tempfile.TemporaryDirectory(prefix="brum-peers-") as workdir:
            for round_index in range(args.rounds):
                for name in rotated(names, round_index):
                    print(f"[{name}, round {round_index + 1} of {args.rounds}]", flush=True)
                    runs[name].append(
                        run_server(name, args, folder, texts, reference, Path(workdir), cpus)
                    )
        servers = {name: fold_server(runs[name]) for name in names}
        print("raw onnxruntime, after", flush=True)
        raw_after = raw_bracket(folder, texts, cores)
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
            "servers": sorted(cpus[0]),
            "load": sorted(cpus[1]) if cpus[1] is not None else sorted(cpus[0]),
        },
        "cpu": cpu_model(),
        "onnxruntime": onnxruntime.__version__,
        "variant": args.variant,
        "seconds": args.seconds,
        "rounds": args.rounds,
        "texts": len(texts),
        "raw_before": raw_before,
        "raw_after": raw_after,
        "raw": raw,
        "servers": servers,
        "ratios": ratios(servers, raw["raw_batch32_texts_per_second"]),
        "goals": goals(servers, raw),
    }
    args.output.mkdir(parents=True, exist_ok=True)
    suffix = f"-{args.cpus}cpu" if args.cpus is not None else ""
    stem = args.output / f"peers-{args.variant}{suffix}"
    table = render_markdown(result)
    stem.with_suffix(".md").write_text(table)
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    render_plot(result, stem.with_suffix(".png"))
    print(table)
    print(f"wrote {stem}.md, .json and .png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
