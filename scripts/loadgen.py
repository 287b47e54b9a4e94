#!/usr/bin/env python3
"""Load for a running ticketing system: rounds of a fresh catalogue and a rush of fans.

Each round seeds concerts, schedules, seats and fans into payment-api's database
(``payment_api.seed``, reading DATABASE_URL and DATABASE_SCHEMA as payment-api does), then
plays a rush against the API: fans arrive open-loop at ``--rate`` per second, sign in with
a development JWT (``payment_api.auth.mint_dev_token``: AUTH_JWT_SECRET, AUTH_JWT_ISSUER and
AUTH_JWT_AUDIENCE, the variables payment-api reads, else the development defaults), take a queue
token, wait until the queue lets them in, reserve a seat of the concert they want (the first
concert is the most wanted) and pay. ``--poor-share`` of them have too few points, so
``payment.failed`` flows as well as ``payment.success`` and ``reservation.created``. Rounds
repeat ``--pause`` seconds apart, ``--rounds 0`` until SIGTERM or Ctrl-C. A line of counts
is logged every 10 seconds and at the end of each round.

The chart's ``loadgen`` component runs it from the payment-api image (``ticketing-loadgen``)
with ``--stay``, so that its Deployment does not restart it after the last round. ``--api``
defaults to API_URL, every other option to its LOADGEN_* variable (``--rate``:
LOADGEN_RATE), then to the default that ``--help`` shows.

    uv run python scripts/loadgen.py --api http://127.0.0.1:8000 --fans 200 --rounds 1
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import json
import logging
import os
import random
import signal
import sys
import threading
import time
import urllib.parse
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from payment_api.adapters.database import create_db_engine
from payment_api.auth import mint_dev_token
from payment_api.config import Settings
from payment_api.seed import seed
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

log = logging.getLogger("loadgen")

PRICE = 150_000  # every seat's; a poor fan has half of it
CONCERTS = 4
SCHEDULES = 3  # per concert
# payment-api's default admission rate (QUEUE_ACTIVATE_BATCH per QUEUE_ACTIVATE_INTERVAL_S):
# a waiting fan polls about when the queue should reach it.
ADMITTED_PER_S = 100.0
# uvicorn closes a connection idle for 5 s; ours are dropped before that.
IDLE_CONNECTION_S = 4.0
HTTP_ERRORS = (OSError, http.client.HTTPException, ValueError)


# -- the API -------------------------------------------------------------------------------


@dataclass
class Answer:
    status: int
    body: Any


class Unexpected(Exception):
    """An answer a fan cannot go on with, e.g. ``payment 500``."""


class Api:
    """Every HTTP call of the load generator, so that authentication is added in one place.

    JSON over keep-alive HTTP/1.1 connections, one per worker thread; at most ``workers``
    requests are in flight.
    """

    def __init__(self, url: str, workers: int, timeout: float = 30.0) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"--api must be an http:// URL, not {url!r}")
        self.host, self.port = parts.hostname, parts.port or 80
        self.timeout = timeout
        self.pool = ThreadPoolExecutor(workers, thread_name_prefix="http")
        self.local = threading.local()

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)

    def _send(self, method: str, path: str, body: Any, auth: Pass | None) -> Answer:
        conn: http.client.HTTPConnection | None = getattr(self.local, "conn", None)
        if conn is None or time.monotonic() - self.local.used > IDLE_CONNECTION_S:
            if conn is not None:
                conn.close()
            conn = self.local.conn = http.client.HTTPConnection(
                self.host, self.port, timeout=self.timeout
            )
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if auth is not None:
            headers.update(auth.headers())
        try:
            conn.request(method, path, body=data, headers=headers)
            response = conn.getresponse()
            raw = response.read()
        except Exception:
            conn.close()
            self.local.conn = None
            raise
        self.local.used = time.monotonic()
        return Answer(response.status, json.loads(raw) if raw else None)

    async def call(
        self, method: str, path: str, body: Any = None, auth: Pass | None = None
    ) -> Answer:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.pool, self._send, method, path, body, auth)

    async def ready(self) -> bool:
        try:
            return (await self.call("GET", "/readyz")).status == 200
        except HTTP_ERRORS:
            return False

    async def issue_token(self, fan: Pass) -> Answer:
        return await self.call("POST", "/v1/queue/tokens", None, fan)

    async def token_state(self, fan: Pass, token_id: str) -> Answer:
        return await self.call("GET", f"/v1/queue/tokens/{token_id}", None, fan)

    async def schedules(self, concert_id: int) -> Answer:
        return await self.call("GET", f"/v1/concerts/{concert_id}/schedules")

    async def seats(self, schedule_id: int) -> Answer:
        return await self.call("GET", f"/v1/schedules/{schedule_id}/seats")

    async def reserve(self, seat_id: int, fan: Pass) -> Answer:
        return await self.call("POST", "/v1/reservations", {"seat_id": seat_id}, fan)

    async def pay(self, reservation_id: int, fan: Pass) -> Answer:
        return await self.call("POST", "/v1/payments", {"reservation_id": reservation_id}, fan)


@dataclass
class Pass:
    """A fan's credentials: a development JWT (AUTH_JWT_SECRET, as payment-api's) and, once
    issued, the queue token bound to them."""

    user_id: int
    jwt: str
    queue_token: str | None = None

    @classmethod
    def of(cls, user_id: int) -> Pass:
        return cls(user_id, mint_dev_token(user_id, ttl_s=3600))

    def headers(self) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self.jwt}"}
        if self.queue_token is not None:
            headers["X-Queue-Token"] = self.queue_token
        return headers


# -- one round -----------------------------------------------------------------------------


@dataclass
class Catalogue:
    concerts: list[int]
    fans: list[int]


def seed_round(engine: Engine, seats: int, fans: int, poor_share: float) -> Catalogue:
    """A fresh catalogue and fans: the wealthy ones with the catalogue, then the poor ones."""
    poor = round(fans * poor_share)
    wealthy = seed(
        engine,
        concerts_count=CONCERTS,
        schedules_per_concert=SCHEDULES,
        seats_per_schedule=seats,
        users_count=fans - poor,
        price=PRICE,
    )
    broke = seed(engine, concerts_count=0, users_count=poor, points=PRICE // 2, price=PRICE)
    return Catalogue(wealthy.concert_ids, wealthy.user_ids + broke.user_ids)


@dataclass
class Tally:
    """What a round's fans got."""

    fans: int
    arrived: int = 0
    done: int = 0
    waiting: int = 0
    paid: int = 0
    failed: Counter[str] = field(default_factory=Counter)
    no_seat: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    payment_ms: list[float] = field(default_factory=list)

    def line(self) -> str:
        ms = sorted(self.payment_ms)
        p50 = f"{ms[len(ms) // 2]:.0f}" if ms else "-"
        p99 = f"{ms[int(len(ms) * 0.99)]:.0f}" if ms else "-"
        errors = ", ".join(f"{n} {what}" for what, n in self.errors.most_common(3)) or "0"
        return (
            f"fans {self.done}/{self.arrived}/{self.fans} (done/arrived/all), in queue "
            f"{self.waiting}, paid {self.paid}, failed {sum(self.failed.values())}, no seat "
            f"{self.no_seat}, errors {errors}; payment p50 {p50} ms, p99 {p99} ms"
        )


