"""``make demo``: the whole system running locally, a ticketing rush, and what it did.

Starts the infrastructure, creates the topics, migrates and seeds a fresh database, starts
the stack of ticketing_dev.stack (payment-api, the registry's consumers, the stand-in),
then plays a rush: fans arrive open-loop, take a queue token, wait until the queue lets them
in, reserve a seat and pay; some have too few points, so ``payment.failed`` flows too. It shows
the payments and every consumer group's lag live, waits for the lag to drain and prints a
summary: API latency, events per topic and group, the sold-out ranking and one payment's
trace in Jaeger. The stack stops at the end (``--keep`` leaves it running; ``make down``
stops it); Ctrl-C stops everything at any point.

    python scripts/demo.py [--fans 2000] [--rate 200] [--seats 100] [--keep]
    DEMO_DB=postgres python scripts/demo.py      # PostgreSQL (schema demo) instead of SQLite

Every run starts from fresh data: the demo's database and Redis keys are dropped, and the
registry's consumer groups are moved to the end of their topics, so they process only this
run's events.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from types import FrameType
from typing import Any

import httpx
from confluent_kafka import KafkaException
from payment_api.auth import dev_auth_env, mint_dev_token
from rich import box
from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy import text
from ticketing_dev import trace_png
from ticketing_dev.stack import DATABASES, ROOT, Stack, StackError, infra_env
from ticketing_events.offsets import KafkaOffsets, Offsets
from ticketing_events.topics import (
    CONSUMER_GROUPS,
    TOPIC_EVENTS,
    dlq_topic,
)

PRICE = 150_000
CONCERTS = 4
DATES = 3  # schedules per concert, on consecutive days
# Demand per concert: the first is the most wanted (1, 1/2, 1/3, ...).
POPULARITY = [1 / (n + 1) for n in range(CONCERTS)]


def committed(kafka: KafkaOffsets, group: str, topics: Iterable[str]) -> Offsets:
    """The group's committed offsets, 0 where it committed none."""
    return {tp: max(o, 0) for tp, o in kafka.committed(group, topics).items()}


def total(offsets: Offsets) -> int:
    return sum(offsets.values())


def group_dlqs(group: str) -> list[str]:
    return [dlq_topic(t, group) for t in CONSUMER_GROUPS[group].topics]


@dataclass
class Snapshot:
    """Offsets of every topic, dead-letter topic and registry group at one moment."""

    ends: Offsets
    committed: dict[str, Offsets]

    @classmethod
    def take(cls, kafka: KafkaOffsets) -> Snapshot:
        topics = list(TOPIC_EVENTS) + [d for g in CONSUMER_GROUPS for d in group_dlqs(g)]
        return cls(
            kafka.ends(topics),
            {g.name: committed(kafka, g.name, g.topics) for g in CONSUMER_GROUPS.values()},
        )

    def published(self, topic: str) -> int:
        return sum(o for (t, _), o in self.ends.items() if t == topic)

    def lag(self, group: str) -> int:
        return sum(self.ends[tp] - o for tp, o in self.committed[group].items())


# -- the rush ------------------------------------------------------------------------------


@dataclass
class Schedule:
    id: int
    concert_id: int
    title: str
    concert_date: date
    seat_count: int
    available: set[int] = field(default_factory=set)
    sold: int = 0


@dataclass
class Stats:
    fans: int
    poor: int
    done: int = 0
    waiting: int = 0
    reserved: int = 0
    paid: int = 0
    failed: Counter[str] = field(default_factory=Counter)
    no_seat: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    requests: int = 0
    # (answered at, seconds from sending) of every answered POST /v1/payments
    payments: list[tuple[float, float]] = field(default_factory=list)
    sample: dict[str, int] | None = None  # a successful payment: payment_id, seat_id
    started: float = field(default_factory=time.perf_counter)
    finished: float | None = None


