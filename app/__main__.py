"""Run the service: ``python -m app`` (or ``brum-serve``), configured by ``BRUM_*`` variables."""

from __future__ import annotations

from app.logs import configure_logging
from app.settings import Settings


def main() -> None:
    settings = Settings()
    configure_logging(settings.log_level, settings.log_format)
    # Each imports only its side: a supervisor that loads no app holds 90 MB less.
    if settings.processes > 1:
        from app.supervisor import supervise

        supervise(settings)
    else:
        from app.runtime.amx import load_onnxruntime

        load_onnxruntime()  # before the app imports it
        from app.server import serve

        serve(settings)


if __name__ == "__main__":
    main()
