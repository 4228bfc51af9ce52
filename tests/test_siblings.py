"""What a serving process knows of the others: their open connections, in memory they share."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from app.siblings import ConnectionCounts, CountedConnections, Share, shared_counts


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
        share = Share(cores=(2, 3), machine=(0, 1, 2, 3), counts=ConnectionCounts(fd, 1))
        assert share.helper_cores == (0, 1, 3)
    finally:
        os.close(fd)
