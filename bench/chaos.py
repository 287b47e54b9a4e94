"""``make chaos``: the whole system under many faults at once, then an exact account of every
effect of every event.

The stack of ticketing_dev.stack (PostgreSQL, in a schema, Redis prefix and consumer groups of
this run) plays rounds of the load generator's rush (scripts/loadgen.py: authenticated fans
queue, reserve and pay; a share of them too poor, so ``payment.failed`` flows too) while a
fault schedule runs, each fault logged with its start and end:

- every few seconds a random consumer process is SIGKILLed and restarted after a random delay;
- a second and a third instance of a random consumer start and stop again (rebalances);
- one Kafka broker restart (SIGKILL, then start);
- Redis and PostgreSQL unreachable for ``--outage-s`` each (every process reaches them through
  a TCP proxy of this run, which drops every connection and refuses new ones);
- the data platform stand-in answering 20% 5xx and leaving 5% hanging for ``--stub-fault-s``;
- payment-api SIGKILLed and restarted once (its outbox relay must resume).

After the last fault it waits for the outbox to drain and every group's lag to reach 0, then
accounts from the database, Redis, the stand-in's records and the topics (``account``): every
successful payment counted once in ``schedule_sales`` and once at the stand-in, its hold
released and its queue token expired; every failed payment compensated (reservation
cancelled, seat free) and released; every user's points whole; every outbox row published
and on its topic; every live reservation holding its seat; no seat held by a lapsed, paid or
cancelled reservation; no dead letter. Writes bench/results/chaos.json and chaos.png (lag per
group over time, the faults below it).

The schedule is bench/chaos_faults.py, the account bench/chaos_account.py.

    uv run python bench/chaos.py [--payments 5000] [--rate 20] [--seed 1]
        [--broker N]

Needs the local infrastructure (``source infra/env.sh``; KAFKA_BOOTSTRAP_SERVERS may list
several brokers, ``--broker`` names the node to restart) and ``uv sync --all-packages``.
tests/chaos/test_chaos.py runs a short version on a private broker.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import math
import random
import signal
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import redis
from confluent_kafka import Consumer, KafkaException, TopicPartition
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))  # loadgen.py, a script of its own
from chaos_account import Sources, account  # noqa: E402
from chaos_faults import (  # noqa: E402
    Broker,
    Chaos,
    FaultLog,
    InfraBroker,
    Plan,
    free_ports_from,
    stub_admin,
)
from loadgen import Api, Rush, Tally, seed_round  # noqa: E402
from sqlalchemy.exc import SQLAlchemyError  # noqa: E402
from ticketing_dev.stack import CONSUMERS, Stack, StackError, infra_env  # noqa: E402
from ticketing_events.testing import (  # noqa: E402
    TcpProxy,
    end_offsets,
    start_group_at_end,
)
from ticketing_events.topics import (  # noqa: E402
    CONSUMER_GROUPS,
    TOPIC_EVENTS,
    dlq_topic,
    ensure_topics,
)

log = logging.getLogger("chaos")

Offsets = dict[tuple[str, int], int]


# -- lag over time -----------------------------------------------------------------------


class LagRecorder:
    """Each group's lag about every second (None while Kafka does not answer), read through a
    consumer per group that never joins it (quiet: the broker restart is expected)."""

    def __init__(self, bootstrap: str, groups: Mapping[str, tuple[str, ...]], t0: float):
        self.bootstrap = bootstrap
        self.readers = self._readers(groups)
        self.partitions = {t: partitions_of(bootstrap, t) for ts in groups.values() for t in ts}
        self.groups = dict(groups)
        self.t0 = t0
        self.samples: list[tuple[float, dict[str, int] | None]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lag", daemon=True)

    def _readers(self, groups: Iterable[str]) -> dict[str, Consumer]:
        config = {"bootstrap.servers": self.bootstrap, "enable.auto.commit": False, "log_level": 0}
        return {group: Consumer({**config, "group.id": group}) for group in groups}

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        for reader in self.readers.values():
            reader.close()

    def _take(self) -> dict[str, int]:
        lags = {}
        for group, topics in self.groups.items():
            reader = self.readers[group]
            tps = [TopicPartition(t, p) for t in topics for p in self.partitions[t]]
            lag = 0
            for tp in reader.committed(tps, timeout=5):
                if tp.error is not None:
                    raise KafkaException(tp.error)
                end = reader.get_watermark_offsets(tp, timeout=5)[1]
                lag += max(0, end - max(tp.offset, 0))
            lags[group] = lag
        return lags

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic() - self.t0
            try:
                sample: dict[str, int] | None = self._take()
            except Exception as exc:  # the broker is down: a gap in the timeline
                log.debug("lag not read: %s", exc)
                sample = None
                # New readers: a reader's leaders, stale after a broker restart, kept the
                # timeline blank for minutes after the broker was back.
                for reader in self.readers.values():
                    reader.close()
                self.readers = self._readers(self.groups)
            self.samples.append((round(started, 2), sample))
            self._stop.wait(max(0.0, 1.0 - (time.monotonic() - self.t0 - started)))

    def zero_since(self, after_s: float) -> float | None:
        """The start of the first sample begun after ``after_s`` with no lag in any group."""
        for started, sample in list(self.samples):
            if started >= after_s and sample is not None and not any(sample.values()):
                return started
        return None


# -- the rush ----------------------------------------------------------------------------


async def rush(stack: Stack, plan: Plan, engine: Engine, chaos: Chaos) -> dict[str, Any]:
    """Rounds of loadgen's rush until ``plan.payments`` attempts and every one-off fault are
    done; what the fans got, and every user's points before paying."""
    api = Api(stack.api_url, plan.concurrency)
    options = argparse.Namespace(rate=plan.rate, patience=plan.patience)
    totals = Tally(fans=0)
    initial_points: dict[int, int] = {}
    rounds = 0
    try:
        while totals.paid + sum(totals.failed.values()) < plan.payments or not (
            chaos.one_offs_done.is_set()
        ):
            fans = plan.round_fans
            seats = math.ceil(fans * 0.2)  # the most wanted concert's share per date, and more
            try:
                catalogue = await asyncio.to_thread(
                    seed_round, engine, seats, fans, plan.poor_share
                )
                initial_points.update(await asyncio.to_thread(points_of, engine, catalogue.fans))
                tally = Tally(fans=len(catalogue.fans))
                round_rush = Rush(api, options, tally)
                await round_rush.load(catalogue.concerts)
            except Exception as exc:  # the database or the API is down: the next round
                log.warning("round could not start: %s", exc)
                await asyncio.sleep(1)
                continue
            rounds += 1
            log.info("round %d: %d fans at %g/s", rounds, fans, plan.rate)
            await round_rush.run(random.sample(catalogue.fans, len(catalogue.fans)))
            log.info("round %d: %s", rounds, tally.line())
            merge(totals, tally)
    finally:
        api.close()
    return {
        "rounds": rounds,
        "fans": totals.fans,
        "paid": totals.paid,
        "failed": dict(totals.failed),
        "no_seat": totals.no_seat,
        "errors": dict(totals.errors),
        "initial_points": initial_points,
    }


