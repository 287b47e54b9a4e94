"""The headline comparison: payment latency with the post-payment steps done by the consumers
(``POST_PROCESSING=events``) against the same steps done inside the request (``sync``).

One run, one fresh PostgreSQL schema and Redis prefix, the stand-in data platform answering
after 200 ms. Each mode runs payment-api with 2 uvicorn workers; in events mode the stack of
ticketing_dev.stack runs too (the registry's consumers in consumer groups of this run, moved to the
end of their topics first). Per mode, the same open-loop rush of bench/api_bench.py at a rate
both modes sustain and at a rush rate, every payment with a fresh fan (the cleanup step
expires the payer's queue token), after a short warm-up that is not counted. Latency is
counted from each request's due time to its answer, so waiting for a free connection counts.

Then the consumer outage, in events mode at the sustainable rate: ranking-consumer stopped
(SIGTERM) during the load, the API's p99 against the events baseline, the ranking group's lag
sampled each second, the consumer restarted and the lag drained.

Prints the figures, writes bench/results/headline.json and bench/results/headline.png.

    uv run python bench/headline_bench.py [--sustainable-rate 50] [--rush-rate 300]
        [--duration 20] [--warmup 5] [--outage-duration 15]

Needs the local infrastructure (``source infra/env.sh``) and ``uv sync --all-packages``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy
from api_bench import (
    PRICE,
    Credentials,
    Server,
    activate_tokens,
    free_port,
    percentile,
    reserve_all,
    rush,
    wait_published,
)
from dataplatform_stub.control import running_stub
from payment_api.seed import add_schedule, add_users
from ticketing_events.offsets import KafkaOffsets
from ticketing_events.topics import CONSUMER_GROUPS

ROOT = Path(__file__).resolve().parent.parent
from ticketing_dev.stack import CONSUMERS, Stack, infra_env  # noqa: E402

RESULTS = Path(__file__).parent / "results"
PLATFORM_LATENCY_MS = 200
RATIO_TARGET = 1 / 20
OUTAGE_SERVICE = "ranking-consumer"


@dataclass
class Phase:
    mode: str
    rate_per_s: float
    sent: int
    errors: int
    achieved_per_s: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_send_lag_ms: float
    load_average: float  # 1-minute, at the end of the phase
    latencies_ms: list[float] = field(repr=False)

    def figures(self) -> dict[str, float]:
        keys = ("rate_per_s", "p50_ms", "p95_ms", "p99_ms", "errors", "achieved_per_s")
        return {k: getattr(self, k) for k in (*keys, "max_send_lag_ms", "load_average")}

    def line(self, label: str) -> str:
        return (
            f"  {self.mode:6} {label:11} {self.rate_per_s:5.0f}/s: p50 {self.p50_ms:8.1f} ms"
            f"  p95 {self.p95_ms:8.1f} ms  p99 {self.p99_ms:8.1f} ms  errors {self.errors}"
            f"  achieved {self.achieved_per_s}/s  (send lag max {self.max_send_lag_ms:.0f} ms,"
            f" load {self.load_average:.2f})"
        )


def summarize(mode: str, rate: float, results: list[tuple[float, float, float, int]]) -> Phase:
    ok = [(due, done) for due, _, done, status in results if status == 201]
    latencies = [(done - due) * 1000 for due, done in ok]
    span = max(done for *_, done, _ in results) - min(due for due, *_ in results)
    return Phase(
        mode=mode,
        rate_per_s=rate,
        sent=len(results),
        errors=len(results) - len(ok),
        achieved_per_s=round(len(ok) / span, 1),
        p50_ms=round(percentile(latencies, 0.50), 1),
        p95_ms=round(percentile(latencies, 0.95), 1),
        p99_ms=round(percentile(latencies, 0.99), 1),
        max_send_lag_ms=round(max(sent - due for due, sent, *_ in results) * 1000, 1),
        load_average=round(os.getloadavg()[0], 2),
        latencies_ms=latencies,
    )


class Bench:
    def __init__(self, engine: sqlalchemy.Engine, args: argparse.Namespace) -> None:
        self.engine = engine
        self.args = args

    async def prepare(self, url: str, count: int, label: str) -> list[tuple[Credentials, int]]:
        """``count`` fans with an active token and a held reservation each; events out."""
        with self.engine.begin() as conn:
            users = add_users(conn, count, points=10**12, name=f"headline-{label}")
            _, _, seat_ids = add_schedule(
                conn,
                seats_count=count,
                price=PRICE,
                concert_date=date(2026, 12, 24),
                sale_opened_at=datetime.now(UTC) - timedelta(minutes=1),
                title=f"Headline {label}",
            )
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:
            # In slices: thousands of requests gathered at once stall httpx's pool.
            tokens = []
            for i in range(0, len(users), 500):
                tokens += await activate_tokens(client, users[i : i + 500])
            pairs = await reserve_all(client, tokens, seat_ids)
        await asyncio.to_thread(wait_published, self.engine)
        return pairs

    async def load(
        self, url: str, mode: str, pairs: list[tuple[Credentials, int]], rate: float
    ) -> Phase:
        results = await rush(url, pairs, rate, self.args.in_flight)
        return summarize(mode, rate, results)

    async def phase(self, url: str, mode: str, rate: float, duration: float) -> Phase:
        pairs = await self.prepare(url, int(rate * duration), f"{mode}-{rate:.0f}")
        return await self.load(url, mode, pairs, rate)

    async def warm_up(self, url: str, mode: str) -> None:
        """A short load that is not counted: first connections, pools and code paths."""
        rate = self.args.sustainable_rate
        p = await self.phase(url, mode, rate, self.args.warmup)
        print(f"  warm-up at {rate:.0f}/s, not counted: p99 {p.p99_ms} ms", flush=True)


class Lag:
    """The lag of this run's consumer groups (committed offsets against the topics' ends)."""

    def __init__(self, stack: Stack) -> None:
        self.kafka = KafkaOffsets(stack.env["KAFKA_BOOTSTRAP_SERVERS"])
        self.groups = {
            name: (stack.group_of(name), g.topics)
            for name in CONSUMERS
            for g in CONSUMER_GROUPS.values()
            if g.service == name
        }

    def start_at_end(self) -> None:
        """Before the consumers start: skip what other runs left in the topics."""
        for group, topics in self.groups.values():
            self.kafka.move_to_end(group, topics)

    def of(self, service: str) -> int:
        group, topics = self.groups[service]
        ends = self.kafka.ends(topics)
        committed = self.kafka.committed(group, topics)
        return sum(ends[tp] - max(committed.get(tp, 0), 0) for tp in ends)

    def all(self) -> dict[str, int]:
        return {name: self.of(name) for name in self.groups}

    def wait_drained(self, limit_s: float = 120) -> dict[str, int]:
        deadline = time.monotonic() + limit_s
        while True:
            lags = self.all()
            if not any(lags.values()) or time.monotonic() > deadline:
                return lags
            time.sleep(0.5)


def free_ports(count: int) -> int:
    """The first of ``count`` consecutive free loopback ports."""
    while True:
        base = free_port()
        try:
            for port in range(base, base + count):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue


def api_env(args: argparse.Namespace, mode: str) -> dict[str, str]:
    """payment-api's settings, the same in both modes but ``POST_PROCESSING``."""
    return {
        "POST_PROCESSING": mode,
        "API_WORKERS": str(args.workers),
        "DATABASE_POOL_SIZE": "20",
        "DATABASE_MAX_OVERFLOW": "20",
        "QUEUE_ACTIVE_TTL_S": "3600",
        "QUEUE_ACTIVATE_BATCH": "2000",
        "QUEUE_ACTIVATE_INTERVAL_S": "0.2",
        "LOG_LEVEL": "WARNING",
        "OTEL_SDK_DISABLED": "true",
    }


