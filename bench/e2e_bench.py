"""End-to-end latency under load: from a payment's commit to each of its effects.

The stack of ticketing_dev.stack (PostgreSQL, in a schema, Redis prefix and consumer groups of
this run, the groups moved to the end of their topics) takes steps of steady open-loop
payments (bench/api_bench.py's rush, authenticated fans with a held reservation each, one
fresh schedule per step). For every successful payment it times three effects:

- ranking: the ranking consumer's claim of the event (``processed_events.processed_at``,
  taken in the transaction that adds the payment to ``schedule_sales``; the count becomes
  visible when that transaction commits, a moment later, which nothing records);
- platform: the stand-in's receipt, the moment its 2xx answer passed the tap in front of it
  (bench/e2e_watch.py; the tap adds one loopback hop to the consumer's request);
- hold: the cleanup consumer's deletion of the seat hold in Redis, pushed by Redis keyspace
  notifications to the same watcher (enabled for the run, restored after; no polling).

Commit time is the outbox row's ``created_at``: written in the payment's transaction just
before it commits (so each figure is slightly over, never under). Stages: commit -> sent (the
Kafka message's CreateTime, given by the relay's producer: relay wake-up, coalescing, claim),
sent -> published (``outbox.published_at``: broker ack as the relay sees it), sent -> effect
(broker to consumer, poll and batch, handler). All clocks are this machine's.

Each step drains (outbox published, every group's lag 0, every effect seen) before the next.
The answer is the highest step whose worst effect p99 stays within ``--limit-ms`` while
payment-api kept up (answered at least 95% of the step's rate). Prints a table, writes
bench/results/e2e.json.

    uv run python bench/e2e_bench.py [--rates 25,50,100,150,200] [--duration 20]
        [--variant NAME:KEY=VALUE,KEY=VALUE ...] [--set KEY=VALUE ...]

Each ``--variant`` runs the whole ladder on a fresh stack with those settings (by default the
services' defaults, then ``OUTBOX_COALESCE_MS=0``); ``--set`` applies to every one.

Needs the local infrastructure (``source infra/env.sh``) and ``uv sync --all-packages``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
import sqlalchemy
from api_bench import percentile, rush, wait_published
from headline_bench import Lag
from kafka_outage_bench import fans, read_topics
from ticketing_events.testing import end_offsets
from ticketing_events.topics import CONSUMER_GROUPS

ROOT = Path(__file__).resolve().parent.parent
from chaos_faults import free_ports_from  # noqa: E402
from ticketing_dev.stack import CONSUMERS, Stack, infra_env  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "e2e.json"
EFFECTS = ("ranking", "platform", "hold")
TOPIC = "payment.success"
# The stack's settings (README); --set adds to or overrides them.
BASE_ENV = {
    "QUEUE_ACTIVE_TTL_S": "3600",
    "QUEUE_ACTIVATE_BATCH": "2000",
    "QUEUE_ACTIVATE_INTERVAL_S": "0.2",
    "LOG_LEVEL": "WARNING",
    "OTEL_SDK_DISABLED": "true",  # CPU for the load
}
# The default ladders: as shipped, and with the relay publishing at once after a commit
# instead of waiting OUTBOX_COALESCE_MS for more rows to batch.
VARIANTS = ("defaults", "no-coalesce:OUTBOX_COALESCE_MS=0")


class Watcher:
    """bench/e2e_watch.py as a child process, and Redis keyspace notifications while it runs."""

    def __init__(self, stack: Stack, port: int, out: Path) -> None:
        self.out = out
        self._redis = redis.Redis.from_url(stack.env["REDIS_URL"], decode_responses=True)
        self._events = self._redis.config_get("notify-keyspace-events")["notify-keyspace-events"]
        # E: keyevent channels, g: generic commands (DEL); what was set before is kept.
        self._redis.config_set("notify-keyspace-events", "".join({*self._events, "E", "g"}))
        self._process = subprocess.Popen(
            [
                sys.executable,
                str(Path(__file__).with_name("e2e_watch.py")),
                *("--port", str(port), "--target", f"{stack.stub_url}/payments"),
                *("--redis", stack.env["REDIS_URL"], "--out", str(out)),
                *("--hold-prefix", f"{stack.redis_prefix}seat:hold:"),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._process.stdout is not None
        if self._process.stdout.readline().strip() != "ready":
            self.stop()
            raise RuntimeError("bench/e2e_watch.py did not start")

    def seen(self) -> dict[str, dict[str, float]]:
        """effect -> key -> the first time it was seen."""
        seen: dict[str, dict[str, float]] = {"platform": {}, "hold": {}}
        with self.out.open() as lines:
            for line in lines:
                effect, key, at = line.rstrip("\n").split("\t")
                seen[effect].setdefault(key, float(at))
        return seen

    @property
    def pid(self) -> int:
        return self._process.pid

    def stop(self) -> None:
        self._process.terminate()
        self._process.wait(10)
        self._redis.config_set("notify-keyspace-events", self._events)
        self._redis.close()


@dataclass
class Payment:
    event_id: str
    seat_id: int
    committed: float  # epoch seconds: outbox.created_at
    published: float  # outbox.published_at
    sent: float | None = None  # the Kafka message's CreateTime
    ranking: float | None = None
    platform: float | None = None
    hold: float | None = None


def outbox_payments(engine: sqlalchemy.Engine, schedule_id: int) -> dict[str, Payment]:
    """The step's successful payments, by event id."""
    query = sqlalchemy.text(
        "select event_id, cast(cast(payload as jsonb) -> 'payload' ->> 'seat_id' as bigint),"
        " extract(epoch from created_at), extract(epoch from published_at) from outbox"
        " where event_type = :t"
        " and cast(cast(payload as jsonb) -> 'payload' ->> 'schedule_id' as bigint) = :s"
    )
    with engine.connect() as conn:
        rows = conn.execute(query, {"t": TOPIC, "s": schedule_id}).all()
    return {e: Payment(e, seat, float(c), float(p)) for e, seat, c, p in rows}