class Rush:
    """One round's fans against the API; the seat maps are refreshed every 2 s, as a fan's
    page would."""

    def __init__(self, api: Api, options: argparse.Namespace, tally: Tally) -> None:
        self.api = api
        self.options = options
        self.tally = tally
        self.by_concert: dict[int, list[int]] = {}
        self.available: dict[int, set[int]] = {}
        self.sold_out: set[int] = set()

    async def load(self, concerts: list[int]) -> None:
        for concert in concerts:
            answer = await self.api.schedules(concert)
            if answer.status != 200:
                raise Unexpected(f"schedules of concert {concert} {answer.status}")
            self.by_concert[concert] = [s["id"] for s in answer.body]
        await self.refresh_seats()

    async def refresh_seats(self) -> None:
        for schedules in self.by_concert.values():
            for schedule in schedules:
                answer = await self.api.seats(schedule)
                if answer.status != 200:
                    continue
                seats = answer.body
                self.available[schedule] = {s["id"] for s in seats if s["status"] == "available"}
                if all(s["status"] == "sold" for s in seats):
                    self.sold_out.add(schedule)

    async def run(self, fans: list[int]) -> None:
        """Fan i arrives i / rate seconds after the start, whatever the earlier ones do."""

        async def refresh() -> None:
            while True:
                await asyncio.sleep(2)
                with contextlib.suppress(*HTTP_ERRORS):  # the fans count the API's errors
                    await self.refresh_seats()

        async def report() -> None:
            while True:
                await asyncio.sleep(10)
                log.info("%s", self.tally.line())

        async with asyncio.TaskGroup() as tasks:
            background = [tasks.create_task(refresh()), tasks.create_task(report())]
            start = time.monotonic()
            arrivals = []
            for i, user_id in enumerate(fans):
                delay = start + i / self.options.rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                self.tally.arrived += 1
                arrivals.append(tasks.create_task(self.fan(user_id)))
            await asyncio.gather(*arrivals)
            for task in background:
                task.cancel()

    async def fan(self, user_id: int) -> None:
        try:
            fan = await self.admitted(user_id)
            reservation = await self.reserve(fan)
            if reservation is None:
                self.tally.no_seat += 1
                return
            await self.pay(reservation, fan)
        except Unexpected as exc:
            self.tally.errors[str(exc)] += 1
        except HTTP_ERRORS as exc:
            self.tally.errors[type(exc).__name__] += 1
        finally:
            self.tally.done += 1

    async def admitted(self, user_id: int) -> Pass:
        """The fan signed in with a queue token, once the queue has let them in."""
        fan = Pass.of(user_id)
        answer = await self.api.issue_token(fan)
        if answer.status != 201:
            raise Unexpected(f"queue token {answer.status}")
        token, position = answer.body["token"], answer.body["position"]
        token_id = answer.body["token_id"]
        self.tally.waiting += 1
        try:
            while True:
                wait = min(5.0, max(0.5, position / ADMITTED_PER_S))
                await asyncio.sleep(wait * random.uniform(0.8, 1.2))
                answer = await self.api.token_state(fan, token_id)
                if answer.status != 200:
                    raise Unexpected(f"queue state {answer.status}")
                if answer.body["status"] == "active":
                    fan.queue_token = str(token)
                    return fan
                position = answer.body["position"] or 0
        finally:
            self.tally.waiting -= 1

    async def reserve(self, fan: Pass) -> int | None:
        """A seat of the fan's concert on any of its dates; a reservation id, or None when they
        are sold out or ``--patience`` runs out (held seats may still be freed)."""
        concerts = list(self.by_concert)
        weights = [1 / (n + 1) for n in range(len(concerts))]
        (concert,) = random.choices(concerts, weights=weights)
        schedules = self.by_concert[concert]
        deadline = time.monotonic() + self.options.patience
        while time.monotonic() < deadline:
            seats = [(s, seat) for s in schedules for seat in self.available.get(s, ())]
            if not seats:
                if all(s in self.sold_out for s in schedules):
                    return None
                await asyncio.sleep(random.uniform(1, 3))
                continue
            schedule, seat = random.choice(seats)
            self.available[schedule].discard(seat)
            answer = await self.api.reserve(seat, fan)
            if answer.status == 201:
                return int(answer.body["reservation_id"])
            if answer.status == 429:  # the fan's per-user write limit: wait it out
                self.available[schedule].add(seat)
                await asyncio.sleep(float(answer.body.get("retry_after_s", 1)))
                continue
            if answer.status != 409:  # taken meanwhile: try another
                raise Unexpected(f"reservation {answer.status}")
        return None

    async def pay(self, reservation_id: int, fan: Pass) -> None:
        sent = time.perf_counter()
        answer = await self.api.pay(reservation_id, fan)
        self.tally.payment_ms.append((time.perf_counter() - sent) * 1000)
        if answer.status == 201:
            self.tally.paid += 1
        elif answer.status in (402, 403, 410):
            self.tally.failed[answer.body.get("reason", str(answer.status))] += 1
        else:
            raise Unexpected(f"payment {answer.status}")


