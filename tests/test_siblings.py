"""What a serving process knows of the others: their open connections and whether they are
ready, in memory they share."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from app.siblings import (
    ConnectionCounts,
    CountedConnections,
    ReadinessFlags,
    Share,
    shared_counts,
)


def test_each_process_reads_the_connections_of_the_others_not_its_own():
    fd = shared_counts(3)
    try:
        mine = ConnectionCounts(fd, 0)
        mine.publish(5)
        assert mine.elsewhere() == 0
        # Another process maps the same memory from the descriptor it inherits, and publishes.
        script = (
            "import sys; from app.siblings import ConnectionCounts; "
            "c = ConnectionCounts(int(sys.argv[1]), 2); c.publish(4); print(c.elsewhere())"
        )
        other = subprocess.run(
            [sys.executable, "-c", script, str(fd)],
            pass_fds=[fd],
            capture_output=True,
            text=True,
            check=True,
        )
        assert other.stdout.strip() == "5"
        assert mine.elsewhere() == 4
        assert ConnectionCounts(fd, 1).elsewhere() == 9
        with pytest.raises(ValueError, match="slot 3 of 3"):
            ConnectionCounts(fd, 3)
    finally:
        os.close(fd)


def test_the_server_s_connection_set_publishes_its_size_as_it_changes():
    fd = shared_counts(2)
    try:
        counts, reader = ConnectionCounts(fd, 0), ConnectionCounts(fd, 1)
        connections = CountedConnections(counts)
        first, second = object(), object()
        connections.add(first)
        connections.add(second)
        assert reader.elsewhere() == 2
        connections.discard(first)
        connections.discard(first)  # uvicorn may discard a connection twice
        assert reader.elsewhere() == 1 and connections == {second}
    finally:
        os.close(fd)


def test_a_lone_text_s_helper_threads_run_on_every_core_but_the_process_s_first():
    fd = shared_counts(2)
    try:
        share = Share((2, 3), (0, 1, 2, 3), ConnectionCounts(fd, 1), ReadinessFlags(fd, 1))
        assert share.helper_cores == (0, 1, 3)
    finally:
        os.close(fd)


def test_the_processes_are_ready_only_once_every_one_is_and_until_one_drains():
    fd = shared_counts(2)
    try:
        mine, counts = ReadinessFlags(fd, 0), ConnectionCounts(fd, 0)
        mine.publish(True)
        assert not mine.all_ready()  # the other is still loading
        # The other process publishes its flag from the descriptor it inherits.
        script = (
            "import sys; from app.siblings import ReadinessFlags; "
            "ReadinessFlags(int(sys.argv[1]), 1).publish(True)"
        )
        subprocess.run([sys.executable, "-c", script, str(fd)], pass_fds=[fd], check=True)
        assert mine.all_ready() and ReadinessFlags(fd, 1).all_ready()
        assert counts.elsewhere() == 0  # the flags are not counted as connections
        mine.publish(False)
        assert not ReadinessFlags(fd, 1).all_ready()
        with pytest.raises(ValueError, match="slot 2 of 2"):
            ReadinessFlags(fd, 2)
    finally:
        os.close(fd)