class Rush:
    def __init__(
        self,
        client: httpx.AsyncClient,
        args: argparse.Namespace,
        stats: Stats,
        env: dict[str, str],
    ) -> None:
        self.client = client
        self.args = args
        self.stats = stats
        self.gate = asyncio.Semaphore(args.concurrency)
        self.schedules: dict[int, Schedule] = {}
        self.users: list[int] = []
        self.by_concert: dict[int, list[Schedule]] = {}
        # How fast payment-api's activator lets fans in (its settings and their defaults).
        batch = float(env.get("QUEUE_ACTIVATE_BATCH", "100"))
        self.activation_per_s = batch / float(env.get("QUEUE_ACTIVATE_INTERVAL_S", "1.0"))
        self.jwt_secret = dev_auth_env(env)["AUTH_JWT_SECRET"]  # the stack's (ticketing_dev.stack)

    async def call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        async with self.gate:
            self.stats.requests += 1
            return await self.client.request(method, path, **kwargs)

    async def load_catalogue(self) -> None:
        for concert in (await self.client.get("/v1/concerts", params={"limit": 100})).json():
            found = (await self.client.get(f"/v1/concerts/{concert['id']}/schedules")).json()
            for s in found:
                schedule = Schedule(
                    s["id"],
                    concert["id"],
                    concert["title"],
                    date.fromisoformat(s["concert_date"]),
                    s["seat_count"],
                )
                self.schedules[schedule.id] = schedule
                self.by_concert.setdefault(concert["id"], []).append(schedule)
        await self.refresh_seats()

    async def refresh_seats(self) -> None:
        """What a fan's seat map shows: the seats available now, and how many are sold."""
        for schedule in self.schedules.values():
            seats = (await self.client.get(f"/v1/schedules/{schedule.id}/seats")).json()
            schedule.available = {s["id"] for s in seats if s["status"] == "available"}
            schedule.sold = sum(s["status"] == "sold" for s in seats)

    def sold_out(self) -> list[Schedule]:
        return [s for s in self.schedules.values() if s.sold == s.seat_count]

    async def run(self, users: list[int]) -> None:
        """Fan i arrives at i / rate seconds, whatever the earlier ones are doing."""
        self.users = users

        async def keep_seat_maps_fresh() -> None:
            while True:
                await asyncio.sleep(2)
                await self.refresh_seats()

        self.stats.started = time.perf_counter()
        # The group cancels every task still running when one fails or the rush is interrupted.
        async with asyncio.TaskGroup() as tasks:
            refresher = tasks.create_task(keep_seat_maps_fresh())
            start = time.perf_counter()
            fans = []
            for i, user_id in enumerate(users):
                delay = start + i / self.args.rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                fans.append(tasks.create_task(self.fan(user_id)))
            await asyncio.gather(*fans)
            refresher.cancel()
        await self.refresh_seats()
        self.stats.finished = time.perf_counter()

    async def fan(self, user_id: int) -> None:
        try:
            await self._fan(user_id)
        except httpx.HTTPError as exc:
            self.stats.errors[type(exc).__name__] += 1
        finally:
            self.stats.done += 1

    async def _fan(self, user_id: int) -> None:
        # The fan signs in (a development JWT of the stack's key), then takes a queue token,
        # which is bound to them and travels in its own header.
        me = {"Authorization": f"Bearer {mint_dev_token(user_id, secret=self.jwt_secret)}"}
        r = await self.call("POST", "/v1/queue/tokens", headers=me)
        if r.status_code != 201:
            self.stats.errors[f"queue token {r.status_code}"] += 1
            return
        token, position = r.json()["token"], r.json()["position"]
        state = f"/v1/queue/tokens/{r.json()['token_id']}"
        auth = {**me, "X-Queue-Token": token}
        self.stats.waiting += 1
        try:
            while True:
                # Come back about when the queue should reach us, as a queue page would.
                wait = min(5.0, max(0.5, position / self.activation_per_s))
                await asyncio.sleep(wait * random.uniform(0.8, 1.2))
                r = await self.call("GET", state, headers=me)
                if r.status_code != 200:
                    self.stats.errors[f"queue state {r.status_code}"] += 1
                    return
                if r.json()["status"] == "active":
                    break
                position = r.json()["position"]
        finally:
            self.stats.waiting -= 1

        reservation = await self.reserve(auth)
        if reservation is None:
            self.stats.no_seat += 1
            return
        r = await self.call(
            "POST",
            "/v1/payments",
            json={"reservation_id": reservation["reservation_id"]},
            headers=auth,
        )
        # httpx's elapsed runs from sending the request to the end of the answer.
        self.stats.payments.append((time.perf_counter(), r.elapsed.total_seconds()))
        if r.status_code == 201:
            self.stats.paid += 1
            if self.stats.sample is None and self.stats.paid >= self.args.fans // 10:
                self.stats.sample = {
                    "payment_id": r.json()["payment_id"],
                    "seat_id": r.json()["seat_id"],
                }
        elif r.status_code in (402, 403, 410):
            self.stats.failed[r.json().get("reason", str(r.status_code))] += 1
        else:
            self.stats.errors[f"payment {r.status_code}"] += 1

    async def reserve(self, auth: dict[str, str]) -> dict[str, int] | None:
        """A seat of the fan's concert, the wanted date first, then the others. While seats
        are held by others (their payment may fail and free them), the fan keeps looking for
        ``--patience`` seconds."""
        concert = random.choices(list(self.by_concert), weights=POPULARITY[: len(self.by_concert)])
        schedules = random.sample(self.by_concert[concert[0]], len(self.by_concert[concert[0]]))
        deadline = time.perf_counter() + self.args.patience
        while True:
            for schedule in schedules:
                for _ in range(3):
                    if not schedule.available:
                        break
                    seat = random.choice(list(schedule.available))
                    schedule.available.discard(seat)
                    r = await self.call(
                        "POST", "/v1/reservations", json={"seat_id": seat}, headers=auth
                    )
                    if r.status_code == 201:
                        self.stats.reserved += 1
                        return r.json()
                    if r.status_code == 429:  # the fan's write limit: wait it out
                        schedule.available.add(seat)
                        await asyncio.sleep(float(r.headers.get("retry-after", "1")))
                        continue
                    if r.status_code != 409:
                        self.stats.errors[f"reservation {r.status_code}"] += 1
                        return None
            all_sold = all(x.sold == x.seat_count for x in schedules)
            if all_sold or time.perf_counter() > deadline:
                return None
            await asyncio.sleep(random.uniform(1, 3))  # the seat maps refresh every 2 s