def merge(totals: Tally, tally: Tally) -> None:
    totals.fans += tally.fans
    totals.paid += tally.paid
    totals.failed.update(tally.failed)
    totals.no_seat += tally.no_seat
    totals.errors.update(tally.errors)


def points_of(engine: Engine, users: Sequence[int]) -> dict[int, int]:
    with engine.connect() as conn:
        rows = conn.execute(
            text("select id, points from users where id = any(:ids)"), {"ids": list(users)}
        ).all()
    return dict(rows)


# -- one run -----------------------------------------------------------------------------


@dataclass
class Result:
    plan: dict[str, Any]
    fans: dict[str, Any]
    events_in: dict[str, int]
    faults: list[dict[str, Any]]
    faults_injected: dict[str, int]
    effects: dict[str, dict[str, int]]
    lost: int
    doubled: int
    dlq: int
    outbox_unpublished: int
    stale_holds: int
    republished: int
    redelivered_to_stand_in: int
    last_fault_end_s: float
    lag_zero_at_s: float | None
    last_fault_to_lag_zero_s: float | None
    examples: list[str]
    lag: list[tuple[float, dict[str, int] | None]]

    def summary(self) -> dict[str, Any]:
        """Everything but the lag samples."""
        return {k: v for k, v in asdict(self).items() if k != "lag"}


