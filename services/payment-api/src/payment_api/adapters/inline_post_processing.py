"""``POST_PROCESSING=sync``: the post-payment steps run inside the request, after the commit,
with the consumers' own batch handlers, one event per batch (the system before Kafka).

The consumer packages come with the ``sync-post-processing`` extra and are imported only here,
only in that mode; the production image, built without the extra, never loads them.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import structlog
from opentelemetry import context as otel_context
from redis import Redis
from sqlalchemy import Engine
from ticketing_events.consumer import Delivery
from ticketing_events.redis_layout import RedisKeys
from ticketing_events.schemas import Envelope, PaymentFailed, PaymentSucceeded

log = structlog.get_logger(__name__)

EXTRA = "sync-post-processing"
PACKAGES = ("ranking_consumer", "dataplatform_consumer", "cleanup_consumer", "compensator")

Step = tuple[str, Callable[[Sequence[Delivery[Any]]], None]]


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
    missing = [name for name in PACKAGES if importlib.util.find_spec(name) is None]
    if missing:
        raise MissingExtra(
            f"POST_PROCESSING=sync needs payment-api's '{EXTRA}' extra (the consumer packages; "
            f"missing: {', '.join(missing)}): `uv sync --package payment-api --extra {EXTRA}`"
        )


def build_inline_post_processing(
    engine: Engine, client: Redis, redis_key_prefix: str
) -> InlinePostProcessing:
    """The four post-payment services' handlers on payment-api's own engine and Redis client,
    in their registry groups (so their once-per-event records are the consumers' own). The data
    platform client and the tombstone TTL read the consumers' variables (``DATAPLATFORM_*``,
    ``SEAT_RELEASED_TTL_S``)."""
    require_extra()
    from cleanup_consumer import config as cleanup
    from cleanup_consumer.adapters import release_effects
    from cleanup_consumer.handlers import release_after_failure, release_after_success
    from compensator import config as compensator
    from compensator.adapters import SqlCompensations
    from compensator.handlers import compensate
    from dataplatform_consumer import config as dataplatform
    from dataplatform_consumer.adapters import DataPlatformClient
    from dataplatform_consumer.handlers import send_payments
    from ranking_consumer import config as ranking
    from ranking_consumer.adapters import RedisRankingBoard, SqlSalesLedger
    from ranking_consumer.handlers import update_ranking

    keys = RedisKeys(redis_key_prefix)
    ttl = cleanup.Settings().seat_released_ttl_s
    effects = release_effects(client, cleanup.GROUP, redis_key_prefix)
    platform = DataPlatformClient(dataplatform.Settings())
    ledger = SqlSalesLedger(engine, ranking.GROUP)
    steps: dict[type[Envelope], list[Step]] = {
        PaymentSucceeded: [
            ("ranking", update_ranking(ledger, RedisRankingBoard(client, keys))),
            ("dataplatform", send_payments(platform)),
            ("cleanup", release_after_success(effects, keys, ttl)),
        ],
        PaymentFailed: [
            ("compensator", compensate(SqlCompensations(engine, compensator.GROUP))),
            ("cleanup", release_after_failure(effects, keys, ttl)),
        ],
    }
    return InlinePostProcessing(steps, platform.close)
