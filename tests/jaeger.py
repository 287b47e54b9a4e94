"""Reading traces back from Jaeger's HTTP query API (``/api/traces/{id}``)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import httpx


@dataclass(frozen=True)
class Span:
    span_id: str
    parent_id: str | None
    service: str
    name: str
    kind: str
    tags: dict[str, object]


@dataclass(frozen=True)
class Trace:
    trace_id: str
    spans: list[Span]

    @property
    def services(self) -> set[str]:
        return {s.service for s in self.spans}

    def of(self, service: str, kind: str | None = None) -> list[Span]:
        return [s for s in self.spans if s.service == service and kind in (None, s.kind)]

    def ancestors(self, span: Span) -> Iterator[Span]:
        by_id = {s.span_id: s for s in self.spans}
        parent = by_id.get(span.parent_id or "")
        while parent is not None:
            yield parent
            parent = by_id.get(parent.parent_id or "")

    def descends_from(self, span: Span, ancestor: Span) -> bool:
        return any(a.span_id == ancestor.span_id for a in self.ancestors(span))


def parse(data: dict[str, object]) -> Trace:
    processes = {k: v["serviceName"] for k, v in data["processes"].items()}  # type: ignore[attr-defined]
    spans = []
    seen: set[str] = set()
    for raw in data["spans"]:  # type: ignore[attr-defined]
        # An OTLP export retried after a client-side timeout can store a span twice: same id.
        if raw["spanID"] in seen:
            continue
        seen.add(raw["spanID"])
        tags = {t["key"]: t["value"] for t in raw.get("tags", [])}
        parents = [r["spanID"] for r in raw.get("references", []) if r["refType"] == "CHILD_OF"]
        spans.append(
            Span(
                span_id=raw["spanID"],
                parent_id=parents[0] if parents else None,
                service=processes[raw["processID"]],
                name=raw["operationName"],
                kind=str(tags.get("span.kind", "internal")),
                tags=tags,
            )
        )
    return Trace(str(data["traceID"]), spans)


def fetch_trace(
    query_url: str, trace_id: str, until: Callable[[Trace], bool], timeout: float = 30.0
) -> Trace:
    """The trace once ``until`` holds for it (spans arrive in export batches)."""
    deadline = time.monotonic() + timeout
    last: Trace | None = None
    while True:
        response = httpx.get(f"{query_url}/api/traces/{trace_id}", timeout=10)
        if response.status_code == 200 and response.json().get("data"):
            last = parse(response.json()["data"][0])
            if until(last):
                return last
        if time.monotonic() > deadline:
            got = sorted((s.service, s.name) for s in last.spans) if last else "nothing"
            raise AssertionError(f"trace {trace_id} incomplete after {timeout}s: {got}")
        time.sleep(0.5)
