"""ConsumerApp: settings from the registry, resources by name and in order, subscribers that
must match the group's topics, and the command line."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from typing import Any

import pytest
from ticketing_events.app import ConsumerApp, load_app
from ticketing_events.consumer import Delivery
from ticketing_events.schemas import PaymentFailed, PaymentSucceeded, ReservationCreated
from ticketing_events.service import RedisServiceSettings
from ticketing_events.testing import payment_failed, payment_succeeded

SERVICE = "cleanup-consumer"  # reads payment.success and payment.failed


class Settings(RedisServiceSettings):
    tag: str = "default"


def delivery(event: Any) -> Delivery[Any]:
    return Delivery(event, event.TYPE, 0, 0, None, None)  # type: ignore[arg-type]


def make_app(log: list[str]) -> ConsumerApp[Settings]:
    app = ConsumerApp(SERVICE, Settings)

    @app.resource
    def first(settings: Settings) -> Iterator[str]:
        log.append("open first")
        yield f"first({settings.tag})"
        log.append("close first")

    @app.resource
    def second(first: str) -> str:
        log.append("open second")
        return f"second({first})"

    @app.subscriber(PaymentSucceeded)
    def on_success(second: str) -> Any:
        def handle(batch: Sequence[Delivery[PaymentSucceeded]]) -> None:
            log.append(f"{second}: {len(batch)} succeeded")

        return handle

    @app.subscriber(PaymentFailed, batch=False)
    def on_failure(settings: Settings) -> Any:
        def handle(one: Delivery[PaymentFailed]) -> None:
            log.append(f"{settings.consumer_group}: one failed")

        return handle

    @app.command("show", "print the resources")
    def show(first: str, second: str) -> None:
        log.append(f"show {first} {second}")

    return app


def test_the_registry_gives_the_group_and_unset_settings(monkeypatch):
    app = make_app([])
    assert (app.group, app.topics) == (
        "post-payment-cleanup-group",
        (
            "payment.success",
            "payment.failed",
        ),
    )
    settings = app.settings()
    assert (settings.service_name, settings.consumer_group) == (SERVICE, app.group)
    monkeypatch.setenv("CONSUMER_GROUP", "replay-group")
    monkeypatch.setenv("TAG", "from-env")
    settings = app.settings()
    assert (settings.consumer_group, settings.tag) == ("replay-group", "from-env")
    assert app.settings(consumer_group="given").consumer_group == "given"


def test_resources_open_in_order_by_name_and_close_in_reverse():
    log: list[str] = []
    app = make_app(log)
    settings = app.settings(tag="t")
    with ExitStack() as stack:
        resources = app.open(settings, stack)
        assert resources == {"first": "first(t)", "second": "second(first(t))"}
        handlers = app.handlers(settings, resources)
        handlers[PaymentSucceeded]([delivery(payment_succeeded(1)), delivery(payment_succeeded(2))])
        handlers[PaymentFailed]([delivery(payment_failed(1)), delivery(payment_failed(2))])
        assert "close first" not in log
    assert log == [
        "open first",
        "open second",
        "second(first(t)): 2 succeeded",
        f"{app.group}: one failed",  # batch=False: the handler sees one delivery at a time
        f"{app.group}: one failed",
        "close first",
    ]


def test_given_resources_are_used_as_they_are():
    log: list[str] = []
    app = make_app(log)
    with ExitStack() as stack:
        resources = app.open(app.settings(), stack, {"first": "mine"})
    assert resources == {"first": "mine", "second": "second(mine)"}
    assert log == ["open second"]


def test_subscribers_must_cover_the_groups_topics_exactly():
    app = ConsumerApp(SERVICE, Settings)
    app.subscriber(PaymentSucceeded)(lambda: lambda batch: None)
    with pytest.raises(ValueError, match="its group reads"):
        app.handlers(app.settings(), {})
    app.subscriber(PaymentFailed)(lambda: lambda batch: None)
    app.subscriber(ReservationCreated)(lambda: lambda batch: None)
    with pytest.raises(ValueError, match="its group reads"):
        app.handlers(app.settings(), {})
    with pytest.raises(ValueError, match="two subscribers"):
        app.subscriber(PaymentFailed)(lambda: lambda batch: None)


def test_a_parameter_that_names_nothing_is_a_clear_error():
    app = ConsumerApp(SERVICE, Settings)
    app.subscriber(PaymentSucceeded)(lambda nothing: lambda batch: None)
    app.subscriber(PaymentFailed)(lambda: lambda batch: None)
    with pytest.raises(TypeError, match=r"asks for \['nothing'\]"):
        app.handlers(app.settings(), {})


def test_a_service_outside_the_registry_has_no_app():
    with pytest.raises(KeyError, match="no consumer of the topic registry"):
        ConsumerApp("no-such-consumer", Settings)


def test_a_command_runs_with_the_resources_open(capsys, monkeypatch):
    # configure_logging would cache structlog's loggers for every later test
    monkeypatch.setattr("ticketing_events.app.configure_logging", lambda *_: None)
    log: list[str] = []
    app = make_app(log)
    app.main(["show"])
    assert log == [
        "open first",
        "open second",
        "show first(default) second(first(default))",
        "close first",
    ]
    with pytest.raises(SystemExit):
        app.main(["--help"])
    usage = capsys.readouterr().out
    assert "run" in usage and "show" in usage


def test_each_service_of_the_registry_has_its_app():
    from ticketing_events.topics import CONSUMER_GROUPS

    for group in CONSUMER_GROUPS.values():
        app = load_app(group.service)
        assert (app.service, app.group) == (group.service, group.name)
