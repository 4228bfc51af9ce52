"""One serving process: the app on uvicorn, with a drain on SIGTERM."""

from __future__ import annotations

import logging
import signal
import socket
import sys
import threading
import time
from types import FrameType

import uvicorn

from app.core.card import CardError
from app.core.engine import Engine
from app.core.experiment import ExperimentError
from app.settings import Settings
from app.siblings import CountedConnections, Share
from app.transport.api import create_app, serving_app

logger = logging.getLogger("brum")


class DrainingServer(uvicorn.Server):
    """On SIGTERM or SIGINT: stop being ready at once, keep serving for ``drain_delay`` (so load
    balancers stop sending), then stop accepting and finish what was accepted, within the
    graceful-shutdown timeout. A second signal stops at once. A clean drain exits with 0."""

    def __init__(self, config: uvicorn.Config, engine: Engine, drain_delay: float) -> None:
        super().__init__(config)
        self.engine = engine
        self.drain_delay = drain_delay
        self.signalled = False

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.signalled:
            self.should_exit = True
            self.force_exit = self.force_exit or sig == signal.SIGINT
            return
        self.signalled = True
        # uvicorn calls this as a signal handler: between two bytecodes of whatever the main
        # thread was doing, maybe inside a metric's update, under a lock that is not reentrant
        # (in multiprocess mode, one lock for every metric). Taking it here waited forever: the
        # drain's own work runs on a thread of its own.
        name = signal.Signals(sig).name
        threading.Thread(target=self._drain, args=(name,), name="brum-drain", daemon=True).start()

    def _drain(self, signal_name: str) -> None:
        self.engine.drain()
        logger.info("%s: draining for %.1f s", signal_name, self.drain_delay)
        time.sleep(self.drain_delay)
        self.should_exit = True


def serve(
    settings: Settings, sockets: list[socket.socket] | None = None, share: Share | None = None
) -> None:
    """Load the repository and serve it until stopped: on ``settings.host`` and ``port``, or on
    ``sockets`` a supervisor bound for its processes (app/supervisor.py), on their ``share`` of
    the machine."""
    try:
        app = create_app(settings, share)
    except (CardError, ExperimentError) as exc:
        logger.error("cannot serve the model repository: %s", exc)
        sys.exit(2)
    config = uvicorn.Config(
        serving_app(app),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        log_config=None,  # configure_logging did it
        access_log=False,  # the request middleware logs each request with its id and variant
        timeout_graceful_shutdown=settings.drain_seconds,
        # More processes are app/supervisor.py's, each one of these.
        workers=1,
    )
    server = DrainingServer(config, app.state.engine, settings.drain_delay_seconds)
    if share is not None:  # the other processes read how many connections this one has open
        server.server_state.connections = CountedConnections(share.counts)
    # Whether a request is the only one the process could be asked for, and whether more can
    # come: see Batcher and InferenceWorkers.
    app.state.engine.connections = lambda: len(server.server_state.connections)
    server.run(sockets)