# -- showing it ----------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def groups_table(
    start: Snapshot, now: Snapshot | None, running: set[str], *, dead_letters: bool = False
) -> Table:
    """Per registry group: events processed since ``start``, dead-lettered, lag now."""
    table = Table(box=box.SIMPLE_HEAD, title="consumer groups", title_justify="left")
    columns = ["group", "service", "processed", *(["DLQ"] if dead_letters else []), "lag"]
    for column in columns:
        table.add_column(column, justify="left" if column in ("group", "service") else "right")
    for group in CONSUMER_GROUPS.values():
        service = group.service if group.service in running else f"{group.service} *"
        if now is None:
            table.add_row(group.name, service, *["…"] * (len(columns) - 2))
            continue
        processed = total(now.committed[group.name]) - total(start.committed[group.name])
        dead = [f"{sum(now.published(d) - start.published(d) for d in group_dlqs(group.name)):,}"]
        row = [f"{processed:,}", *(dead if dead_letters else []), f"{now.lag(group.name):,}"]
        table.add_row(group.name, service, *row)
    if any(g.service not in running for g in CONSUMER_GROUPS.values()):
        table.caption = "* not running (not installed yet)"
        table.caption_justify = "left"
    return table


class Screen:
    """The live view: fans and payments, the queue, sold-out schedules, the groups' lag."""

    def __init__(self, stats: Stats, start: Snapshot, running: set[str]) -> None:
        self.stats = stats
        self.start = start
        self.running = running
        self.snapshot: Snapshot | None = None
        self.rush: Rush | None = None
        self.progress = Progress(
            TextColumn("[bold]fans"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[line]}"),
            TimeElapsedColumn(),
        )
        self.task = self.progress.add_task("fans", total=stats.fans, line="")

    def __rich__(self) -> Group:
        s = self.stats
        sold_out = len(self.rush.sold_out()) if self.rush else 0
        line = (
            f"in queue {s.waiting:,} · paid [green]{s.paid:,}[/] · failed [red]"
            f"{sum(s.failed.values()):,}[/] · no seat {s.no_seat:,} · sold out {sold_out} "
            f"schedule(s)"
        )
        self.progress.update(self.task, completed=s.done, line=line)
        return Group(self.progress, groups_table(self.start, self.snapshot, self.running))


