"""Reading a ``/metrics`` page."""

from __future__ import annotations

import urllib.error
import urllib.parse
import urllib.request
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    pass


MetricSamples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape_metrics(url: str) -> MetricSamples:
    """Every sample a ``/metrics`` endpoint serves, as Prometheus reads it: (name, labels) ->
    value."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def metric_total(samples: MetricSamples, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels``."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= ls)
