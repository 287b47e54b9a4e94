"""Rush benchmark of payment-api: queue -> reserve -> pay on PostgreSQL, outbox relay on.

Starts ``payment-api serve`` in its own process (uvicorn, ``--workers``) on a private schema,
prepares active tokens and held reservations, then sends ``POST /v1/payments`` as open-loop
arrivals at a fixed rate (each request leaves at its scheduled time whatever the earlier
ones are doing). Prints achieved payments/s, payment latency p50/p95/p99 (send -> response)
and the outbox publish delay (commit -> Kafka ack, from the outbox row's created_at and
published_at), then searches the highest rate whose payment p99 stays within 100 ms.

Absolute figures are this machine's. Two ratios compare across machines, each against a
limit taken in the same run: the API's CPU per payment over the floor's (the same statements
by a plain psycopg loop, bench/api_floor.py; goal <= 2), and the highest rate with p99 <=
100 ms over the CPU-bound rate, cores / CPU per payment of API + PostgreSQL + Kafka + client
(goal >= 0.75). Payments carry an Idempotency-Key, as a client that retries sends them.
Writes bench/results/api.json.

    uv run python bench/api_bench.py [--rate 300] [--duration 30] [--workers 2] [--no-search]
                                     [--relay inline|process] [--profile]

``--relay process`` runs the outbox relay as ``payment-api relay`` beside the API (woken by
PostgreSQL's notifications); its CPU is then its own figure, in the CPU-bound rate too.

Needs the local infrastructure (``source infra/env.sh``; defaults match it).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import IO

import aiohttp
import httpx
import redis
import sqlalchemy
from api_floor import pay_plainly
from payment_api.adapters.database import create_db_engine
from payment_api.auth import mint_dev_token
from payment_api.config import Settings
from payment_api.migrations import upgrade
from payment_api.seed import add_schedule, add_users
from pyspy import profiled, shares

RESULTS = Path(__file__).parent / "results" / "api.json"
P99_LIMIT_MS = 100.0
# What a sampled stack of the API processes is doing, by a file it passes through.
PROFILE_ROLES = {
    "service_layer/relay.py": "outbox relay",
    "fastapi/": "requests",
    "service_layer/activator.py": "queue activator",
    "uvicorn/": "event loop, HTTP",
}
PRICE = 100


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


@dataclass
class PhaseResult:
    rate_per_s: float
    duration_s: float
    sent: int
    succeeded: int
    errors: int
    achieved_per_s: float
    payment_p50_ms: float
    payment_p95_ms: float
    payment_p99_ms: float
    max_send_lag_ms: float
    outbox_delay_p50_ms: float
    outbox_delay_p99_ms: float
    cpu_ms_per_payment: dict[str, float]
    p99_ms_by_second: list[float]

    def ok(self) -> bool:
        return (
            self.errors == 0
            and self.payment_p99_ms <= P99_LIMIT_MS
            and self.achieved_per_s >= 0.95 * self.rate_per_s
        )


class CpuMeter:
    """CPU seconds used by the API processes (and a relay of its own), PostgreSQL, Kafka and
    this client (Linux /proc)."""

    def __init__(self, groups: dict[int, str]) -> None:
        self._groups = {str(pid): group for pid, group in groups.items()}  # a process tree each

    @staticmethod
    def _cpu(pid: str) -> float:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def _group(self, pid: str) -> str | None:
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            parent = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1]
        except OSError:
            return None
        if pid == str(os.getpid()):
            return "client"
        if (group := self._groups.get(pid) or self._groups.get(parent)) is not None:
            return group
        if cmdline.startswith("postgres"):
            return "postgres"
        if "kafka.Kafka" in cmdline:
            return "kafka"
        return None

    def snapshot(self) -> dict[str, tuple[str, float]]:
        """CPU seconds so far per process of a group: pid -> (group, seconds)."""
        found = {}
        for pid in filter(str.isdigit, os.listdir("/proc")):
            group = self._group(pid)
            if group is not None:
                found[pid] = (group, self._cpu(pid))
        return found

    @staticmethod
    def used(
        before: dict[str, tuple[str, float]], after: dict[str, tuple[str, float]]
    ) -> dict[str, float]:
        """CPU seconds per group between two snapshots. A process that exited in between
        (a PostgreSQL backend) is not counted: an undercount, never a negative figure."""
        totals: dict[str, float] = {}
        for pid, (group, seconds) in after.items():
            totals[group] = totals.get(group, 0.0) + seconds - before.get(pid, (group, 0.0))[1]
        return totals


class Server:
    """``payment-api serve`` in a child process; with ``relay_process``, the outbox relay in
    one of its own (``payment-api relay``) rather than a thread in each API worker."""

    def __init__(
        self, env: dict[str, str], port: int, log: Path, relay_process: bool = False
    ) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.log = log
        env = {**os.environ, **env, "API_HOST": "127.0.0.1", "API_PORT": str(port)}
        self._relay: subprocess.Popen[bytes] | None = None
        with log.open("wb") as out:
            if relay_process:
                env["OUTBOX_RELAY_ENABLED"] = "false"
                self._relay = _payment_api("relay", env, out)
            self._process = _payment_api("serve", env, out)

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"server exited: {self.log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError("server not ready")

    @property
    def pid(self) -> int:
        return self._process.pid

    @property
    def groups(self) -> dict[int, str]:
        """The CPU meter's groups: the API's process tree, and the relay's."""
        relay = {self._relay.pid: "relay"} if self._relay else {}
        return {self._process.pid: "api", **relay}

    def stop(self) -> None:
        for process in filter(None, (self._process, self._relay)):
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()