# -- the rounds ----------------------------------------------------------------------------


async def run(options: argparse.Namespace) -> list[Tally]:
    """Play the rounds; the tally of each (none kept when they go on until stopped)."""
    api = Api(options.api, options.concurrency)
    engine = create_db_engine(Settings())
    tallies: list[Tally] = []
    played = 0
    try:
        while not await api.ready():
            log.info("waiting for %s/readyz", options.api)
            await asyncio.sleep(2)
        while options.rounds == 0 or played < options.rounds:
            number = played + 1
            try:
                catalogue = await asyncio.to_thread(
                    seed_round, engine, options.seats, options.fans, options.poor_share
                )
                tally = Tally(fans=len(catalogue.fans))
                rush = Rush(api, options, tally)
                await rush.load(catalogue.concerts)
            except (SQLAlchemyError, Unexpected, *HTTP_ERRORS) as exc:
                # e.g. before the migration Job has created the schema
                log.warning("round %d could not start, again in 10 s: %s", number, exc)
                await asyncio.sleep(10)
                continue
            log.info(
                "round %d: %d fans at %g/s for %d seats",
                number,
                tally.fans,
                options.rate,
                CONCERTS * SCHEDULES * options.seats,
            )
            await rush.run(random.sample(catalogue.fans, len(catalogue.fans)))
            log.info("round %d done: %s", number, tally.line())
            played += 1
            if options.rounds:
                tallies.append(tally)
            if options.rounds == 0 or played < options.rounds:
                await asyncio.sleep(options.pause)
    finally:
        api.close()
        engine.dispose()
    return tallies


