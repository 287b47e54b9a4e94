"""Capacity of the stand-in data platform (dataplatform-stub) at 50 ms of latency.

``dataplatform-stub serve`` runs as its own process; ``--concurrency`` client threads send
``--requests`` payments, each with its own idempotency key. The client here (Python threads)
is slower than the stub, so its capacity is counted as the requests it answers per second of
its own CPU time; the wall-clock rate and the most requests it held at once are printed too.
The figures go to ``bench/results/stub.json``.

    python bench/stub_bench.py [--requests 3000] [--concurrency 64] [--latency-ms 50]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from dataplatform_stub.control import running_stub

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "stub.json"


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    args = parser.parse_args()
    limits = httpx.Limits(
        max_connections=args.concurrency, max_keepalive_connections=args.concurrency
    )
    with (
        running_stub(latency_ms=args.latency_ms) as stub,
        httpx.Client(limits=limits, timeout=60) as client,
    ):
        assert stub.pid is not None

        def post(n: int) -> int:
            headers = {"Idempotency-Key": f"bench-{n}"}
            return client.post(stub.payments_url, content=b'{"n": 1}', headers=headers).status_code

        cpu, started = cpu_seconds(stub.pid), time.perf_counter()
        with ThreadPoolExecutor(args.concurrency) as pool:
            statuses = list(pool.map(post, range(args.requests)))
        wall, cpu = time.perf_counter() - started, cpu_seconds(stub.pid) - cpu
        received = stub.received()
    if statuses.count(201) != args.requests:
        raise SystemExit(f"only {statuses.count(201)} of {args.requests} payments were accepted")
    figures = {
        "requests": args.requests,
        "latency_ms": args.latency_ms,
        "concurrency": args.concurrency,
        "requests_per_cpu_s": round(args.requests / max(cpu, 1e-9)),
        "requests_per_s": round(args.requests / wall),
        "max_in_flight": received["max_in_flight"],
    }
    print(
        f"dataplatform-stub at {args.latency_ms:.0f} ms: {figures['requests_per_cpu_s']:,} "
        f"requests per CPU second, {figures['requests_per_s']:,} requests/s with "
        f"{args.concurrency} client threads, at most {figures['max_in_flight']} in flight"
    )
    RESULTS.write_text(json.dumps(figures, indent=2) + "\n")
    print(f"written to {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
