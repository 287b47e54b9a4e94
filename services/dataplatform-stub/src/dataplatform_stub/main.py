"""``dataplatform-stub serve``: the data platform stand-in, its ingest API on
``DATAPLATFORM_STUB_HOST:PORT`` and its admin API on ``DATAPLATFORM_STUB_HOST:ADMIN_PORT``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Iterator

import uvicorn
from starlette.applications import Starlette

from dataplatform_stub.app import create_apps
from dataplatform_stub.config import Settings


class _Server(uvicorn.Server):
    """One of the process's two servers: signals are handled once, for both, by ``_serve``."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _server(app: Starlette, settings: Settings, port: int) -> _Server:
    return _Server(
        uvicorn.Config(
            app,
            host=settings.host,
            port=port,
            log_level=settings.log_level,
            access_log=False,
            timeout_graceful_shutdown=2,  # hung requests would hold the shutdown forever
        )
    )


async def _run(server: _Server) -> int:
    """Serve until told to stop; the exit code (uvicorn exits when it cannot start)."""
    try:
        await server.serve()
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1
    return 0


async def _serve(servers: list[_Server]) -> int:
    """Run the servers in this event loop (they share the platform) until SIGTERM/SIGINT or
    until one stops (e.g. its port is taken); the worst exit code."""

    def stop() -> None:
        for server in servers:
            server.should_exit = True

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop)
    tasks = [asyncio.create_task(_run(server)) for server in servers]
    await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    stop()
    return max(await asyncio.gather(*tasks))


def serve() -> None:
    settings = Settings()
    apps = create_apps(settings.knobs(), settings.max_bodies)
    servers = [
        _server(apps.ingest, settings, settings.port),
        _server(apps.admin, settings, settings.admin_port),
    ]
    sys.exit(asyncio.run(_serve(servers)))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="dataplatform-stub", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("serve", help="serve the stub until SIGTERM/SIGINT")
    parser.parse_args(argv)
    serve()


if __name__ == "__main__":
    main()