async def watch_lag(screen: Screen, kafka: KafkaOffsets) -> None:
    while True:
        screen.snapshot = await asyncio.to_thread(Snapshot.take, kafka)
        await asyncio.sleep(1)


async def drain(screen: Screen, kafka: KafkaOffsets, limit_s: float) -> bool:
    """Wait until every running group has no lag; False after ``limit_s`` seconds."""
    deadline = time.monotonic() + limit_s
    running = [g.name for g in CONSUMER_GROUPS.values() if g.service in screen.running]
    while time.monotonic() < deadline:
        snapshot = await asyncio.to_thread(Snapshot.take, kafka)
        screen.snapshot = snapshot
        if all(snapshot.lag(g) == 0 for g in running):
            return True
        await asyncio.sleep(0.5)
    return False


def trace_id_of(stack: Stack, seat_id: int) -> str | None:
    """The trace id of the payment.success of a seat, from its outbox row's traceparent."""
    engine = stack.engine()
    try:
        with engine.connect() as conn:
            traceparent = conn.execute(
                text(
                    "SELECT traceparent FROM outbox WHERE event_type = 'payment.success'"
                    " AND key = :key ORDER BY id DESC LIMIT 1"
                ),
                {"key": str(seat_id)},
            ).scalar()
    finally:
        engine.dispose()
    return traceparent.split("-")[1] if traceparent else None


def spans_by_service(
    jaeger: str, trace_id: str, expected: set[str], wait: float
) -> dict[str, Counter[str]]:
    """{service: Counter of span names} of a trace, polled until every expected service is
    there or ``wait`` seconds have passed (exporters send in batches)."""
    deadline = time.monotonic() + wait
    found: dict[str, Counter[str]] = {}
    while True:
        try:
            r = httpx.get(f"{jaeger}/api/traces/{trace_id}", timeout=5)
            if r.status_code == 200 and r.json().get("data"):
                trace = r.json()["data"][0]
                services = {k: p["serviceName"] for k, p in trace["processes"].items()}
                found = {}
                for span in sorted(trace["spans"], key=lambda x: x["startTime"]):
                    service = services[span["processID"]]
                    found.setdefault(service, Counter())[span["operationName"]] += 1
        except httpx.HTTPError:
            pass
        if expected <= set(found) or time.monotonic() > deadline:
            return found
        time.sleep(1)


# The answers the API gave to these attempts before it verified who the caller is (any
# caller could name any user): recorded on the code of 2026-12-03, before authentication.
IMPERSONATION_BEFORE = {
    "charge fan B's points, no credential": "200 charged",
    "charge fan B's points as fan A": "200 charged",
    "read fan B's points as fan A": "200 balance",
    "queue token for fan B, as fan A": "201 token for B",
    "reserve with fan B's queue token, as fan A": "201 reserved as B",
}


