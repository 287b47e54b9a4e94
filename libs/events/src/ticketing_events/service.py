"""The process shell every consumer service shares: settings, logging, tracing, ``<name> run``.

A service's ``main.py`` keeps only its composition root (``build_runtime``) and calls
``service_cli`` with a ``run`` command that calls ``run_consumer``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from typing import Protocol

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from ticketing_events.consumer import ConsumerRuntime
from ticketing_events.logs import configure_logging
from ticketing_events.metrics import configure_metrics
from ticketing_events.tracing import configure_tracing


class ServiceSettings(BaseSettings):
    """What every consumer service reads from the environment (unprefixed variables).

    Kafka and the consumer runtime read their own ``KAFKA_*`` and ``CONSUMER_*`` variables
    (``ticketing_events.settings``).
    """

    model_config = SettingsConfigDict(extra="ignore")

    service_name: str
    log_level: str = "INFO"
    # The registry's group; only tests and side-by-side replays choose another one.
    consumer_group: str


class RedisServiceSettings(ServiceSettings):
    """A service with Redis effects."""

    redis_url: str = "redis://127.0.0.1:6379/0"
    # Prepended to every Redis key, as in payment-api; empty in production, set by tests.
    redis_key_prefix: str = ""
    redis_socket_timeout_s: float = Field(default=5.0, gt=0)


def run_consumer(settings: ServiceSettings, build: Callable[[ExitStack], ConsumerRuntime]) -> None:
    """Set up logs, traces and metrics, build the runtime, consume until SIGTERM/SIGINT, then close.

    ``build`` registers its clients on the stack; they close after the final commit.
    """
    configure_logging(settings.service_name, settings.log_level)
    configure_tracing(settings.service_name)
    configure_metrics(settings.service_name)
    with ExitStack() as stack:
        build(stack).run(install_signal_handlers=True)


class Main(Protocol):
    def __call__(self, argv: list[str] | None = None) -> None: ...


def service_cli(
    prog: str, description: str | None, commands: Mapping[str, tuple[str, Callable[[], None]]]
) -> Main:
    """A command line of subcommands, ``{name: (help, function)}``, e.g. ``run``."""

    def main(argv: list[str] | None = None) -> None:
        parser = argparse.ArgumentParser(prog=prog, description=description)
        sub = parser.add_subparsers(dest="command", required=True)
        for name, (help_text, _) in commands.items():
            sub.add_parser(name, help=help_text)
        args = parser.parse_args(argv)
        commands[args.command][1]()

    return main
