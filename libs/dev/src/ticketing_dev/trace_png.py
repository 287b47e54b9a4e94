"""One trace from Jaeger's query API as a PNG waterfall: a bar per span on a time axis,
coloured by service, children under their parent. The local Jaeger has no UI (its build from
the Go module ships none), so ``make demo`` writes this for a person to look at.

    python -m ticketing_dev.trace_png TRACE_ID [OUT.png]     # JAEGER_QUERY_URL from the environment
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from matplotlib import colormaps
from matplotlib.figure import Figure  # no pyplot: no display, no global figure state
from matplotlib.patches import Patch


@dataclass(frozen=True)
class Bar:
    service: str
    name: str
    start_ms: float  # from the trace's first span
    duration_ms: float


def fetch(query_url: str, trace_id: str) -> dict[str, Any]:
    """The trace's JSON (``data[0]`` of ``/api/traces/{id}``); LookupError when Jaeger has
    none."""
    response = httpx.get(f"{query_url}/api/traces/{trace_id}", timeout=10)
    if response.status_code == 404 or not response.json().get("data"):
        raise LookupError(f"Jaeger at {query_url} has no trace {trace_id}")
    response.raise_for_status()
    data: dict[str, Any] = response.json()["data"][0]
    return data


def bars(trace: dict[str, Any]) -> list[Bar]:
    """The spans in waterfall order: depth first, siblings by start time. A span whose parent
    is not in the trace (a remote caller's, or one not exported) starts a tree of its own."""
    services = {key: p["serviceName"] for key, p in trace["processes"].items()}
    spans = {s["spanID"]: s for s in trace["spans"]}
    children: dict[str | None, list[dict[str, Any]]] = {}
    for span in spans.values():
        parents = [r["spanID"] for r in span.get("references", []) if r["refType"] == "CHILD_OF"]
        parent = parents[0] if parents and parents[0] in spans else None
        children.setdefault(parent, []).append(span)
    t0 = min((s["startTime"] for s in spans.values()), default=0)
    out: list[Bar] = []

    def walk(parent: str | None) -> None:
        for span in sorted(children.get(parent, []), key=lambda s: s["startTime"]):
            out.append(
                Bar(
                    services[span["processID"]],
                    span["operationName"],
                    (span["startTime"] - t0) / 1000,
                    span["duration"] / 1000,
                )
            )
            walk(span["spanID"])

    walk(None)
    return out


def waterfall(trace: dict[str, Any]) -> Figure:
    """The figure: one row per span, labelled ``service: operation``, a legend of services."""
    rows = bars(trace)
    services = list(dict.fromkeys(b.service for b in rows))
    palette = colormaps["tab10"]
    colour = {s: palette(i % 10) for i, s in enumerate(services)}
    fig = Figure(figsize=(12, 1.5 + 0.28 * len(rows)), layout="constrained")
    ax = fig.add_subplot()
    end = max((b.start_ms + b.duration_ms for b in rows), default=1.0)
    for y, b in enumerate(rows):
        # A span too short to see still gets a sliver of the axis.
        ax.barh(y, max(b.duration_ms, end / 500), left=b.start_ms, color=colour[b.service])
        ax.text(b.start_ms + b.duration_ms, y, f" {b.duration_ms:.1f} ms", va="center", fontsize=7)
    ax.set_yticks(range(len(rows)), [f"{b.service}: {b.name}" for b in rows])
    ax.tick_params(axis="y", labelsize=8)
    ax.invert_yaxis()  # the first span on top
    ax.set_xlim(0, end * 1.15)
    ax.set_xlabel("ms since the trace's first span")
    ax.grid(axis="x", alpha=0.3)
    ax.set_title(f"trace {trace['traceID']}: {len(rows)} spans, {end:.1f} ms")
    ax.legend(
        handles=[Patch(color=colour[s], label=s) for s in services],
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),  # beside the axes, over no bar
        fontsize=8,
    )
    return fig


def write(trace: dict[str, Any], path: Path) -> Path:
    """Render ``trace`` to ``path`` (PNG)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    waterfall(trace).savefig(path, dpi=110)
    return path


def main(argv: list[str]) -> int:
    if len(argv) not in (1, 2):
        print(__doc__, file=sys.stderr)
        return 2
    trace_id = argv[0]
    out = Path(argv[1] if len(argv) == 2 else f"trace-{trace_id}.png")
    query_url = os.environ.get("JAEGER_QUERY_URL", "http://127.0.0.1:16686")
    print(write(fetch(query_url, trace_id), out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