def _payment_api(command: str, env: dict[str, str], out: IO[bytes]) -> subprocess.Popen[bytes]:
    code = f"from payment_api.entrypoint import main; main([{command!r}])"
    return subprocess.Popen(
        [sys.executable, "-c", code], env=env, stdout=out, stderr=subprocess.STDOUT
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# A fan's request headers: a development JWT (``mint_dev_token``, with the AUTH_* variables
# the server reads from the same environment) and the active queue token bound to them.
Credentials = dict[str, str]
JWT_TTL_S = 6 * 3600  # outlasts any benchmark run


async def activate_tokens(client: httpx.AsyncClient, user_ids: list[int]) -> list[Credentials]:
    jwts = {u: {"Authorization": f"Bearer {mint_dev_token(u, ttl_s=JWT_TTL_S)}"} for u in user_ids}
    issued = await asyncio.gather(
        *(client.post("/v1/queue/tokens", headers=jwts[u]) for u in user_ids)
    )
    for r in issued:
        if r.status_code != 201:
            raise RuntimeError(f"queue token failed: {r.status_code} {r.text}")
    deadline = time.monotonic() + 60
    credentials = []
    for u, r in zip(user_ids, issued, strict=True):
        state = f"/v1/queue/tokens/{r.json()['token_id']}"
        while (await client.get(state, headers=jwts[u])).json()["status"] != "active":
            if time.monotonic() > deadline:
                raise RuntimeError("tokens did not become active")
            await asyncio.sleep(0.1)
        credentials.append({**jwts[u], "X-Queue-Token": r.json()["token"]})
    return credentials


async def reserve_all(
    client: httpx.AsyncClient,
    tokens: list[Credentials],
    seat_ids: list[int],
    concurrency: int = 48,
) -> list[tuple[Credentials, int]]:
    gate = asyncio.Semaphore(concurrency)

    async def reserve(i: int, seat_id: int) -> tuple[Credentials, int]:
        token = tokens[i % len(tokens)]
        async with gate:
            r = await client.post("/v1/reservations", json={"seat_id": seat_id}, headers=token)
        if r.status_code != 201:
            raise RuntimeError(f"reservation failed: {r.status_code} {r.text}")
        return token, int(r.json()["reservation_id"])

    return list(await asyncio.gather(*(reserve(i, s) for i, s in enumerate(seat_ids))))


async def rush(
    url: str, pairs: list[tuple[Credentials, int]], rate: float, in_flight: int
) -> list[tuple[float, float, float, int]]:
    """Open-loop: request i is due at start + i/rate. Returns (due, sent, done, status).

    At most ``in_flight`` requests are outstanding: past that a due request waits (its
    ``sent`` - ``due`` lag is reported), which keeps the client's own cost per request flat
    instead of letting a server hiccup snowball into thousands of client connections. The
    client shares the two cores with the server: aiohttp costs it about a third of httpx.
    """
    gate = asyncio.Semaphore(in_flight)
    connector = aiohttp.TCPConnector(limit=in_flight)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(url, connector=connector, timeout=timeout) as session:

        async def pay(
            token: Credentials, reservation_id: int, due: float
        ) -> tuple[float, float, float, int]:
            body = b'{"reservation_id": %d}' % reservation_id
            headers = {
                **token,
                "Content-Type": "application/json",
                "Idempotency-Key": f"pay-{reservation_id}",
            }
            async with gate:
                sent = time.perf_counter()
                try:
                    async with session.post("/v1/payments", data=body, headers=headers) as r:
                        await r.read()
                        status = r.status
                except (aiohttp.ClientError, TimeoutError) as exc:
                    print(f"  payment request failed: {exc!r}", flush=True)
                    status = 0
                return due, sent, time.perf_counter(), status

        start = time.perf_counter() + 0.2
        tasks = []
        for i, (token, reservation_id) in enumerate(pairs):
            due = start + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(pay(token, reservation_id, due)))
        return list(await asyncio.gather(*tasks))