def ranking_claims(
    engine: sqlalchemy.Engine, groups: list[str], ids: list[str]
) -> dict[str, float]:
    query = sqlalchemy.text(
        "select event_id, extract(epoch from min(processed_at)) from processed_events"
        " where consumer_group = any(:g) and event_id = any(:ids) group by event_id"
    )
    with engine.connect() as conn:
        return {e: float(t) for e, t in conn.execute(query, {"g": groups, "ids": ids})}


def wait_effects(
    watcher: Watcher, payments: Mapping[str, Payment], timeout: float
) -> dict[str, dict[str, float]]:
    """The watcher's records once every payment's platform receipt and hold release are in
    (or the timeout passed)."""
    seats = {str(p.seat_id) for p in payments.values()}
    deadline = time.monotonic() + timeout
    while True:
        seen = watcher.seen()
        done = payments.keys() <= seen["platform"].keys() and seats <= seen["hold"].keys()
        if done or time.monotonic() > deadline:
            return seen
        time.sleep(0.5)


def figures(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50_ms": round(percentile(values, 0.50), 1),
        "p95_ms": round(percentile(values, 0.95), 1),
        "p99_ms": round(percentile(values, 0.99), 1),
        "max_ms": round(max(values, default=float("nan")), 1),
    }


def breakdown(payments: list[Payment]) -> dict[str, Any]:
    """Per effect, commit -> effect; per stage, the part of it."""

    def ms(later: float | None, earlier: float | None) -> float | None:
        return None if later is None or earlier is None else (later - earlier) * 1000

    def of(pairs: list[tuple[float | None, float | None]]) -> dict[str, float]:
        return figures([v for a, b in pairs if (v := ms(a, b)) is not None])

    effects = {e: of([(getattr(p, e), p.committed) for p in payments]) for e in EFFECTS}
    stages = {
        "commit_to_sent": of([(p.sent, p.committed) for p in payments]),
        "sent_to_published": of([(p.published, p.sent) for p in payments]),
        **{f"sent_to_{e}": of([(getattr(p, e), p.sent) for p in payments]) for e in EFFECTS},
    }
    missing = {e: sum(getattr(p, e) is None for p in payments) for e in (*EFFECTS, "sent")}
    return {"effects": effects, "stages": stages, "missing": missing}