def impersonation_attempts(api_url: str, a: int, b: int, secret: str) -> dict[str, str]:
    """Fan A tries to act as fan B; each answer as 'status slug'. Nothing is written."""
    me = {"Authorization": f"Bearer {mint_dev_token(a, secret=secret)}"}
    b_jwt = {"Authorization": f"Bearer {mint_dev_token(b, secret=secret)}"}

    def answer(r: httpx.Response) -> str:
        slug = r.json().get("type", "").rsplit(":", 1)[-1] if r.status_code >= 400 else "ok"
        return f"{r.status_code} {slug}"

    with httpx.Client(base_url=api_url, timeout=10) as http:
        found = {
            "charge fan B's points, no credential": http.post(
                f"/v1/users/{b}/points/charge", json={"amount": 1}
            ),
            "charge fan B's points as fan A": http.post(
                f"/v1/users/{b}/points/charge", json={"amount": 1}, headers=me
            ),
            "read fan B's points as fan A": http.get(f"/v1/users/{b}/points", headers=me),
            "queue token for fan B, as fan A": http.post(
                "/v1/queue/tokens", json={"user_id": b}, headers=me
            ),
        }
        b_token = http.post("/v1/queue/tokens", headers=b_jwt).json().get("token", "none")
        found["reserve with fan B's queue token, as fan A"] = http.post(
            "/v1/reservations", json={"seat_id": 1}, headers={**me, "X-Queue-Token": b_token}
        )
    return {what: answer(r) for what, r in found.items()}


def impersonation_table(api_url: str, users: list[int], secret: str) -> Table:
    table = Table(box=box.SIMPLE_HEAD, title="fan A acting as fan B", title_justify="left")
    for column in ("attempt", "before authentication", "now"):
        table.add_column(column)
    if len(users) < 2:
        return table
    try:
        now = impersonation_attempts(api_url, users[0], users[1], secret)
    except httpx.HTTPError as exc:
        now = dict.fromkeys(IMPERSONATION_BEFORE, f"error: {exc}")
    for what, before in IMPERSONATION_BEFORE.items():
        refused = not now[what].startswith("2")
        table.add_row(what, f"[red]{before}[/]", f"[{'green' if refused else 'red'}]{now[what]}[/]")
    return table