def env_default(name: str, default: float) -> Any:
    """LOADGEN_<NAME>, converted like the default, else the default."""
    value = os.environ.get(f"LOADGEN_{name.upper()}")
    return default if value is None else type(default)(value)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ticketing-loadgen",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )

    def option(name: str, default: float, help: str) -> None:
        p.add_argument(
            f"--{name.replace('_', '-')}",
            dest=name,
            type=type(default),
            default=env_default(name, default),
            help=f"{help} (LOADGEN_{name.upper()}; default %(default)s)",
        )

    p.add_argument(
        "--api",
        default=os.environ.get("API_URL", "http://127.0.0.1:8000"),
        help="payment-api's base URL (API_URL; default %(default)s)",
    )
    option("fans", 1000, "fans per round")
    option("rate", 50.0, "fans arriving per second")
    option("seats", 100, f"seats per schedule ({CONCERTS} concerts x {SCHEDULES} dates a round)")
    option("poor_share", 0.1, "share of fans with too few points")
    option("concurrency", 16, "requests in flight, at most")
    option("patience", 20.0, "seconds a fan keeps looking for a seat")
    option("rounds", 0, "rounds to play; 0: until stopped")
    option("pause", 60.0, "seconds between rounds")
    p.add_argument("--stay", action="store_true", help="after the last round, idle until stopped")
    return p


async def until_stopped(options: argparse.Namespace) -> None:
    """Play, then idle with --stay; SIGTERM or SIGINT cancel either."""
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)
    await run(options)
    if options.stay:
        log.info("the last round is over; idle until stopped")
        await asyncio.Event().wait()


def main(argv: list[str] | None = None) -> int:
    options = parser().parse_args(argv)
    logging.basicConfig(
        stream=sys.stdout, level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s"
    )
    try:
        asyncio.run(until_stopped(options))
    except asyncio.CancelledError:
        log.info("stopped")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
