"""The peer benchmark's report: a markdown table and a plot (throughput, and p50/p99 latency,
against concurrency, per server)."""

from __future__ import annotations

from pathlib import Path

MB = 1e6
# Other processes' CPU during a level from which its figures are in doubt: a tenth of a 2-core
# machine. Idle, the benchmark's own machine shows 0.00-0.05.
BUSY_MACHINE_CORES = 0.2


def _met(met: bool | None) -> str:
    return "n/a" if met is None else ("**met**" if met else "**not met**")


def _raw_rows(name: str, raw: dict) -> list[str]:
    side, one = raw["one_thread_sessions_side_by_side"], raw["one_session_all_cores"]
    return [
        f"| {name} | {side['raw_batch32_texts_per_second']:.0f} | "
        f"{one['raw_batch32_texts_per_second']:.0f} | {raw['session_run_p50_ms_1_thread']:.3f} | "
        f"{raw['session_run_p50_ms_all_cores']:.3f} | "
        f"{raw['session_run_after_pause_p50_ms_1_thread']:.3f} | "
        f"{raw['session_run_after_pause_p50_ms_all_cores']:.3f} |"
    ]


def _busy(level: dict) -> bool:
    return level.get("other_cpu_cores", 0) >= BUSY_MACHINE_CORES


def _busy_levels(servers: dict) -> list[str]:
    """The levels run while other processes used the machine: their figures are suspect."""
    busy = [
        f"{name} {level} ({max(r['rounds_other_cpu_cores']):.2f} cores)"
        for name, s in servers.items()
        for level, r in s.get("levels", {}).items()
        if _busy(r)
    ]
    if not busy:
        return []
    return [
        "",
        f"**Busy machine:** other processes used {BUSY_MACHINE_CORES} CPU cores or more during "
        f"{', '.join(busy)}. Those figures are in doubt: run again on a quiet machine.",
    ]


def _brum_starts(brum: dict) -> list[str]:
    """What brum's calibration chose at each start: how much a start batches follows from it,
    and a start's one-connection figure from the threads its lone texts ran on."""
    starts = brum.get("chosen_by_round", [])
    if not starts:
        return []
    lines = [
        "",
        "brum's calibration at each start (round by round): plan; a run's cost, ms, as its "
        "batchers cut by it; the threads of the session that runs lone texts:",
        "",
        "| round | threads x batches side by side | overhead ms a run | ms a token "
        "| lone texts on |",
        "|---|---|---|---|---|",
    ]
    for index, chosen in enumerate(starts, 1):
        plan, cost = chosen.get("plan", {}), chosen.get("batch_cost_ms", {})
        lone = chosen.get("inline_session_threads")
        where = "?" if lone is None else "the queue" if lone == 0 else f"{lone} thread(s)"
        lines.append(
            f"| {index} | {plan.get('threads', '?')} x {plan.get('side_by_side', '?')} | "
            f"{cost.get('overhead', '?')} | {cost.get('token', '?')} | {where} |"
        )
    return lines


def _lone_sessions(servers: dict) -> list[str]:
    """For each brum server, the sessions its processes ran lone texts on right after each
    one-connection level, round by round."""
    lines = []
    for name, server in servers.items():
        for key, level in server.get("levels", {}).items():
            rounds = level.get("rounds_lone_session_threads")
            if not name.startswith("brum") or rounds is None:
                continue
            each = "; ".join(" + ".join(map(str, threads)) for threads in rounds)
            lines.append(
                f"- {name}, after {key}: lone texts on sessions of {each} thread(s) (per "
                "process, round by round)"
            )
    return ["", *lines] if lines else []


def _pinning(result: dict) -> str:
    """Where the servers and wrk ran, when the run emulated a smaller machine."""
    cpus = result.get("cpus")
    if cpus is None:
        return ""
    how = {"cgroup": "a cgroup", "affinity": "CPU affinity"}.get(cpus.get("isolation"), "")
    parts = []
    if cpus["servers"] != cpus["load"]:
        parts.append(f"servers and raw on CPUs {cpus['servers']}, wrk on {cpus['load']}")
    if cpus.get("quota") is not None:
        parts.append(f"servers and raw under a CPU quota of {cpus['quota']:g} CPUs")
    return f" ({'; '.join(parts)}; by {how})" if parts else ""


def _rounds(rounds: int) -> str:
    if rounds == 1:
        return "one round"
    return (
        f"{rounds} rounds, every server started once per round in rotated order; figures are "
        "medians over the rounds"
    )


def _texts(result: dict) -> str:
    return (
        f"{result['texts']} test texts of {result['dataset']}, {result['text_tokens']:.1f} "
        "tokens on average"
    )


