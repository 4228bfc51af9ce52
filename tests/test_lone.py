"""The lone route: it starts on calibration's choice, times it against the other session in short
duels and follows the one the lone texts served show faster."""

from __future__ import annotations

import pytest

from app.core.lone import BLOCK, ENOUGH, EXPLORE_EVERY, MARGIN, LoneRoute


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


def test_duels_run_the_other_session_then_its_own_and_time_all_but_each_blocks_first():
    switches: list[int] = []
    route = LoneRoute(["calibrated", "other"], on_switch=lambda i, m: switches.append(i))
    picked = serve(route, {0: 1.0, 1: 1.3}, 4 * EXPLORE_EVERY)
    starts = [EXPLORE_EVERY * k - 1 for k in (1, 2, 3, 4)]  # every 512th text starts a duel
    duels = [start + j for start in starts for j in range(BLOCK)]
    assert [i for i, index in enumerate(picked) if index == 1] == duels[: 3 * BLOCK + 1]
    assert switches == [] and route.current == 0  # the other is slower
    assert route.medians() == [1.0, 1.3]


def test_only_the_duels_are_timed():
    """Runs between duels, however slow, change nothing: at another moment the machine may be
    another machine."""
    route = LoneRoute(["calibrated", "other"])
    for k in range(3 * EXPLORE_EVERY):
        index = route.pick()
        in_duel = (k + 1) % EXPLORE_EVERY < 2 * BLOCK or k % EXPLORE_EVERY >= EXPLORE_EVERY - 1
        route.record(index, {0: 1.0, 1: 1.2}[index] if in_duel else 9.0)
    assert route.medians() == [1.0, 1.2] and route.current == 0


def test_a_faster_session_is_followed_once_both_have_enough_timings():
    switches: list[int] = []
    medians: list[list[float]] = []
    route = LoneRoute(
        ["calibrated", "other"], on_switch=lambda i, m: (switches.append(i), medians.append(m))
    )
    duels_needed = -(-ENOUGH // (BLOCK - 1))
    picked = serve(route, {0: 1.76, 1: 1.31}, duels_needed * EXPLORE_EVERY + 2 * BLOCK)
    assert switches == [1] and route.current == 1
    assert medians == [[1.76, 1.31]]
    assert picked[-1] == 1  # the duel that decided ended on the old session; now the new one
    # From then on the faster session serves, and the slower is the one that duels.
    more = serve(route, {0: 1.76, 1: 1.31}, 2 * EXPLORE_EVERY)
    assert more.count(0) == 2 * BLOCK and switches == [1]


def test_a_difference_within_the_margin_changes_nothing():
    switches: list[int] = []
    route = LoneRoute(["calibrated", "other"], on_switch=lambda i, m: switches.append(i))
    serve(route, {0: 1.0, 1: 1.0 - MARGIN / 2}, 6 * EXPLORE_EVERY)
    assert switches == []


def test_the_route_follows_the_machine_when_it_changes():
    """Calibration was right at first; later the other session is faster, then slower again."""
    switches: list[int] = []
    route = LoneRoute(["calibrated", "other"], on_switch=lambda i, m: switches.append(i))
    serve(route, {0: 1.0, 1: 1.4}, 4 * EXPLORE_EVERY)
    serve(route, {0: 1.5, 1: 1.0}, 8 * EXPLORE_EVERY)
    assert switches == [1]
    serve(route, {0: 1.0, 1: 1.6}, 8 * EXPLORE_EVERY)
    assert switches == [1, 0] and route.current == 0


def test_while_other_processes_have_work_the_confined_session_runs_outside_the_duels():
    route = LoneRoute(["every core", "own cores"], confined=1)
    for _ in range(EXPLORE_EVERY - 1):
        assert route.pick() == 0
    # The next text would start a duel; crowded, it runs on the confined session, untimed.
    assert route.pick(crowded=True) == 1
    route.record(1, 9.0)
    assert route.medians() == [None, None]
    assert route.pick() == 1  # the duel starts on the next uncrowded text
    with pytest.raises(ValueError, match="confined session 2 of 2"):
        LoneRoute(["a", "b"], confined=2)


def test_without_a_confined_session_crowding_changes_nothing():
    route = LoneRoute(["only"])
    assert route.pick(crowded=True) == 0
