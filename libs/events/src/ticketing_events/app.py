"""A consumer service declared in one module.

    app = ConsumerApp("ranking-consumer", Settings, resources=[engine, redis],
                      outage_errors=DB_OUTAGE_ERRORS + REDIS_OUTAGE_ERRORS)

    @app.subscriber(PaymentSucceeded)
    def ranking(settings: Settings, engine: Engine, redis: Redis) -> BatchHandler:
        return update_ranking(SqlSalesLedger(engine, settings.consumer_group), ...)

    main = app.main  # the console script: ``ranking-consumer run``

The service's name finds its group and topics in the topic registry; its subscribers must
cover exactly those topics. A resource is a function named after what it gives (``engine``,
``redis``, ...) that returns it, or yields it and cleans up after the yield; a subscriber is a
function that builds the handler of one event type, a batch handler or, with
``batch=False``, a one-event handler. Both get what they ask for by parameter name:
``settings`` or a resource declared before. ``run`` sets up logs, traces and metrics, opens
the resources, consumes until SIGTERM, commits, then closes them in reverse order.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from ticketing_events.consumer import BatchHandler, ConsumerRuntime, each
from ticketing_events.logs import configure_logging
from ticketing_events.metrics import configure_metrics
from ticketing_events.schemas import Envelope
from ticketing_events.service import RedisServiceSettings, ServiceSettings
from ticketing_events.settings import ConsumerSettings, KafkaSettings
from ticketing_events.topics import TOPIC_EVENTS, group_of
from ticketing_events.tracing import configure_tracing

if TYPE_CHECKING:  # the extras db and redis: a service installs the ones it uses
    from redis import Redis
    from sqlalchemy import Engine

    from ticketing_events.db import DatabaseServiceSettings

S = TypeVar("S", bound=ServiceSettings)
F = TypeVar("F", bound=Callable[..., Any])


def engine(settings: DatabaseServiceSettings) -> Iterator[Engine]:
    """The SQLAlchemy engine of ``DATABASE_*`` (the ``db`` extra)."""
    from ticketing_events.db import engine_for

    made = engine_for(settings)
    try:
        yield made
    finally:
        made.dispose()


def redis(settings: RedisServiceSettings) -> Iterator[Redis]:
    """The Redis client of ``REDIS_*`` (the ``redis`` extra)."""
    from ticketing_events.redis_layout import redis_client

    with redis_client(settings.redis_url, settings.redis_socket_timeout_s) as client:
        yield client


def app_package(service: str) -> str:
    """A consumer service's package, named after it; its app is ``<package>.app``."""
    return service.replace("-", "_")


def load_app(service: str) -> ConsumerApp[Any]:
    """The ``app`` of a consumer service of the registry (its package installed)."""
    module = f"{app_package(service)}.app"
    app = importlib.import_module(module).app
    if not isinstance(app, ConsumerApp) or app.service != service:
        raise TypeError(f"{module}.app is not {service}'s ConsumerApp")
    return app


class _Injected:
    """A function called with the values its parameters name."""

    def __init__(self, function: Callable[..., Any]) -> None:
        self.function = function
        self.name = function.__name__
        self.needs = tuple(inspect.signature(function).parameters)

    def call(self, available: Mapping[str, Any]) -> Any:
        missing = [n for n in self.needs if n not in available]
        if missing:
            raise TypeError(f"{self.name} asks for {missing}; there are {sorted(available)}")
        return self.function(**{n: available[n] for n in self.needs})

    def open(self, available: Mapping[str, Any], stack: ExitStack) -> Any:
        """The value; a generator function's code after its yield runs when ``stack`` closes."""
        if not inspect.isgeneratorfunction(self.function):
            return self.call(available)
        return stack.enter_context(contextmanager(self.call)(available))