def terminate(stack: Stack, service: str) -> None:
    """SIGTERM one process of the stack and wait until it has exited."""
    pid = stack.pid(service)
    if pid is None:
        raise RuntimeError(f"{service} is not running")
    os.kill(pid, signal.SIGTERM)
    while stack.pid(service) is not None:
        time.sleep(0.1)


async def outage(bench: Bench, stack: Stack, lag: Lag, rate: float) -> dict[str, Any]:
    """Stop ranking-consumer, load at ``rate``, restart it, and watch its lag drain."""
    args = bench.args
    pairs = await bench.prepare(stack.api_url, int(rate * args.outage_duration), "outage")
    await asyncio.to_thread(lag.wait_drained)
    samples: list[dict[str, Any]] = []
    started = time.monotonic()
    state = "stopped"

    async def sample(until: asyncio.Event) -> None:
        while not until.is_set():
            value = await asyncio.to_thread(lag.of, OUTAGE_SERVICE)
            t = round(time.monotonic() - started, 1)
            samples.append({"t_s": t, "ranking": state, "lag": value})
            print(f"    t={t:5.1f}s ranking {state:10} lag {value}", flush=True)
            if state == "restarted" and value == 0:
                return
            await asyncio.sleep(1.0)

    await asyncio.to_thread(terminate, stack, OUTAGE_SERVICE)
    print(f"  {OUTAGE_SERVICE} stopped (SIGTERM); load at {rate:.0f}/s", flush=True)
    done = asyncio.Event()
    sampler = asyncio.create_task(sample(done))
    phase = await bench.load(stack.api_url, "events", pairs, rate)
    stopped_for = time.monotonic() - started
    state = "restarting"
    await asyncio.to_thread(stack.up)  # starts only what is not running
    state = "restarted"
    restarted_at = time.monotonic()
    print(f"  {OUTAGE_SERVICE} restarted after {stopped_for:.1f} s", flush=True)
    try:
        await asyncio.wait_for(sampler, timeout=args.drain_timeout)
    except TimeoutError:
        done.set()
    drained = samples[-1]["lag"] == 0 and samples[-1]["ranking"] == "restarted"
    return {
        "phase": phase,
        "stopped_for_s": round(stopped_for, 1),
        "max_lag": max(s["lag"] for s in samples),
        "drained": drained,
        "drained_after_restart_s": round(time.monotonic() - restarted_at, 1) if drained else None,
        "lag_samples": samples,
    }


