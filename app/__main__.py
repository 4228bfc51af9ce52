"""Run the service: ``python -m app`` (or ``brum-serve``), configured by ``BRUM_*`` variables."""

from __future__ import annotations

from app.logs import configure_logging
from app.server import serve
from app.settings import Settings
from app.supervisor import supervise


def main() -> None:
    settings = Settings()
    configure_logging(settings.log_level, settings.log_format)
    if settings.processes > 1:
        supervise(settings)
    else:
        serve(settings)


if __name__ == "__main__":
    main()