class ConsumerApp(Generic[S]):
    """One consumer service: its settings, resources, subscribers and commands."""

    def __init__(
        self,
        service: str,
        settings: type[S],
        *,
        resources: Sequence[Callable[..., Any]] = (),
        outage_errors: tuple[type[BaseException], ...] = (),
        description: str | None = None,
    ) -> None:
        registered = group_of(service)
        self.service = service
        self.group = registered.name
        self.topics = registered.topics
        self.description = description
        self._settings = settings
        self._outage_errors = outage_errors
        self._resources: list[_Injected] = [_Injected(r) for r in resources]
        self._subscribers: dict[type[Envelope], tuple[_Injected, bool]] = {}
        self._commands: dict[str, tuple[str, _Injected]] = {}

    # -- declaring --------------------------------------------------------------------------

    def resource(self, function: F) -> F:
        """Declare a resource after those given so far (it may ask for them)."""
        self._resources.append(_Injected(function))
        return function

    def subscriber(self, event: type[Envelope], *, batch: bool = True) -> Callable[[F], F]:
        """Declare the function that builds the handler of ``event``'s deliveries."""

        def declare(function: F) -> F:
            if event in self._subscribers:
                raise ValueError(f"{self.service} has two subscribers of {event.TYPE}")
            self._subscribers[event] = (_Injected(function), batch)
            return function

        return declare

    def command(self, name: str, help_text: str) -> Callable[[F], F]:
        """Declare a command besides ``run``, called with the resources open."""

        def declare(function: F) -> F:
            self._commands[name] = (help_text, _Injected(function))
            return function

        return declare

    # -- building ---------------------------------------------------------------------------

    def settings(self, **values: Any) -> S:
        """The settings from the environment and ``values``; the service name and the registry
        group where neither sets them."""
        read = self._settings(**values)
        defaults = {"service_name": self.service, "consumer_group": self.group}
        return read.model_copy(update={k: v for k, v in defaults.items() if not getattr(read, k)})

    def open(
        self, settings: S, stack: ExitStack, given: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """The resources, those in ``given`` as they are and the others opened on ``stack``."""
        opened: dict[str, Any] = {"settings": settings, **(given or {})}
        for resource in self._resources:
            if resource.name not in opened:
                opened[resource.name] = resource.open(opened, stack)
        del opened["settings"]
        return opened

    def handlers(
        self, settings: S, resources: Mapping[str, Any]
    ) -> dict[type[Envelope], BatchHandler]:
        """The batch handler of each event type."""
        subscribed = {t for t, cls in TOPIC_EVENTS.items() if cls in self._subscribers}
        if subscribed != set(self.topics):
            raise ValueError(
                f"{self.service} subscribes to {sorted(subscribed)}; "
                f"its group reads {sorted(self.topics)} (topics.py)"
            )
        available = {"settings": settings, **resources}
        built: dict[type[Envelope], BatchHandler] = {}
        for event, (factory, batch) in self._subscribers.items():
            handler = factory.call(available)
            built[event] = handler if batch else each(handler)
        return built

    def runtime(
        self,
        settings: S,
        resources: Mapping[str, Any],
        *,
        kafka: KafkaSettings | None = None,
        consumer: ConsumerSettings | None = None,
    ) -> ConsumerRuntime:
        """The consumer of ``settings.consumer_group`` with these resources."""
        return ConsumerRuntime(
            settings.consumer_group,
            self.handlers(settings, resources),
            kafka=kafka or KafkaSettings(),
            settings=consumer or ConsumerSettings(),
            outage_errors=self._outage_errors,
        )

    # -- the process ------------------------------------------------------------------------

    def run(self) -> None:
        """Consume until SIGTERM/SIGINT, commit, then close the resources."""
        settings = self.settings()
        configure_logging(settings.service_name, settings.log_level)
        configure_tracing(settings.service_name)
        configure_metrics(settings.service_name)
        with ExitStack() as stack:
            resources = self.open(settings, stack)
            self.runtime(settings, resources).run(install_signal_handlers=True)

    def main(self, argv: list[str] | None = None) -> None:
        """The command line: ``run`` and the declared commands."""
        parser = argparse.ArgumentParser(prog=self.service, description=self.description)
        sub = parser.add_subparsers(dest="command", required=True)
        topics = ", ".join(self.topics)
        sub.add_parser("run", help=f"consume {topics} in {self.group}")
        for name, (help_text, _) in self._commands.items():
            sub.add_parser(name, help=help_text)
        args = parser.parse_args(argv)
        if args.command == "run":
            self.run()
            return
        settings = self.settings()
        configure_logging(settings.service_name, settings.log_level)
        with ExitStack() as stack:
            resources = self.open(settings, stack)
            self._commands[args.command][1].call({"settings": settings, **resources})
