"""kopf wiring: a timer per ``ConsumerLagAutoscaler``, the probe, operator settings.

kopf timers have one interval for every object, so the timer ticks every ``TICK_SECONDS``
and polls an object only once its ``pollingIntervalSeconds`` have passed since its last poll
(kept in the object's in-memory memo: a new leader polls every object at once). The effective
interval is therefore rounded up to a multiple of the tick.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import kopf

from lag_autoscaler import metrics
from lag_autoscaler.reconcile import LagSource, ScaleTarget, reconcile
from lag_autoscaler.spec import GROUP, PLURAL, VERSION, AutoscalerSpec

TICK_SECONDS = 5.0
DEFAULT_POLLING_S = AutoscalerSpec.model_fields["polling_interval_seconds"].default

registry = kopf.OperatorRegistry()


@dataclass
class Health:
    """Shared by every object's memo (kopf copies the operator's memo shallowly)."""

    last_poll: datetime | None = None
    polls: int = 0


@dataclass
class Adapters:
    lag_source: LagSource
    target: ScaleTarget
    health: Health


def operator_memo(adapters: Adapters) -> kopf.Memo:
    return kopf.Memo(adapters=adapters)


# kopf registers its default login handlers in its global registry only, not in ours.
@kopf.on.login(registry=registry)
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    """In a pod, the service account; elsewhere the kubeconfig (``KUBECONFIG`` or ~/.kube)."""
    return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)


@kopf.on.startup(registry=registry)
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    # kopf would post an Event for every timer run; ours are the scale and warning events.
    settings.posting.level = logging.WARNING
    # No watching of namespaces and CRDs: the namespaces are given on the command line and the
    # CRD is installed before the operator, so it needs no cluster-wide rights, and does not
    # spend its first minute retrying a forbidden namespace list.
    settings.scanning.disabled = True


@kopf.timer(GROUP, VERSION, PLURAL, id="autoscale", interval=TICK_SECONDS, registry=registry)
async def autoscale(
    spec: kopf.Spec,
    status: kopf.Status,
    namespace: str | None,
    body: kopf.Body,
    patch: kopf.Patch,
    memo: kopf.Memo,
    logger: kopf.Logger,
    **_: Any,
) -> None:
    interval = spec.get("pollingIntervalSeconds", DEFAULT_POLLING_S)
    started = time.monotonic()
    if started - memo.get("last_poll", float("-inf")) < interval:
        return
    memo["last_poll"] = started
    adapters: Adapters = memo.adapters
    outcome = await asyncio.to_thread(
        reconcile,
        dict(spec),
        dict(status),
        namespace or "",  # the CRD is namespaced: always set
        lag_source=adapters.lag_source,
        target=adapters.target,
        now=datetime.now(UTC),
    )
    patch.status.update(outcome.status)
    metrics.observe(namespace or "", body["metadata"]["name"], outcome.status)
    for event in outcome.events:
        kopf.event(body, type=event.type, reason=event.reason, message=event.message)
        log = logger.warning if event.type == "Warning" else logger.info
        log(f"{event.reason}: {event.message}")
    adapters.health.last_poll = datetime.now(UTC)
    adapters.health.polls += 1


@kopf.on.probe(id="polls", registry=registry)
def polls(memo: kopf.Memo, **_: Any) -> dict[str, Any]:
    """Informational: a Kafka outage must not fail liveness (the pod restarting won't help)."""
    health: Health = memo.adapters.health
    last = health.last_poll.isoformat() if health.last_poll else None
    return {"count": health.polls, "last": last}
