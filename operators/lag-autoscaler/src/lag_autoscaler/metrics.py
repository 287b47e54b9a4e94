"""The operator's metrics, per autoscaler: the lag it saw and the replicas it found and wants.

Served by ``prometheus_client`` on ``AUTOSCALER_METRICS_PORT`` (kopf's own server has only the
liveness probe). An autoscaler not polled for ``STALE_S`` (deleted, or another replica leads)
drops out of the gauges.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

from opentelemetry.metrics import CallbackOptions, Observation
from ticketing_events.metrics import meter

STALE_S = 120.0

# (namespace, name) -> (when polled, the status fields reported)
_seen: dict[tuple[str, str], tuple[float, Mapping[str, Any]]] = {}


def observe(namespace: str, name: str, status: Mapping[str, Any]) -> None:
    """Record one poll's outcome (``Outcome.status``)."""
    _seen[(namespace, name)] = (time.monotonic(), status)


def _gauge(field: str) -> Any:
    def callback(_: CallbackOptions) -> Iterable[Observation]:
        now = time.monotonic()
        for (namespace, name), (at, status) in list(_seen.items()):
            if now - at > STALE_S:
                _seen.pop((namespace, name), None)
            elif field in status:
                yield Observation(status[field], {"namespace": namespace, "autoscaler": name})

    return callback


_meter = meter("lag_autoscaler")
for _field, _name, _description in (
    ("desiredReplicas", "replicas.desired", "Replicas the autoscaler decided on"),
    ("currentReplicas", "replicas.current", "Replicas the target Deployment had"),
    ("totalLag", "lag", "Total lag of the group on its topics, as the autoscaler read it"),
):
    _meter.create_observable_gauge(
        f"ticketing.autoscaler.{_name}", callbacks=[_gauge(_field)], description=_description
    )