def wait_published(engine: sqlalchemy.Engine, timeout: float = 120) -> None:
    """Wait until the relay has published every outbox row."""
    deadline = time.monotonic() + timeout
    with engine.connect() as conn:
        while time.monotonic() < deadline:
            pending = conn.execute(
                sqlalchemy.text("select count(*) from outbox where published_at is null")
            ).scalar()
            conn.commit()
            if pending == 0:
                return
            time.sleep(0.2)
    raise RuntimeError("outbox not drained")


def outbox_delays(engine: sqlalchemy.Engine, since: datetime) -> list[float]:
    """Commit -> ack delay of the payment events written since ``since`` (waits for them)."""
    wait_published(engine)
    with engine.connect() as conn:
        rows = conn.execute(
            sqlalchemy.text(
                "select extract(epoch from published_at - created_at) * 1000 from outbox"
                " where event_type = 'payment.success' and created_at >= :since"
            ),
            {"since": since},
        )
        return [float(r[0]) for r in rows]


def open_sale(engine: sqlalchemy.Engine, seats: int, title: str) -> list[int]:
    """A schedule on sale since a minute ago with ``seats`` seats; their ids."""
    with engine.begin() as conn:
        _, _, seat_ids = add_schedule(
            conn,
            seats_count=seats,
            price=PRICE,
            concert_date=date(2026, 12, 24),
            sale_opened_at=datetime.now(UTC) - timedelta(minutes=1),
            title=title,
        )
    return list(seat_ids)


async def phase(
    server: Server,
    engine: sqlalchemy.Engine,
    tokens: list[Credentials],
    rate: float,
    duration: float,
    in_flight: int = 128,
    around_rush: Callable[[], AbstractContextManager[None]] = nullcontext,
) -> PhaseResult:
    url = server.url
    meter = CpuMeter(server.groups)
    count = int(rate * duration)
    seat_ids = open_sale(engine, count, f"Bench {rate:.0f}/s")
    limits = httpx.Limits(max_connections=in_flight, max_keepalive_connections=in_flight)
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as client:
        pairs = await reserve_all(client, tokens, seat_ids)
    await asyncio.to_thread(wait_published, engine)  # reservation events out before timing
    # A fresh client: no connection left idle long enough for the server to be closing it.
    since = datetime.now(UTC)
    with around_rush():
        cpu_before = meter.snapshot()
        results = await rush(url, pairs, rate, in_flight)
        cpu_after = meter.snapshot()
    latencies = [(done - sent) * 1000 for _, sent, done, status in results if status == 201]
    by_second: dict[int, list[float]] = {}
    for due, sent, done, _ in results:
        by_second.setdefault(int(due - results[0][0]), []).append((done - sent) * 1000)
    errors = sum(1 for *_, status in results if status != 201)
    first = min(scheduled for scheduled, *_ in results)
    last = max(done for _, _, done, _ in results)
    delays = outbox_delays(engine, since)
    return PhaseResult(
        rate_per_s=rate,
        duration_s=duration,
        sent=len(results),
        succeeded=len(latencies),
        errors=errors,
        achieved_per_s=round(len(latencies) / (last - first), 1),
        payment_p50_ms=round(percentile(latencies, 0.50), 2),
        payment_p95_ms=round(percentile(latencies, 0.95), 2),
        payment_p99_ms=round(percentile(latencies, 0.99), 2),
        max_send_lag_ms=round(max(sent - scheduled for scheduled, sent, *_ in results) * 1000, 2),
        outbox_delay_p50_ms=round(percentile(delays, 0.50), 2),
        outbox_delay_p99_ms=round(percentile(delays, 0.99), 2),
        p99_ms_by_second=[round(percentile(v, 0.99), 1) for _, v in sorted(by_second.items())],
        cpu_ms_per_payment={
            group: round(seconds / len(results) * 1000, 2)
            for group, seconds in sorted(CpuMeter.used(cpu_before, cpu_after).items())
        },
    )