def summary(
    console: Console,
    args: argparse.Namespace,
    stack: Stack,
    rush: Rush,
    start: Snapshot,
    end: Snapshot,
    running: set[str],
    drained: bool,
) -> None:
    s = rush.stats
    latencies = [seconds * 1000 for _, seconds in s.payments]
    first = min((done - seconds for done, seconds in s.payments), default=0.0)
    last = max((done for done, _ in s.payments), default=0.0)
    seconds = (s.finished or time.perf_counter()) - s.started
    seats = sum(x.seat_count for x in rush.schedules.values())
    failed = ", ".join(f"{n:,} {reason}" for reason, n in s.failed.most_common()) or "none"
    errors = ", ".join(f"{n:,} {what}" for what, n in s.errors.most_common()) or "none"
    console.rule("[bold]demo summary")
    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold")
    head.add_column()
    head.add_row(
        "rush",
        f"{s.fans:,} fans ({s.poor:,} with too few points), {seats:,} seats on "
        f"{len(rush.schedules)} schedules, {stack.db}; {seconds:.1f} s, "
        f"{s.requests:,} API requests, errors: {errors}",
    )
    head.add_row(
        "payments",
        f"[green]{s.paid:,} succeeded[/] · [red]{sum(s.failed.values()):,} failed[/] ({failed})"
        f" · {s.no_seat:,} fans found no seat",
    )
    head.add_row(
        "POST /v1/payments",
        f"p50 {percentile(latencies, 0.5):.1f} ms · p95 {percentile(latencies, 0.95):.1f} ms · "
        f"p99 {percentile(latencies, 0.99):.1f} ms · "
        f"{len(latencies) / max(last - first, 1e-9):.1f} payments/s",
    )
    console.print(head)

    topics = Table(box=box.SIMPLE_HEAD, title="events published", title_justify="left")
    topics.add_column("topic")
    topics.add_column("events", justify="right")
    topics.add_column("answers of the rush", justify="right")
    # What the API's answers imply; more events means others published on the topics too.
    answers = {
        "payment.success": s.paid,
        "payment.failed": sum(s.failed.values()),
        "reservation.created": s.reserved,
    }
    for topic in TOPIC_EVENTS:
        published = end.published(topic) - start.published(topic)
        topics.add_row(topic, f"{published:,}", f"{answers.get(topic, 0):,}")
    console.print(topics)

    console.print(groups_table(start, end, running, dead_letters=True))
    if "dataplatform-stub" in running:
        got = httpx.get(f"{stack.stub_admin_url}/admin/received").json()
        console.print(
            f"data platform stand-in: received {got['received']:,} payments "
            f"({got['unique']:,} unique, {got['duplicates']:,} duplicates)"
        )
    if not drained:
        console.print(f"[yellow]the lag did not drain within {args.drain_timeout:.0f} s")
    console.print(
        impersonation_table(stack.api_url, rush.users, dev_auth_env(stack.env)["AUTH_JWT_SECRET"])
    )

    ranking = Table(box=box.SIMPLE_HEAD, title="sold-out ranking", title_justify="left")
    for column in ("date", "rank", "concert", "schedule", "sold out in"):
        ranking.add_column(column, justify="right" if column == "sold out in" else "left")
    dates = sorted({x.concert_date for x in rush.schedules.values()})
    for day in dates:
        r = httpx.get(f"{stack.api_url}/v1/rankings/sold-out", params={"date": str(day)})
        for entry in r.json() if r.status_code == 200 else []:
            ranking.add_row(
                str(day),
                str(entry["rank"]),
                entry["title"],
                f"#{entry['schedule_id']}",
                f"{entry['seconds_to_sell_out']:.1f} s",
            )
    if ranking.row_count:
        console.print(ranking)
    else:
        why = "" if "ranking-consumer" in running else " (ranking-consumer is not running)"
        console.print(
            f"sold-out ranking: no entries{why}; {len(rush.sold_out())} schedule(s) sold out"
        )

    console.print("[bold]one payment's trace")
    if s.sample is None:
        console.print("  no successful payment")
        return
    trace_id = trace_id_of(stack, s.sample["seat_id"])
    if trace_id is None:
        console.print("  no traceparent on its outbox row (tracing disabled?)")
        return
    jaeger = stack.env["JAEGER_QUERY_URL"]
    expected = {"payment-api"} | {
        g.service
        for g in CONSUMER_GROUPS.values()
        if "payment.success" in g.topics and g.service in running
    }
    found = spans_by_service(jaeger, trace_id, expected, wait=15)
    console.print(f"  payment #{s.sample['payment_id']} · trace id {trace_id}")
    for service, names in found.items():
        spans = ", ".join(f"{n} x{c}" if c > 1 else n for n, c in names.items())
        console.print(f"  [cyan]{service}[/]: {spans}")
    if missing := expected - set(found):
        console.print(f"  [yellow]not in Jaeger (yet): {', '.join(sorted(missing))}")
    console.print(f"  Jaeger API: {jaeger}/api/traces/{trace_id}")
    if found:  # the local Jaeger has no UI: a picture of the trace instead
        try:
            png = trace_png.write(
                trace_png.fetch(jaeger, trace_id), stack.state_dir / f"trace-{trace_id}.png"
            )
            console.print(f"  waterfall:  {png}")
        except (LookupError, httpx.HTTPError) as exc:
            console.print(f"  [yellow]no waterfall: {exc}")
    console.print(f"  Jaeger UI:  {jaeger}/trace/{trace_id}")


# -- the steps -----------------------------------------------------------------------------


