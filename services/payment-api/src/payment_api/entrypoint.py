"""``payment-api serve | migrate | seed | relay``: the process entrypoints."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Callable
from typing import NoReturn

from fastapi import FastAPI
from ticketing_events.logs import configure_logging
from ticketing_events.metrics import configure_metrics
from ticketing_events.tracing import configure_tracing

from payment_api.config import Settings


def _configure_process(settings: Settings) -> None:
    from payment_api.redaction import install_log_redaction

    configure_logging(settings.service_name, settings.log_level)
    install_log_redaction()
    configure_tracing(settings.service_name)
    configure_metrics(settings.service_name)


def app_factory() -> FastAPI:
    """Builds the app in each uvicorn worker process, from the environment."""
    from payment_api.api.app import create_app

    settings = Settings()
    _configure_process(settings)
    return create_app(settings)


def serve(settings: Settings) -> None:
    import uvicorn

    if settings.post_processing == "sync":
        from payment_api.adapters.inline_post_processing import MissingExtra, require_extra

        try:
            require_extra()  # here, once, rather than in every worker
        except MissingExtra as exc:
            sys.exit(f"payment-api: {exc}")

    uvicorn.run(
        "payment_api.entrypoint:app_factory",
        factory=True,
        host=settings.api_host,
        port=settings.api_port,
        workers=settings.api_workers,
        log_config=None,  # keep the JSON logging set up by app_factory
        access_log=False,
    )


def migrate(settings: Settings) -> None:
    from payment_api.migrations import upgrade

    configure_logging(settings.service_name, settings.log_level)
    upgrade(settings)


def seed(settings: Settings, args: argparse.Namespace) -> None:
    from payment_api.adapters.database import create_db_engine
    from payment_api.seed import seed as run_seed

    engine = create_db_engine(settings)
    try:
        seeded = run_seed(
            engine,
            concerts_count=args.concerts,
            schedules_per_concert=args.schedules,
            seats_per_schedule=args.seats,
            users_count=args.users,
            points=args.points,
            price=args.price,
        )
    finally:
        engine.dispose()
    ids = seeded.user_ids
    users = f"{len(ids)} users (ids {ids[0]}..{ids[-1]})" if ids else "no users"
    print(
        f"seeded {len(seeded.concert_ids)} concerts, {len(seeded.schedule_ids)} schedules, "
        f"{len(seeded.seat_ids)} seats, {users}"
    )


def relay(settings: Settings) -> None:
    """Run only the outbox relay until SIGTERM/SIGINT."""
    from payment_api.adapters.database import create_db_engine
    from payment_api.adapters.outbox import OutboxListener
    from payment_api.bootstrap import build_producer, build_relay, instrument_libraries

    _configure_process(settings)
    instrument_libraries()
    if settings.relay_metrics_port:
        from prometheus_client import start_http_server
        from ticketing_events.metrics import REGISTRY

        start_http_server(settings.relay_metrics_port, registry=REGISTRY)
    engine = create_db_engine(settings)
    outbox_relay = build_relay(settings, engine, build_producer(settings))
    # PostgreSQL wakes it on the API's commits; SQLite leaves it to its sweep.
    listener = None if settings.is_sqlite else OutboxListener(engine, outbox_relay.notify)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    outbox_relay.start()
    outbox_relay.notify()  # publish what is already waiting
    if listener is not None:
        listener.start()
    stop.wait()
    if listener is not None:
        listener.stop()
    outbox_relay.stop()
    engine.dispose()


class Parser(argparse.ArgumentParser):
    """A bad argument gets one line on stderr and exit 2, without the usage (``-h`` has it)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


BIGINT = 2**63 - 1  # points and prices are BIGINT columns


def whole(least: int, most: int | None = None) -> Callable[[str], int]:
    """An argparse type: a whole number from ``least`` to ``most``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
        if value < least:
            raise argparse.ArgumentTypeError(f"must be {least} or more, not {value}")
        if most is not None and value > most:
            raise argparse.ArgumentTypeError(f"must be {most} or less, not {value}")
        return value

    return parse


def main(argv: list[str] | None = None) -> None:
    parser = Parser(prog="payment-api", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("serve", help="run the HTTP API (uvicorn; API_HOST, API_PORT, API_WORKERS)")
    commands.add_parser("migrate", help="apply the database migrations (alembic upgrade head)")
    commands.add_parser("relay", help="run only the outbox relay")
    seeding = commands.add_parser("seed", help="insert demo concerts, seats and users")
    seeding.add_argument("--concerts", type=whole(0), default=3, help="0: users only")
    seeding.add_argument("--schedules", type=whole(1), default=2, help="schedules per concert")
    seeding.add_argument("--seats", type=whole(1), default=50, help="seats per schedule")
    seeding.add_argument("--users", type=whole(0), default=100, help="0: concerts only")
    seeding.add_argument("--points", type=whole(0, BIGINT), default=1_000_000, help="per user")
    seeding.add_argument("--price", type=whole(0, BIGINT), default=150_000, help="of every seat")
    args = parser.parse_args(argv)
    settings = Settings()
    match args.command:
        case "serve":
            serve(settings)
        case "migrate":
            migrate(settings)
        case "seed":
            seed(settings, args)
        case "relay":
            relay(settings)
