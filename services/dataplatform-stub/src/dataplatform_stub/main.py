"""``dataplatform-stub serve``: the data platform stand-in on ``DATAPLATFORM_STUB_HOST:PORT``."""

from __future__ import annotations

import argparse

import uvicorn

from dataplatform_stub.app import create_app
from dataplatform_stub.config import Settings


def serve() -> None:
    settings = Settings()
    uvicorn.run(
        create_app(settings.knobs(), settings.max_bodies),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=False,
        timeout_graceful_shutdown=2,  # hung requests would hold the shutdown forever
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="dataplatform-stub", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("serve", help="serve the stub until SIGTERM/SIGINT")
    parser.parse_args(argv)
    serve()


if __name__ == "__main__":
    main()