def prepare(console: Console, stack: Stack, args: argparse.Namespace) -> list[int]:
    """Fresh data: drop, migrate, seed. Returns the user ids, the poor ones last."""
    console.print("[bold]infrastructure[/] (infra/infra.sh up)")
    subprocess.run(["bash", str(ROOT / "infra" / "infra.sh"), "up"], check=True)
    if stopped := stack.down():
        console.print(f"stopped the running stack for fresh data: {', '.join(stopped)}")
    console.print(f"[bold]fresh data[/] ({stack.db}): topics, migrations, seed")
    stack.reset()
    stack.prepare()
    wealthy = args.fans - round(args.fans * args.poor_share)
    seed = ("seed", "--concerts", str(CONCERTS), "--schedules", str(DATES))
    console.print("  " + stack.run_tool(*seed, "--seats", str(args.seats), "--users", str(wealthy)))
    poor = ("seed", "--concerts", "0", "--users", str(args.fans - wealthy))
    console.print("  " + stack.run_tool(*poor, "--points", str(PRICE // 2)))
    engine = stack.engine()
    try:
        with engine.connect() as conn:
            users = list(conn.execute(text("SELECT id FROM users ORDER BY id")).scalars())
    finally:
        engine.dispose()
    return users


def start_at_end(kafka: KafkaOffsets, console: Console) -> Snapshot:
    """Move the registry's groups to the end of their topics; the offsets they start from."""
    for group in CONSUMER_GROUPS.values():
        try:
            kafka.move_to_end(group.name, group.topics)
        except KafkaException as exc:
            console.print(f"warning: {group.name} not moved to the end: {exc}", markup=False)
    return Snapshot.take(kafka)


async def play(
    console: Console,
    stack: Stack,
    args: argparse.Namespace,
    users: list[int],
    kafka: KafkaOffsets,
    start: Snapshot,
) -> None:
    running = {p.name for p in stack.processes() if stack.pid(p.name)}
    poor = round(args.fans * args.poor_share)
    stats = Stats(fans=args.fans, poor=poor)
    order = random.sample(users, len(users))
    limits = httpx.Limits(max_connections=args.concurrency)
    async with httpx.AsyncClient(base_url=stack.api_url, timeout=30, limits=limits) as client:
        rush = Rush(client, args, stats, stack.env)
        await rush.load_catalogue()
        screen = Screen(stats, start, running)
        screen.rush = rush
        console.print(
            f"[bold]rush[/]: {args.fans:,} fans arriving at {args.rate:.0f}/s, at most "
            f"{args.concurrency} requests in flight"
        )
        with Live(screen, console=console, refresh_per_second=4):
            watcher = asyncio.create_task(watch_lag(screen, kafka))
            try:
                await rush.run(order)
            finally:
                watcher.cancel()
            drained = await drain(screen, kafka, args.drain_timeout)
        end = await asyncio.to_thread(Snapshot.take, kafka)
        summary(console, args, stack, rush, start, end, running, drained)


def interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--fans", type=int, default=2000)
    parser.add_argument("--rate", type=float, default=200.0, help="fans arriving per second")
    parser.add_argument("--seats", type=int, default=100, help="seats per schedule")
    parser.add_argument("--poor-share", type=float, default=0.1, help="fans with too few points")
    parser.add_argument("--concurrency", type=int, default=16, help="requests in flight, at most")
    parser.add_argument(
        "--patience", type=float, default=20.0, help="seconds a fan waits for a held seat"
    )
    parser.add_argument("--drain-timeout", type=float, default=90.0, help="seconds")
    parser.add_argument("--db", choices=DATABASES, default=os.environ.get("DEMO_DB", "sqlite"))
    parser.add_argument("--keep", action="store_true", help="leave the stack running")
    args = parser.parse_args()
    console = Console()
    stack = Stack(
        infra_env(), db=args.db, say=lambda line: console.print(f"  {line}", markup=False)
    )
    signal.signal(signal.SIGTERM, interrupt)
    code = 0
    kafka: KafkaOffsets | None = None
    try:
        users = prepare(console, stack, args)
        kafka = KafkaOffsets(stack.env["KAFKA_BOOTSTRAP_SERVERS"])
        start = start_at_end(kafka, console)
        console.print("[bold]stack[/] (ticketing_dev.stack)")
        stack.up()
        asyncio.run(play(console, stack, args, users, kafka, start))
    except KeyboardInterrupt:
        console.print("[yellow]interrupted")
        code = 130
    except (StackError, subprocess.CalledProcessError, KafkaException) as exc:
        console.print(f"error: {exc}", style="red", markup=False)
        code = 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut this short
        if kafka is not None:
            kafka.close()
        if args.keep and code == 0:
            console.print(f"the stack keeps running: {stack.api_url}/docs · make logs · make down")
        else:
            stack.down()
    return code


if __name__ == "__main__":
    sys.exit(main())