async def run_events(bench: Bench, stack: Stack, rates: dict[str, float]) -> dict[str, Any]:
    args = bench.args
    lag = Lag(stack)
    lag.start_at_end()
    await asyncio.to_thread(stack.up)
    await bench.warm_up(stack.api_url, "events")
    phases = {}
    for label, rate in rates.items():
        pairs = await bench.prepare(stack.api_url, int(rate * args.duration), f"events-{label}")
        await asyncio.to_thread(lag.wait_drained)
        phases[label] = await bench.load(stack.api_url, "events", pairs, rate)
        print(phases[label].line(label), flush=True)
        print(f"    lag after the load: {await asyncio.to_thread(lag.all)}", flush=True)
    print(f"consumer outage ({OUTAGE_SERVICE}, {args.outage_duration:.0f} s of load):", flush=True)
    result = await outage(bench, stack, lag, rates["sustainable"])
    return {"phases": phases, "outage": result}


async def run_sync(bench: Bench, stack: Stack, rates: dict[str, float]) -> dict[str, Phase]:
    """payment-api alone with ``POST_PROCESSING=sync`` on the same schema, and its own stub."""
    args = bench.args
    with running_stub(latency_ms=PLATFORM_LATENCY_MS) as stub:
        env = {
            **stack.common_env(),
            **api_env(args, "sync"),
            "DATAPLATFORM_URL": stub.payments_url,
        }
        log = stack.state_dir / "payment-api-sync.log"
        server = Server(env, free_port(), log)
        try:
            await asyncio.to_thread(server.wait_ready)
            await bench.warm_up(server.url, "sync")
            phases = {}
            for label, rate in rates.items():
                phases[label] = await bench.phase(server.url, "sync", rate, args.duration)
                print(phases[label].line(label), flush=True)
        finally:
            server.stop()
        print(f"  data platform received: {stub.received()}", flush=True)
    return phases


