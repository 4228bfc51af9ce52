"""Run the service: ``python -m app`` (or ``brum-serve``), configured by ``BRUM_*`` variables."""

from __future__ import annotations

import logging
import sys

import uvicorn

from app.core.card import CardError
from app.core.experiment import ExperimentError
from app.settings import Settings
from app.transport.api import create_app


def main() -> None:
    settings = Settings()
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    try:
        app = create_app(settings)
    except (CardError, ExperimentError) as exc:
        logging.getLogger("brum").error("cannot serve the model repository: %s", exc)
        sys.exit(2)
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        # One process per container: scale out with replicas, not workers.
        workers=1,
    )


if __name__ == "__main__":
    main()
