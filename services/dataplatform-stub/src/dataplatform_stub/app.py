"""The stub's two HTTP apps over one in-memory platform: the ingest API (``POST /payments``,
what the data platform's clients call) and the admin API (``/admin/*``, which reads and steers
the stub). They listen on separate ports, so a network policy can admit clients to the ingest
port alone.

Everything lives in memory, in one process and one event loop, so plain counters are safe.
Memory: a count per idempotency key (for dedupe), and the bodies of the latest ``max_bodies``
payments only.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from dataplatform_stub.config import Knobs

IDEMPOTENCY_KEY = "Idempotency-Key"


@dataclass
class Platform:
    """What the stub received and how it behaves."""

    knobs: Knobs
    max_bodies: int
    times: dict[str, int] = field(default_factory=dict)  # accepted requests per key
    # The first body of the latest ``max_bodies`` keys, oldest first.
    bodies: OrderedDict[str, Any] = field(default_factory=OrderedDict)
    duplicates: int = 0
    requests: int = 0
    errors: int = 0
    hung: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    # Set to let the hung requests go (on reset and on every knob change).
    release: asyncio.Event = field(default_factory=asyncio.Event)

    def stats(self, *, keys: bool = False) -> dict[str, Any]:
        stats: dict[str, Any] = {
            "received": len(self.times) + self.duplicates,
            "unique": len(self.times),
            "bodies": len(self.bodies),
            "duplicates": self.duplicates,
            "requests": self.requests,
            "errors": self.errors,
            "hung": self.hung,
            "in_flight": self.in_flight,
            "max_in_flight": self.max_in_flight,
        }
        if keys:
            stats["keys"] = self.times
        return stats

    def set_knobs(self, knobs: Knobs) -> None:
        self.knobs = knobs
        self._release_hung()

    def reset(self) -> None:
        self.times.clear()
        self.bodies.clear()
        self.duplicates = self.requests = self.errors = self.hung = 0
        self.max_in_flight = self.in_flight
        self._release_hung()

    def record(self, key: str, body: Any) -> bool:
        """Count a payment; True when its key came before (its first body is kept)."""
        duplicate = key in self.times
        if duplicate:
            self.duplicates += 1
        else:
            self.bodies[key] = body
            if len(self.bodies) > self.max_bodies:
                self.bodies.popitem(last=False)
        self.times[key] = self.times.get(key, 0) + 1
        return duplicate

    def _release_hung(self) -> None:
        self.release.set()
        self.release = asyncio.Event()


@dataclass(frozen=True)
class Apps:
    ingest: Starlette  # /payments, /healthz
    admin: Starlette  # /admin/*, /healthz


def create_apps(knobs: Knobs, max_bodies: int) -> Apps:
    platform = Platform(knobs, max_bodies)

    async def receive_payment(request: Request) -> Response:
        platform.requests += 1
        platform.in_flight += 1
        platform.max_in_flight = max(platform.max_in_flight, platform.in_flight)
        try:
            return await _answer(request)
        finally:
            platform.in_flight -= 1

    async def _answer(request: Request) -> Response:
        key = request.headers.get(IDEMPOTENCY_KEY)
        if not key:
            return _problem(400, f"the {IDEMPOTENCY_KEY} header is required")
        try:
            body = json.loads(await request.body())
        except ValueError:
            return _problem(400, "the body is not JSON")
        knobs = platform.knobs
        if knobs.latency_ms:
            await asyncio.sleep(knobs.latency_ms / 1000)
        roll = random.random()
        if roll < knobs.hang_rate:
            platform.hung += 1
            await _hang(request, platform.release)
            return _problem(503, "hung")
        if roll < knobs.hang_rate + knobs.error_rate:
            platform.errors += 1
            return _problem(random.choice((500, 503)), "injected failure")
        duplicate = platform.record(key, body)
        return JSONResponse({"key": key, "duplicate": duplicate}, 200 if duplicate else 201)

    async def payment(request: Request) -> Response:
        key = request.path_params["key"]
        if key not in platform.times:
            return _problem(404, "no such payment")
        body = platform.bodies.get(key)  # None once the cap dropped it
        return JSONResponse({"body": body, "received": platform.times[key]})

    async def received(request: Request) -> Response:
        keys = request.query_params.get("keys", "").lower() in ("1", "true", "yes")
        return JSONResponse(platform.stats(keys=keys))

    async def reset(_: Request) -> Response:
        platform.reset()
        return JSONResponse(platform.stats())

    async def get_knobs(_: Request) -> Response:
        return JSONResponse(platform.knobs.model_dump())

    async def put_knobs(request: Request) -> Response:
        try:
            changes = json.loads(await request.body())
            knobs = Knobs.model_validate({**platform.knobs.model_dump(), **changes})
        except (ValueError, TypeError) as exc:
            detail = exc.errors(include_url=False) if isinstance(exc, ValidationError) else str(exc)
            return JSONResponse({"detail": detail}, 422)
        platform.set_knobs(knobs)
        return JSONResponse(knobs.model_dump())

    async def healthz(_: Request) -> Response:
        return JSONResponse({"status": "ok"})

    health = Route("/healthz", healthz, methods=["GET"])
    ingest = Starlette(
        routes=[
            Route("/payments", receive_payment, methods=["POST"]),
            Route("/payments/{key}", payment, methods=["GET"]),
            health,
        ]
    )
    admin = Starlette(
        routes=[
            Route("/admin/received", received, methods=["GET"]),
            Route("/admin/reset", reset, methods=["POST"]),
            Route("/admin/knobs", get_knobs, methods=["GET"]),
            Route("/admin/knobs", put_knobs, methods=["PUT"]),
            health,
        ]
    )
    return Apps(ingest, admin)


async def _hang(request: Request, release: asyncio.Event) -> None:
    """Answer nothing until released or until the client gives up."""
    while not release.is_set() and not await request.is_disconnected():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(release.wait(), 0.5)


def _problem(status: int, detail: str) -> JSONResponse:
    return JSONResponse({"detail": detail}, status)