def chart(phases: dict[str, dict[str, Phase]], outage: Phase, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 5.5))

    def cdf(p: Phase, style: str, name: str) -> None:
        values = sorted(p.latencies_ms)
        share = [(i + 1) / len(values) for i in range(len(values))]
        ax.step(values, share, style, where="post", label=f"{name} (p99 {p.p99_ms:.0f} ms)")

    styles = {"events": "-", "sync": "--"}
    for mode, by_rate in phases.items():
        for p in by_rate.values():
            cdf(p, styles[mode], f"{mode} {p.rate_per_s:.0f}/s")
    cdf(outage, ":", f"events {outage.rate_per_s:.0f}/s, {OUTAGE_SERVICE} down")
    ax.set_xscale("log")
    ax.set_xlabel("POST /v1/payments latency, due time to answer (ms, log scale)")
    ax.set_ylabel("share of payments answered within")
    ax.set_title(
        f"Post-payment steps by consumers (events) or in the request (sync); "
        f"data platform {PLATFORM_LATENCY_MS} ms",
        fontsize=10,
    )
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    run = uuid.uuid4().hex[:8]
    stack = Stack(
        infra_env(),
        db="postgres",
        state_dir=Path(tempfile.mkdtemp(prefix=f"headline-{run}-")),
        api_port=free_port(),
        health_port=free_ports(len(CONSUMERS)),
        stub_port=free_port(),
        schema=f"headline_{run}",
        redis_prefix=f"headline:{run}:",
        group_prefix=f"headline-{run}-",
        extra_env={
            **api_env(args, "events"),
            "DATAPLATFORM_STUB_LATENCY_MS": str(PLATFORM_LATENCY_MS),
        },
        say=lambda line: print(f"  stack: {line}", flush=True),
    )
    rates = {"sustainable": args.sustainable_rate, "rush": args.rush_rate}
    print(
        f"headline bench {run}: {args.workers} API workers, data platform "
        f"{PLATFORM_LATENCY_MS} ms, {args.duration:.0f} s per phase, logs in {stack.state_dir}, "
        f"load average {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    await asyncio.to_thread(stack.prepare)  # topics, and migrations on the fresh schema
    engine = stack.engine()
    bench = Bench(engine, args)
    try:
        print(f"events mode (payment-api + {len(CONSUMERS)} consumers):", flush=True)
        try:
            events = await run_events(bench, stack, rates)
        finally:
            await asyncio.to_thread(stack.down)
        print("sync mode (payment-api does the post-payment steps in the request):", flush=True)
        sync = await run_sync(bench, stack, rates)
    finally:
        engine.dispose()
        await asyncio.to_thread(stack.reset)  # drops the schema and the Redis keys
    phases = {"events": events["phases"], "sync": sync}
    return report(args, phases, events["outage"])


def report(
    args: argparse.Namespace, phases: dict[str, dict[str, Phase]], outage: dict[str, Any]
) -> dict[str, Any]:
    baseline = phases["events"]["sustainable"]
    during: Phase = outage.pop("phase")
    ratio = baseline.p99_ms / phases["sync"]["sustainable"].p99_ms
    verdict = "met" if ratio <= RATIO_TARGET else "NOT met"
    print(
        f"p99 ratio at {args.sustainable_rate:.0f}/s (events / sync): {ratio:.4f} = 1/"
        f"{1 / ratio:.0f} (target <= 1/20: {verdict})"
    )
    print(
        f"consumer outage: events p99 {during.p99_ms} ms with {OUTAGE_SERVICE} down vs "
        f"{baseline.p99_ms} ms baseline (p50 {during.p50_ms} vs {baseline.p50_ms} ms, errors "
        f"{during.errors}); {OUTAGE_SERVICE} lag max {outage['max_lag']}, drained "
        f"{outage['drained_after_restart_s']} s after restart"
    )
    summary = {
        **{mode: {label: p.figures() for label, p in by.items()} for mode, by in phases.items()},
        "p99_ratio_at_sustainable_rate": round(ratio, 4),
        "p99_ratio_target": RATIO_TARGET,
        "consumer_outage": {
            "service": OUTAGE_SERVICE,
            "rate_per_s": args.sustainable_rate,
            "api_during_outage": during.figures(),
            "api_baseline_p99_ms": baseline.p99_ms,
            **outage,
        },
        "settings": {
            "dataplatform_latency_ms": PLATFORM_LATENCY_MS,
            "duration_s": args.duration,
            "outage_duration_s": args.outage_duration,
            "warmup_s": args.warmup,
            "api_workers": args.workers,
            "in_flight": args.in_flight,
            "cpus": os.cpu_count(),
        },
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "headline.json").write_text(json.dumps(summary, indent=2) + "\n")
    chart(phases, during, RESULTS / "headline.png")
    print(f"wrote {RESULTS / 'headline.json'} and {RESULTS / 'headline.png'}")
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--sustainable-rate", type=float, default=50.0, help="payments/s")
    parser.add_argument("--rush-rate", type=float, default=300.0, help="payments/s")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds per phase")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds, per mode")
    parser.add_argument("--outage-duration", type=float, default=15.0, help="seconds of load")
    parser.add_argument("--drain-timeout", type=float, default=120.0, help="after the restart")
    parser.add_argument("--workers", type=int, default=2, help="uvicorn workers per mode")
    parser.add_argument("--in-flight", type=int, default=512, help="requests outstanding at most")
    args = parser.parse_args()
    # SIGTERM unwinds like Ctrl-C, so the stack is stopped and the schema dropped.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