def run(
    plan: Plan,
    broker: Broker,
    env: Mapping[str, str],
    state_dir: Path,
    *,
    keep_data: bool = False,
) -> Result:
    """One chaos run on a stack of its own (schema, Redis prefix, groups, ports, proxies)."""
    rng = random.Random(plan.seed)
    run_id = uuid.uuid4().hex[:8]
    bootstrap = env["KAFKA_BOOTSTRAP_SERVERS"]
    database_url = env["DATABASE_URL"]
    redis_url = make_url_parts(env["REDIS_URL"])
    db = make_url(database_url)
    proxies = {
        "redis": TcpProxy(redis_url[0], redis_url[1]),
        "postgres": TcpProxy(db.host or "127.0.0.1", db.port or 5432),
    }
    for proxy in proxies.values():
        proxy.start()
    through = {
        "REDIS_URL": f"redis://127.0.0.1:{proxies['redis'].port}/{redis_url[2]}",
        "DATABASE_URL": db.set(host="127.0.0.1", port=proxies["postgres"].port).render_as_string(
            False
        ),
    }
    base = free_ports_from(3 + len(CONSUMERS))
    stack = Stack(
        {**env, **through},
        ROOT,
        db="postgres",
        state_dir=state_dir,
        api_port=base,
        stub_port=base + 1,
        health_port=base + 2,
        stub_admin_port=base + 2 + len(CONSUMERS),  # after the consumers' health ports
        schema=f"chaos_{run_id}",
        redis_prefix=f"chaos-{run_id}:",
        group_prefix=f"chaos-{run_id}-",
        extra_env={
            "LOG_LEVEL": "INFO",
            "OTEL_SDK_DISABLED": "true",  # CPU for the load; traces are another test's
            "CONSUMER_SESSION_TIMEOUT_MS": str(plan.session_timeout_ms),
        },
        say=log.info,
    )
    groups = {stack.group_of(s): topics_of(s) for s in CONSUMERS}
    replication = min(3, len(bootstrap.split(",")))
    ensure_topics(bootstrap, replication_factor=replication)
    dlqs = [dlq_topic(t, g) for g, topics in groups.items() for t in topics]
    ensure_topics(bootstrap, dlqs, replication_factor=replication)
    starts = end_offsets(bootstrap, TOPIC_EVENTS)
    dlq_starts = end_offsets(bootstrap, dlqs)
    for group, topics in groups.items():
        start_group_at_end(bootstrap, group, topics)
    stack.prepare()
    # The account reads, and the reset drops, without the proxies.
    direct = Stack(
        env,
        ROOT,
        db="postgres",
        state_dir=state_dir,
        schema=stack.schema,
        redis_prefix=stack.redis_prefix,
    )
    engine = direct.engine()
    client = redis.Redis.from_url(env["REDIS_URL"])
    stub = None
    recorder = None
    try:
        stack.up()
        stub = stub_admin(stack)
        t0 = time.monotonic()
        faults = FaultLog(t0)
        recorder = LagRecorder(bootstrap, groups, t0)
        recorder.start()
        chaos = Chaos(stack, plan, broker, proxies, faults, rng)
        chaos.start()
        fans = asyncio.run(rush(stack, plan, engine, chaos))
        chaos.finish()
        last_fault = faults.last_end()
        log.info("faults over at %.1f s; waiting for the outbox and the lag", last_fault)
        lag_zero = drain(engine, recorder, faults, last_fault, plan.drain_timeout_s)
        recorder.stop()
        acc = account(
            Sources(
                engine,
                client,
                stack.redis_prefix,
                stub,
                bootstrap,
                starts,
                dlq_starts,
                fans.pop("initial_points"),
            )
        )
        return Result(
            plan=asdict(plan),
            fans=fans,
            events_in=acc.events_in,
            faults=[asdict(f) for f in faults.faults],
            faults_injected=dict(Counter(f.kind for f in faults.faults)),
            effects=acc.effects,
            lost=acc.lost,
            doubled=acc.doubled,
            dlq=acc.dlq,
            outbox_unpublished=acc.outbox_unpublished,
            stale_holds=acc.stale_holds,
            republished=acc.republished,
            redelivered_to_stand_in=acc.redelivered,
            last_fault_end_s=last_fault,
            lag_zero_at_s=lag_zero,
            last_fault_to_lag_zero_s=None if lag_zero is None else round(lag_zero - last_fault, 2),
            examples=acc.examples,
            lag=recorder.samples,
        )
    finally:
        if recorder is not None:
            with contextlib.suppress(Exception):
                recorder.stop()
        if stub is not None:
            stub.close()
        stack.down()
        engine.dispose()
        for proxy in proxies.values():
            proxy.stop()
        if not keep_data:
            direct.reset()
        client.close()


