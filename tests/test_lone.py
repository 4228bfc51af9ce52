"""The lone route: it starts on calibration's choice, explores the other session in short bursts
and follows the one the lone texts served show faster."""

from __future__ import annotations

import pytest

from app.core.lone import ENOUGH, EXPLORE_BURST, EXPLORE_EVERY, MARGIN, LoneRoute


def serve(route: LoneRoute, seconds: dict[int, float], texts: int) -> list[int]:
    """Run ``texts`` lone texts, each taking its session's ``seconds``; the sessions picked."""
    picked = []
    for _ in range(texts):
        index = route.pick()
        route.record(index, seconds[index])
        picked.append(index)
    return picked


def test_one_session_is_the_route():
    route = LoneRoute(["only"])
    assert set(serve(route, {0: 1.0}, 3 * EXPLORE_EVERY)) == {0}
    assert route.medians() == [None]
    with pytest.raises(ValueError, match="at least one session"):
        LoneRoute([])


def test_the_other_session_runs_in_short_bursts_and_a_slower_one_is_not_followed():
    switches: list[int] = []
    route = LoneRoute(["calibrated", "other"], on_switch=switches.append)
    picked = serve(route, {0: 1.0, 1: 1.3}, 4 * EXPLORE_EVERY)
    explored = [i for i, index in enumerate(picked) if index == 1]
    starts = [EXPLORE_EVERY * k - 1 for k in (1, 2, 3, 4)]  # every 512th text starts a burst
    bursts = [start + j for start in starts for j in range(EXPLORE_BURST)]
    assert explored == bursts[: 3 * EXPLORE_BURST + 1]  # the last text began the fourth
    assert switches == [] and route.current == 0
    # A burst's first run wakes the session: not timed.
    assert route.medians()[1] == 1.3


def test_a_faster_session_is_followed_once_both_have_enough_timings():
    switches: list[int] = []
    route = LoneRoute(["calibrated", "other"], on_switch=switches.append)
    bursts_needed = -(-ENOUGH // (EXPLORE_BURST - 1))
    picked = serve(route, {0: 1.76, 1: 1.31}, bursts_needed * EXPLORE_EVERY + EXPLORE_BURST)
    assert switches == [1] and route.current == 1
    # From the switch on, the faster session serves, and the slower becomes the one explored.
    after = picked[picked.index(1, bursts_needed * EXPLORE_EVERY - 1) :]
    assert after.count(0) == 0
    more = serve(route, {0: 1.76, 1: 1.31}, 2 * EXPLORE_EVERY)
    assert more.count(0) == 2 * EXPLORE_BURST and switches == [1]


def test_a_difference_within_the_margin_changes_nothing():
    switches: list[int] = []
    route = LoneRoute(["calibrated", "other"], on_switch=switches.append)
    serve(route, {0: 1.0, 1: 1.0 - MARGIN / 2}, 6 * EXPLORE_EVERY)
    assert switches == []


def test_the_route_follows_the_machine_when_it_changes():
    """Calibration was right at first; later the other session is faster, then slower again."""
    switches: list[int] = []
    route = LoneRoute(["calibrated", "other"], on_switch=switches.append)
    serve(route, {0: 1.0, 1: 1.4}, 4 * EXPLORE_EVERY)
    serve(route, {0: 1.5, 1: 1.0}, 8 * EXPLORE_EVERY)
    assert switches == [1]
    serve(route, {0: 1.0, 1: 1.6}, 8 * EXPLORE_EVERY)
    assert switches == [1, 0] and route.current == 0