def render_markdown(result: dict) -> str:
    lines = [
        f"# Peer benchmark: `{result['variant']}`",
        "",
        f"{result['date']}; {result['cores']} cores ({result['cpu']}); onnxruntime "
        f"{result['onnxruntime']}; {result['seconds']:g} s per level, {_texts(result)} in "
        f"rotation; load from wrk on the same machine{_pinning(result)}; "
        f"{_rounds(result.get('rounds', 1))}.",
        "",
        f"`{result['command']}`",
        "",
        "## Servers",
        "",
        "| server | settings | ready s | RSS ready / after MB | label check |",
        "|---|---|---|---|---|",
    ]
    for name, s in result["servers"].items():
        if "skipped" in s:
            lines.append(f"| {name} | skipped: {s['skipped']} | | | |")
            continue
        check = s.get("verified", {})
        rss = f"{s['rss_ready_bytes'] / MB:.0f} / {s.get('rss_after_bytes', 0) / MB:.0f}"
        mark = "ok" if check.get("match") else "**wrong**"
        lines.append(
            f"| {name} | {s['settings']} | {s['ready_seconds']:.2f} | {rss} | "
            f"{mark}: {check.get('label')!r} |"
        )
    lines += [
        "",
        "## Load (conns x texts per request)",
        "",
        "| server | level | req/s | texts/s | texts/s by round | p50 ms | p95 ms | p99 ms | errors "
        "| CPU cores | texts a batch (brum's `/metrics`) | other processes' CPU cores by round |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, s in result["servers"].items():
        for level, r in s.get("levels", {}).items():
            by_round = " / ".join(f"{x:.0f}" for x in r.get("rounds_texts_per_second", []))
            per_batch = f"{r['texts_per_batch']:.2f}" if "texts_per_batch" in r else "–"
            others = " / ".join(f"{x:.2f}" for x in r.get("rounds_other_cpu_cores", [])) or "–"
            if _busy(r):
                others = f"**{others}**"
            lines.append(
                f"| {name} | {level} | {r['requests_per_second']:.0f} | "
                f"{r['texts_per_second']:.0f} | {by_round} | {r['p50_ms']:.2f} | "
                f"{r['p95_ms']:.2f} | {r['p99_ms']:.2f} | {r['errors']} | "
                f"{r['server_cpu_cores']:.2f} | {per_batch} | {others} |"
            )
    lines += _busy_levels(result["servers"])
    lines += _brum_starts(result["servers"].get("brum", {}))
    lines += _lone_sessions(result["servers"])
    lines += [
        "",
        "## Raw onnxruntime, in-process (no server)",
        "",
        "| when | batch 32, 1-thread sessions side by side, texts/s | batch 32, one "
        "all-cores session, texts/s | session.run batch 1 p50 ms, 1 thread | all cores | "
        "after a 0.5 ms pause, 1 thread | all cores |",
        "|---|---|---|---|---|---|---|",
        *_raw_rows("before the first server", result["raw_before"]),
        *_raw_rows("after the last server", result["raw_after"]),
        "",
        f"raw (best of both configurations and both brackets): "
        f"**{result['raw']['raw_batch32_texts_per_second']:.0f} texts/s**.",
        "",
        "## brum against the best peer and raw",
        "",
        "| level | best peer | brum / best peer | brum / raw |",
        "|---|---|---|---|",
    ]
    for level, r in result["ratios"].items():
        over_peer = "n/a" if r["over_best_peer"] is None else f"{r['over_best_peer']:.2f}x"
        lines.append(
            f"| {level} | {r['best_peer'] or 'none'} | {over_peer} | {r['over_raw']:.2f} |"
        )
    lines += ["", "| goal | brum | target | |", "|---|---|---|---|"]
    for g in result["goals"]:
        lines.append(f"| {g['goal']} | {g['value']} | {g['target']} | {_met(g['met'])} |")
    return "\n".join(lines) + "\n"


def render_plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (throughput, latency) = plt.subplots(1, 2, figsize=(13, 5))
    for index, (name, s) in enumerate(result["servers"].items()):
        levels = s.get("levels", {})
        if not levels:
            continue
        colour = f"C{index}"
        single = sorted(
            (r["connections"], r) for r in levels.values() if r["texts_per_request"] == 1
        )
        x = [c for c, _ in single]
        throughput.plot(
            x, [r["texts_per_second"] for _, r in single], "o-", color=colour, label=name
        )
        latency.plot(x, [r["p50_ms"] for _, r in single], "o-", color=colour, label=f"{name} p50")
        latency.plot(
            x, [r["p99_ms"] for _, r in single], "o--", color=colour, alpha=0.6, label=f"{name} p99"
        )
        for r in levels.values():
            if r["texts_per_request"] > 1:
                throughput.plot(
                    r["connections"],
                    r["texts_per_second"],
                    "s",
                    color=colour,
                    markerfacecolor="none",
                    markersize=9,
                )
    throughput.axhline(
        result["raw"]["raw_batch32_texts_per_second"],
        color="grey",
        ls=":",
        label="raw onnxruntime, batch 32",
    )
    throughput.plot(
        [],
        [],
        "s",
        color="grey",
        markerfacecolor="none",
        label="8 texts per request (hollow squares)",
    )
    connections = sorted(
        {r["connections"] for s in result["servers"].values() for r in s.get("levels", {}).values()}
    )
    for axis in (throughput, latency):
        axis.set_xscale("log", base=2)
        axis.set_xticks(connections, [str(c) for c in connections])
        axis.set_xlabel("concurrent connections")
        axis.grid(alpha=0.3)
    throughput.set_ylim(bottom=0)
    throughput.set_ylabel("texts / s")
    throughput.set_title("throughput (1 text per request, unless marked)")
    latency.set_yscale("log")
    latency.set_ylabel("ms")
    latency.set_title("latency, 1 text per request: p50 (solid), p99 (dashed)")
    throughput.legend(fontsize=8)
    latency.legend(fontsize=7, ncol=2)
    figure.suptitle(f"{result['variant']}, {result['cores']} cores, {result['date']}")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