def cpu_seconds(pid: int) -> float:
    """CPU seconds used so far by a process and its children that it has reaped."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    found = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError):
            if Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1] == str(pid):
                found.append(int(entry))
    return found


def cpu_by_process(stack: Stack, watcher: Watcher) -> dict[str, float]:
    """CPU seconds so far of the stack's processes, this run's infrastructure (its pid files
    under INFRA_DIR; PostgreSQL with its backends) and this benchmark (with the watcher)."""
    pids = {p.name: [pid] for p in stack.processes() if (pid := stack.pid(p.name))}
    run = Path(stack.env.get("INFRA_DIR", ROOT / ".infra")) / "run"
    for name in ("kafka", "postgres", "redis"):
        with contextlib.suppress(OSError, ValueError):
            pid = int((run / f"{name}.pid").read_text())
            pids[name] = [pid, *(children(pid) if name == "postgres" else ())]
    pids["bench"] = [os.getpid(), watcher.pid]
    return {name: sum(cpu_seconds(p) for p in group) for name, group in pids.items()}


class Bench:
    def __init__(self, stack: Stack, watcher: Watcher, args: argparse.Namespace) -> None:
        self.stack = stack
        self.watcher = watcher
        self.args = args
        self.engine = stack.engine()
        self.lag = Lag(stack)
        registry = [g.name for g in CONSUMER_GROUPS.values() if g.service == "ranking-consumer"]
        self.ranking_groups = [*registry, stack.group_of("ranking-consumer")]

    async def step(self, rate: float, duration: float, label: str) -> dict[str, Any]:
        args = self.args
        schedule_id, _, pairs = await fans(self.stack, self.engine, int(rate * duration), label)
        await asyncio.to_thread(self.lag.wait_drained)  # the seat holds are set
        bootstrap = self.stack.env["KAFKA_BOOTSTRAP_SERVERS"]
        start = end_offsets(bootstrap, [TOPIC])
        before = cpu_by_process(self.stack, self.watcher)
        load_before = os.getloadavg()[0]
        t0 = time.monotonic()
        results = await rush(self.stack.api_url, pairs, rate, args.in_flight)
        span = time.monotonic() - t0
        after = cpu_by_process(self.stack, self.watcher)
        cpu = {n: round((s - before.get(n, 0.0)) / span, 2) for n, s in after.items()}
        await asyncio.to_thread(wait_published, self.engine, args.drain_timeout)
        lags = await asyncio.to_thread(self.lag.wait_drained, args.drain_timeout)
        payments = outbox_payments(self.engine, schedule_id)
        seen = await asyncio.to_thread(wait_effects, self.watcher, payments, args.drain_timeout)
        messages = await asyncio.to_thread(read_topics, bootstrap, start)
        sent = {dict(m.headers() or ())["event_id"].decode(): m.timestamp()[1] for m in messages}
        claims = ranking_claims(self.engine, self.ranking_groups, list(payments))
        for p in payments.values():
            p.sent = sent[p.event_id] / 1000 if p.event_id in sent else None
            p.ranking = claims.get(p.event_id)
            p.platform = seen["platform"].get(p.event_id)
            p.hold = seen["hold"].get(str(p.seat_id))
        answered = [(done - due) * 1000 for due, _, done, status in results if status == 201]
        return {
            "rate_per_s": rate,
            "duration_s": duration,
            "payments_sent": len(results),
            "payments_succeeded": len(payments),
            "achieved_per_s": round(len(answered) / span, 1),
            "api_p99_ms": round(percentile(answered, 0.99), 1),
            **breakdown(list(payments.values())),
            "lag_left": lags,
            "cpu_cores_used": cpu,
            "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        }


def worst_p99(step: dict[str, Any]) -> float:
    return max(step["effects"][e]["p99_ms"] for e in EFFECTS)


def show(step: dict[str, Any]) -> str:
    """One row of the table: per effect p50/p95/p99, per stage p50/p99 (ms)."""

    def cell(f: dict[str, float], *qs: int) -> str:
        return "/".join(f"{f[f'p{q}_ms']:.0f}" for q in qs)

    e, s = step["effects"], step["stages"]
    cells = [f"{step['rate_per_s']:>5.0f}", f"{step['achieved_per_s']:>6.1f}"]
    cells += [f"{cell(e[x], 50, 95, 99):>13}" for x in EFFECTS]
    stages = ["commit_to_sent", "sent_to_published", *(f"sent_to_{x}" for x in EFFECTS)]
    cells += [f"{cell(s[x], 50, 99):>11}" for x in stages]
    return " ".join(cells)


HEADER = " ".join(
    [
        f"{'rate':>5}",
        f"{'got/s':>6}",
        *(f"{x + ' 50/95/99':>13}" for x in EFFECTS),
        *(f"{x:>11}" for x in ("commit>sent", "sent>acked", "sent>rank", "sent>plat", "sent>hold")),
    ]
)


async def run_variant(
    args: argparse.Namespace, name: str, changes: Mapping[str, str]
) -> dict[str, Any]:
    """The step ladder on a stack of its own, with ``changes`` to the stack's settings."""
    run = uuid.uuid4().hex[:8]
    state = Path(tempfile.mkdtemp(prefix=f"e2e-{run}-"))
    base = free_ports_from(4 + len(CONSUMERS))  # the API, the stand-in's two, the tap, consumers
    settings = {**BASE_ENV, **changes}
    stack = Stack(
        infra_env(),
        db="postgres",
        state_dir=state,
        api_port=base,
        stub_port=base + 1,
        stub_admin_port=base + 2,
        health_port=base + 4,
        schema=f"e2e_{run}",
        redis_prefix=f"e2e:{run}:",
        group_prefix=f"e2e-{run}-",
        extra_env={**settings, "DATAPLATFORM_URL": f"http://127.0.0.1:{base + 3}/payments"},
        say=lambda line: None,
    )
    print(
        f"variant {name!r} (run {run}): {dict(changes) or 'the services defaults'}, "
        f"{args.duration:.0f} s per step, load average {os.getloadavg()[0]:.2f}, logs in {state}",
        flush=True,
    )
    await asyncio.to_thread(stack.prepare)
    Lag(stack).start_at_end()
    watcher = Watcher(stack, base + 3, state / "effects.tsv")
    bench = None
    steps = []
    try:
        await asyncio.to_thread(stack.up)
        bench = Bench(stack, watcher, args)
        if args.warmup:
            warm = await bench.step(args.rates[0], args.warmup, f"{run}-warmup")
            print(f"  warm-up at {args.rates[0]:.0f}/s, not counted: {worst_p99(warm)} ms p99")
        print(HEADER, flush=True)
        for rate in args.rates:
            steps.append(await bench.step(rate, args.duration, f"{run}-{rate:.0f}"))
            print(show(steps[-1]), flush=True)
    finally:
        if bench is not None:
            bench.engine.dispose()
        await asyncio.to_thread(stack.down)
        watcher.stop()
        await asyncio.to_thread(stack.reset)
    # A step counts when the API kept up with its rate and every effect's p99 stayed within.
    within = [
        s["rate_per_s"]
        for s in steps
        if worst_p99(s) <= args.limit_ms and s["achieved_per_s"] >= 0.95 * s["rate_per_s"]
    ]
    best = max(within, default=None)
    print(f"  highest rate with every effect's p99 <= {args.limit_ms:.0f} ms: {best}/s", flush=True)
    return {"changes": dict(changes), "max_rate_within_limit_per_s": best, "steps": steps}


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    started = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    load = os.getloadavg()
    common = dict(s.split("=", 1) for s in args.set)
    variants = {}
    for spec in args.variant or list(VARIANTS):
        name, _, changes = spec.partition(":")
        extra = dict(c.split("=", 1) for c in changes.split(",") if c)
        variants[name] = await run_variant(args, name, {**common, **extra})
    return {
        "date": started,
        "cpus": os.cpu_count(),
        "load_average_at_start": [round(x, 2) for x in load],
        "limit_ms": args.limit_ms,
        "max_rate_within_limit_per_s": {
            name: v["max_rate_within_limit_per_s"] for name, v in variants.items()
        },
        "rates_per_s": args.rates,
        "variants": variants,
        "settings": {
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "in_flight": args.in_flight,
            "stack_env": BASE_ENV,
        },
        "method": {
            "commit": "outbox.created_at (in the payment's transaction, just before commit)",
            "sent": "Kafka message CreateTime (the relay's producer; ms resolution)",
            "published": "outbox.published_at (the relay, after the broker's ack)",
            "ranking": "processed_events.processed_at (the ranking transaction's claim)",
            "platform": "the stand-in's 2xx answer passing the tap (bench/e2e_watch.py)",
            "hold": "Redis keyspace notification of the hold's DEL (pushed, not polled)",
        },
        "notes": args.note,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--rates",
        type=lambda s: [float(r) for r in s.split(",")],
        default=[25.0, 50.0, 100.0, 150.0, 200.0],
        help="payments/s, one step each",
    )
    parser.add_argument("--duration", type=float, default=20.0, help="seconds per step")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds, not counted")
    parser.add_argument("--limit-ms", type=float, default=250.0, help="e2e p99 bound")
    parser.add_argument("--in-flight", type=int, default=256, help="requests outstanding")
    parser.add_argument("--drain-timeout", type=float, default=120.0)
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="stack env, every variant"
    )
    parser.add_argument(
        "--variant",
        action="append",
        metavar="NAME:KEY=VALUE,...",
        help=f"a ladder with these settings, on a fresh stack (repeatable; default: {VARIANTS})",
    )
    parser.add_argument("--note", action="append", default=[], help="kept in the JSON")
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args()
    # SIGTERM unwinds like Ctrl-C, so the stack is stopped and the schema dropped.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    result = asyncio.run(main_async(args))
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.results}")


if __name__ == "__main__":
    main()