def drain(
    engine: Engine, recorder: LagRecorder, faults: FaultLog, after_s: float, timeout: float
) -> float | None:
    """Wait until the outbox is published and then no group lags; when (None: timed out)."""
    deadline = time.monotonic() + timeout
    published_at = None
    while time.monotonic() < deadline:
        if published_at is None:
            with contextlib.suppress(SQLAlchemyError), engine.connect() as conn:
                left = conn.execute(
                    text("select count(*) from outbox where published_at is null")
                ).scalar_one()
                if left == 0:
                    published_at = faults.now()
        if published_at is not None:
            zero = recorder.zero_since(max(after_s, published_at))
            if zero is not None:
                return zero
        time.sleep(0.5)
    return None


def partitions_of(bootstrap: str, topic: str) -> list[int]:
    from confluent_kafka.admin import AdminClient

    meta = AdminClient({"bootstrap.servers": bootstrap}).list_topics(topic, timeout=10)
    return sorted(meta.topics[topic].partitions)


def topics_of(service: str) -> tuple[str, ...]:
    (topics,) = [g.topics for g in CONSUMER_GROUPS.values() if g.service == service]
    return topics


def make_url_parts(url: str) -> tuple[str, int, str]:
    """Host, port and database number of a redis:// URL."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or 6379, parts.path.strip("/") or "0"


# -- the picture -------------------------------------------------------------------------


def plot(result: Result, path: Path) -> None:
    """Lag per group over time, and the faults in lanes below it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(
        2, 1, figsize=(13, 7.5), sharex=True, gridspec_kw={"height_ratios": [3, 2]}
    )
    groups = sorted({g for _, s in result.lag if s for g in s})
    for group in groups:
        xs = [t for t, s in result.lag]
        ys = [s[group] if s else math.nan for _, s in result.lag]
        (name,) = [g for g in CONSUMER_GROUPS if group.endswith(g)]  # without the run's prefix
        top.plot(xs, ys, label=name, linewidth=1.2)
    top.set_ylabel("lag (events)")
    top.set_title(
        f"chaos: {sum(result.events_in.values()):,} events, "
        f"{sum(result.faults_injected.values())} faults; lost {result.lost}, doubled "
        f"{result.doubled}, DLQ {result.dlq}; lag 0 {result.last_fault_to_lag_zero_s} s "
        "after the last fault"
    )
    top.legend(loc="upper left", fontsize=8)
    top.axvline(result.last_fault_end_s, color="black", linestyle="--", linewidth=0.8)
    if result.lag_zero_at_s is not None:
        top.axvline(result.lag_zero_at_s, color="green", linestyle="--", linewidth=0.8)

    lanes = sorted({(f["kind"], f["target"].split("@")[0]) for f in result.faults})
    colors = {"kill": "tab:red", "instance": "tab:blue", "broker": "black"}
    for i, (kind, target) in enumerate(lanes):
        for f in result.faults:
            if (f["kind"], f["target"].split("@")[0]) == (kind, target):
                end = f["end_s"] if f["end_s"] is not None else f["start_s"]
                width = max(end - f["start_s"], 0.3)
                color = colors.get(kind, "tab:orange")
                bottom.broken_barh([(f["start_s"], width)], (i - 0.4, 0.8), color=color, alpha=0.6)
    bottom.set_yticks(range(len(lanes)), [f"{k}: {t}" for k, t in lanes], fontsize=7)
    bottom.set_xlabel("seconds from the start of the rush")
    bottom.axvline(result.last_fault_end_s, color="black", linestyle="--", linewidth=0.8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write(result: Result, json_path: Path, png_path: Path) -> None:
    json_path.parent.mkdir(parents=True, exist_ok=True)
    plot(result, png_path)
    body = {**result.summary(), "timeline_png": str(png_path), "lag": result.lag}
    json_path.write_text(json.dumps(body, indent=1, default=str) + "\n")


# -- the command -------------------------------------------------------------------------


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    d = Plan()
    p.add_argument("--payments", type=int, default=d.payments, help="payment attempts wanted")
    p.add_argument("--rate", type=float, default=d.rate, help="fans arriving per second")
    p.add_argument("--round-fans", type=int, default=d.round_fans, help="fans per round")
    p.add_argument("--stub-fault-s", type=float, default=d.stub_fault_s)
    p.add_argument("--outage-s", type=float, default=d.outage_s, help="Redis, PostgreSQL")
    p.add_argument("--drain-timeout-s", type=float, default=d.drain_timeout_s)
    p.add_argument("--seed", type=int, default=None, help="of the fault schedule")
    p.add_argument(
        "--broker", type=int, default=1, help="the node to restart in a cluster (kafka-N)"
    )
    p.add_argument("--results", type=Path, default=ROOT / "bench" / "results" / "chaos.json")
    p.add_argument("--png", type=Path, default=ROOT / "bench" / "results" / "chaos.png")
    p.add_argument("--keep-data", action="store_true", help="keep the run's schema and keys")
    return p


def interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(
        stream=sys.stdout, level=logging.INFO, format="%(asctime)s %(name)s %(message)s"
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)  # the readiness polls
    plan = Plan(
        payments=args.payments,
        rate=args.rate,
        round_fans=min(args.round_fans, args.payments),
        stub_fault_s=args.stub_fault_s,
        outage_s=args.outage_s,
        drain_timeout_s=args.drain_timeout_s,
        seed=args.seed,
    )
    env = infra_env(ROOT)
    broker = InfraBroker(ROOT, env, args.broker)
    state_dir = ROOT / ".demo" / "chaos"  # logs and pid files
    signal.signal(signal.SIGTERM, interrupt)  # stop the stack as Ctrl-C does
    try:
        result = run(plan, broker, env, state_dir, keep_data=args.keep_data)
    except StackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    write(result, args.results, args.png)
    print(json.dumps(result.summary(), indent=1, default=str))
    print(f"wrote {args.results} and {args.png}")
    return 0 if result.lost == result.doubled == result.dlq == result.stale_holds == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
