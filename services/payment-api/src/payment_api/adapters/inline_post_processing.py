"""``POST_PROCESSING=sync``: the post-payment steps run inside the request, after the commit,
with the consumer apps' own batch handlers, one event per batch (the system before Kafka).

The consumer packages come with the ``sync-post-processing`` extra and are imported only here,
only in that mode; the production image, built without the extra, never loads them.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Iterable
from contextlib import ExitStack

import structlog
from opentelemetry import context as otel_context
from redis import Redis
from sqlalchemy import Engine
from ticketing_events.app import app_package, load_app
from ticketing_events.consumer import BatchHandler, Delivery
from ticketing_events.schemas import Envelope
from ticketing_events.topics import CONSUMER_GROUPS, PAYMENT_FAILED, PAYMENT_SUCCESS

log = structlog.get_logger(__name__)

EXTRA = "sync-post-processing"
# The registry's groups that act on a payment's outcome; their apps run here.
GROUPS = [g for g in CONSUMER_GROUPS.values() if {PAYMENT_SUCCESS, PAYMENT_FAILED} & set(g.topics)]

Step = tuple[str, BatchHandler]


class InlinePostProcessing:
    """Runs the steps of each event in turn. The payment is committed by then, so a failing
    step is logged and the others still run; the answer stays the committed one."""

    def __init__(self, steps: dict[type[Envelope], list[Step]], close: Callable[[], None]) -> None:
        self._steps = steps
        self._close = close

    def run(self, events: Iterable[Envelope]) -> None:
        for event in events:
            # The request's span is current: the handlers' spans join the request's trace.
            delivery = Delivery(event, event.TYPE, -1, -1, otel_context.get_current(), None)
            for name, handle in self._steps.get(type(event), ()):
                try:
                    handle([delivery])
                except Exception:
                    log.exception("post-payment step failed", step=name, event_id=event.event_id)

    def close(self) -> None:
        self._close()


class MissingExtra(RuntimeError):
    """The consumer packages are not installed."""


def require_extra() -> None:
    """Raise ``MissingExtra`` unless the consumer packages are installed."""
    missing = [
        g.service for g in GROUPS if importlib.util.find_spec(app_package(g.service)) is None
    ]
    if missing:
        raise MissingExtra(
            f"POST_PROCESSING=sync needs payment-api's '{EXTRA}' extra (the consumer packages; "
            f"missing: {', '.join(missing)}): `uv sync --package payment-api --extra {EXTRA}`"
        )


def build_inline_post_processing(
    engine: Engine, client: Redis, redis_key_prefix: str
) -> InlinePostProcessing:
    """The handlers of the consumer apps of ``GROUPS`` on payment-api's own engine and Redis
    client (the resources ``engine`` and ``redis``), in their registry groups (so their
    once-per-event records are the consumers' own). Other resources (the data platform client)
    and settings come from the consumers' variables (``DATAPLATFORM_*``,
    ``SEAT_RELEASED_TTL_S``)."""
    require_extra()
    stack = ExitStack()
    steps: dict[type[Envelope], list[Step]] = {}
    try:
        for group in GROUPS:
            app = load_app(group.service)
            settings = app.settings(consumer_group=group.name, redis_key_prefix=redis_key_prefix)
            resources = app.open(settings, stack, {"engine": engine, "redis": client})
            for event, handler in app.handlers(settings, resources).items():
                steps.setdefault(event, []).append((group.service, handler))
    except BaseException:
        stack.close()
        raise
    return InlinePostProcessing(steps, stack.close)