async def floor(
    server: Server,
    engine: sqlalchemy.Engine,
    settings: Settings,
    schema: str,
    key_prefix: str,
    tokens: list[Credentials],
    count: int = 2000,
) -> float:
    """The floor's CPU ms per payment (bench/api_floor.py), on reservations made through the
    API like the rush's; its outbox rows are published before the rush starts."""
    seat_ids = open_sale(engine, count, "Bench floor")
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        pairs = await reserve_all(client, tokens, seat_ids)
    await asyncio.to_thread(wait_published, engine)
    plain = [(token["X-Queue-Token"], reservation_id) for token, reservation_id in pairs]
    cpu_ms = await asyncio.to_thread(
        pay_plainly,
        settings.database_url,
        schema,
        settings.redis_url,
        key_prefix,
        plain,
    )
    await asyncio.to_thread(wait_published, engine)
    return round(cpu_ms, 3)


def show(result: PhaseResult) -> None:
    print(
        f"  rate {result.rate_per_s:.0f}/s: achieved {result.achieved_per_s}/s, "
        f"payment p50/p95/p99 {result.payment_p50_ms}/{result.payment_p95_ms}/"
        f"{result.payment_p99_ms} ms, errors {result.errors}, "
        f"send lag max {result.max_send_lag_ms} ms, outbox delay p50/p99 "
        f"{result.outbox_delay_p50_ms}/{result.outbox_delay_p99_ms} ms; "
        f"CPU ms per payment {result.cpu_ms_per_payment}; "
        f"seconds with p99 > 50 ms: {sum(p > 50 for p in result.p99_ms_by_second)}"
        f"/{len(result.p99_ms_by_second)}",
        flush=True,
    )


async def search(
    server: Server,
    engine: sqlalchemy.Engine,
    tokens: list[Credentials],
    main: PhaseResult,
    duration: float,
) -> PhaseResult | None:
    """The phase at the highest rate whose payment p99 stays within 100 ms (None if none
    did): from the main run's rate, step by 25% up while it passes (or down until one
    passes), then bisect twice."""
    best = main if main.ok() else None
    failing = None if main.ok() else main.rate_per_s
    rate = main.rate_per_s * (1.25 if main.ok() else 0.8)

    async def attempt(rate: float) -> bool:
        nonlocal best, failing
        result = await phase(server, engine, tokens, rate, duration)
        show(result)
        if not result.ok():
            failing = rate
            return False
        if best is None or rate > best.rate_per_s:
            best = result
        return True

    for _ in range(8):
        if await attempt(rate):
            if failing is not None:
                break
            rate *= 1.25
        else:
            if best is not None:
                break
            rate *= 0.8
    for _ in range(2):
        if failing is None or best is None or failing - best.rate_per_s < 20:
            break
        await attempt(round((best.rate_per_s + failing) / 2))
    return best


