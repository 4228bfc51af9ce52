"""What the run says against the goals: brum against the best peer and against raw onnxruntime
at each level, and each goal of the issue met or not (``None``: its figures were not measured)."""

from __future__ import annotations

RSS_LIMIT_BYTES = 300e6
READY_LIMIT_SECONDS = 3.0
SESSION_RUN_MARGIN_MS = 0.5


def best_peer(servers: dict, level: str) -> tuple[str, dict] | None:
    """The peer (not brum in any configuration) with the most texts/s at ``level``."""
    runs = [
        (name, s["levels"][level])
        for name, s in servers.items()
        if not name.startswith("brum") and level in s.get("levels", {})
    ]
    return max(runs, key=lambda run: run[1]["texts_per_second"], default=None)


def ratios(servers: dict, raw: float) -> dict:
    """Per level: brum's texts/s over the best peer's and over raw."""
    brum = servers.get("brum", {}).get("levels", {})
    result = {}
    for level, run in brum.items():
        peer = best_peer(servers, level)
        result[level] = {
            "best_peer": peer[0] if peer else None,
            "over_best_peer": _ratio(run["texts_per_second"], peer[1]["texts_per_second"])
            if peer
            else None,
            "over_raw": _ratio(run["texts_per_second"], raw),
        }
    return result


def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 3) if b else None


def _goal(name: str, value, target: str, met) -> dict:
    value = value if value is None else float(value)
    return {
        "goal": name,
        "value": value,
        "target": target,
        "met": met if met is None else bool(met),
    }


def goals(servers: dict, raw: dict) -> list[dict]:
    brum = servers.get("brum", {})
    levels = brum.get("levels", {})
    table = ratios(servers, raw["raw_batch32_texts_per_second"])
    found = []
    if "32x1" in levels:
        r, peer = table["32x1"], best_peer(servers, "32x1")
        over = r["over_best_peer"]
        found.append(
            _goal(
                "32 conns x 1 text: brum / best peer texts/s",
                over,
                ">= 1.3",
                None if over is None else over >= 1.3,
            )
        )
        found.append(
            _goal("32 conns x 1 text: brum / raw", r["over_raw"], ">= 0.85", r["over_raw"] >= 0.85)
        )
        p99 = levels["32x1"]["p99_ms"]
        found.append(
            _goal(
                "32 conns x 1 text: brum p99 ms vs the best peer's",
                p99,
                f"<= {peer[1]['p99_ms']:.2f} ({peer[0]})" if peer else "<= best peer's",
                p99 <= peer[1]["p99_ms"] if peer else None,
            )
        )
    if "1x1" in levels:
        p50 = levels["1x1"]["p50_ms"]
        naive = servers.get("naive", {}).get("levels", {}).get("1x1")
        found.append(
            _goal(
                "1 conn: brum p50 ms vs naive p50",
                p50,
                f"<= {naive['p50_ms']:.2f}" if naive else "<= naive's",
                p50 <= naive["p50_ms"] if naive else None,
            )
        )
        floor = min(raw["session_run_p50_ms_1_thread"], raw["session_run_p50_ms_all_cores"])
        limit = floor + SESSION_RUN_MARGIN_MS
        found.append(
            _goal(
                "1 conn: brum p50 ms vs raw session.run p50 (best of 1 thread, all cores) + 0.5",
                p50,
                f"<= {limit:.2f}",
                p50 <= limit,
            )
        )
    if "16x8" in levels:
        over = table["16x8"]["over_raw"]
        found.append(_goal("16 conns x 8 texts: brum / raw", over, ">= 0.95", over >= 0.95))
    if "rss_after_bytes" in brum:
        rss = max(brum["rss_ready_bytes"], brum["rss_after_bytes"])
        found.append(
            _goal(
                "brum RSS MB (max of ready, after)",
                round(rss / 1e6, 1),
                "<= 300",
                rss <= RSS_LIMIT_BYTES,
            )
        )
    if "ready_seconds" in brum:
        ready = brum["ready_seconds"]
        found.append(_goal("brum start to ready s", ready, "<= 3", ready <= READY_LIMIT_SECONDS))
    return found