async def main_async(args: argparse.Namespace) -> dict[str, float]:
    run = uuid.uuid4().hex[:8]
    schema = f"payment_bench_{run}"
    base = Settings()
    settings = base.model_copy(update={"database_schema": schema})
    upgrade(settings)
    engine = create_db_engine(settings)
    key_prefix = f"bench:{run}:"
    env = {
        "DATABASE_SCHEMA": schema,
        "DATABASE_POOL_SIZE": "20",
        "DATABASE_MAX_OVERFLOW": "20",
        "REDIS_KEY_PREFIX": key_prefix,
        "API_WORKERS": str(args.workers),
        "QUEUE_ACTIVE_TTL_S": "3600",
        "QUEUE_ACTIVATE_BATCH": "1000",
        "QUEUE_ACTIVATE_INTERVAL_S": "0.2",
        # Each user holds and pays many seats here (seats are dealt round-robin to --users):
        # the per-user limits, which a real fan never reaches, would refuse the replay.
        "RESERVATION_LIMIT_PER_USER": "0",
        "RATE_LIMIT_WRITES_PER_USER": "0",
        "LOG_LEVEL": "WARNING",
    }
    if not args.tracing:
        env["OTEL_SDK_DISABLED"] = "true"
    log = Path(tempfile.gettempdir()) / f"payment-api-bench-{run}.log"
    print(f"server log: {log}")
    server = Server(env, free_port(), log, relay_process=args.relay == "process")
    try:
        server.wait_ready()
        with engine.begin() as conn:
            users = add_users(conn, args.users, points=10**12, name=f"bench-{run}")
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            tokens = await activate_tokens(client, users)
        print(
            f"payment-api bench: {args.workers} worker(s), relay {args.relay}, tracing "
            f"{'on' if args.tracing else 'off'}, load average before {os.getloadavg()[0]:.2f}",
            flush=True,
        )
        floor_ms = await floor(server, engine, settings, schema, key_prefix, tokens)
        print(f"  floor (a plain psycopg loop): {floor_ms} CPU ms per payment", flush=True)
        profile = Path(tempfile.gettempdir()) / f"payment-api-bench-{run}.folded"
        profile_shares: dict[str, dict[str, float]] | None = None
        main = await phase(
            server,
            engine,
            tokens,
            args.rate,
            args.duration,
            around_rush=(lambda: profiled(server.pid, profile)) if args.profile else nullcontext,
        )
        show(main)
        if args.profile:
            profile_shares = shares(profile, PROFILE_ROLES)
            print(f"  py-spy samples of the API processes ({profile}), shares:")
            for kind in ("roles", "self", "inclusive"):
                top = list(profile_shares[kind].items())[:12]
                print(f"    {kind}: " + ", ".join(f"{k} {v:.0%}" for k, v in top), flush=True)
        max_rate = float("nan")
        best: PhaseResult | None = None
        if args.search:
            print(f"searching the highest rate with payment p99 <= {P99_LIMIT_MS:.0f} ms:")
            best = await search(server, engine, tokens, main, args.search_duration)
            max_rate = best.rate_per_s if best else 0.0
            print(f"  max rate with p99 <= {P99_LIMIT_MS:.0f} ms: {max_rate:.0f}/s")
    finally:
        server.stop()
        with engine.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        engine.dispose()
        client = redis.Redis.from_url(base.redis_url)
        for key in client.scan_iter(f"bench:{run}:*"):
            client.delete(key)
        client.close()
    # Against limits taken in the same run, so that machines compare: the API's CPU per
    # payment over the floor's, and the rate reached over the rate the CPU allows. CPU from
    # the best passing phase: past saturation the pool's overflow connections come and go,
    # and the CPU of PostgreSQL backends that exited is not counted.
    cpu = (best or main).cpu_ms_per_payment
    cores = os.cpu_count() or 1
    cpu_bound_rate = cores * 1000 / sum(cpu.values())
    summary = {
        "cpu_ms_per_payment": cpu,
        "api_cpu_ms_per_payment": cpu.get("api", float("nan")),
        "floor_cpu_ms_per_payment": floor_ms,
        "api_over_floor": round(cpu.get("api", float("nan")) / floor_ms, 2),
        # With the relay in its own process: the relay's CPU counted with the API's.
        "api_and_relay_over_floor": round((cpu.get("api", 0) + cpu.get("relay", 0)) / floor_ms, 2),
        "cpu_bound_rate_per_s": round(cpu_bound_rate, 1),
        "max_rate_over_cpu_bound_rate": round(max_rate / cpu_bound_rate, 2),
        "rate_per_s": main.rate_per_s,
        "achieved_per_s": main.achieved_per_s,
        "payment_p50_ms": main.payment_p50_ms,
        "payment_p95_ms": main.payment_p95_ms,
        "payment_p99_ms": main.payment_p99_ms,
        "outbox_delay_p50_ms": main.outbox_delay_p50_ms,
        "outbox_delay_p99_ms": main.outbox_delay_p99_ms,
        "max_rate_p99_under_100ms": max_rate,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                **summary,
                "details": {
                    "main": asdict(main),
                    "workers": args.workers,
                    "relay": args.relay,
                    "tracing": args.tracing,
                    "duration_s": args.duration,
                    "profile": profile_shares,
                },
            },
            indent=2,
        )
        + "\n"
    )
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--rate", type=float, default=300.0, help="payments per second")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of payments")
    parser.add_argument("--workers", type=int, default=2, help="uvicorn worker processes")
    parser.add_argument("--users", type=int, default=500, help="users (one token each)")
    parser.add_argument(
        "--relay",
        choices=["inline", "process"],
        default="inline",
        help="the outbox relay: a thread in each API worker, or a process of its own",
    )
    parser.add_argument("--search", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--search-duration", type=float, default=10.0)
    parser.add_argument(
        "--profile",
        action="store_true",
        help="sample the API processes with py-spy during the main rush (it costs them CPU)",
    )
    parser.add_argument(
        "--tracing",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="export traces over OTLP (OTEL_* variables) while measuring",
    )
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    summary = asyncio.run(main_async(args))
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
