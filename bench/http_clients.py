"""CPU per request of the HTTP clients the data platform's consumer could use, against the
stand-in: ``uv run python bench/http_clients.py [N] [LATENCY_MS]``.

Each client POSTs a payment-sized body N times with 32 requests in flight (the service's
default DATAPLATFORM_CONCURRENCY): httpx's sync client in a pool of 32 threads (the service's
client before), urllib3 in the same pool, and aiohttp on one event loop (the service's client
now). Prints requests/s and this process's CPU per request, twice each; the stand-in runs in
a process of its own, so its CPU is not counted.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import aiohttp
import httpx
import urllib3
from dataplatform_stub.control import running_stub
from ticketing_events.testing import payment_succeeded

CONCURRENCY = 32


def timed(name: str, n: int, send: Callable[[], None]) -> None:
    wall, cpu = time.perf_counter(), time.process_time()
    send()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(f"{name:8} {n / wall:7,.0f} requests/s  {cpu / n * 1e6:5,.0f} us CPU per request")


def main(url: str, n: int) -> None:
    body = payment_succeeded(0).model_dump_json().encode()
    headers = [{"Idempotency-Key": str(i), "Content-Type": "application/json"} for i in range(n)]
    pool = ThreadPoolExecutor(CONCURRENCY)
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    client = httpx.Client(limits=limits)
    manager = urllib3.PoolManager(maxsize=CONCURRENCY)
    loop = asyncio.new_event_loop()

    async def open_session() -> aiohttp.ClientSession:
        return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=CONCURRENCY))

    session = loop.run_until_complete(open_session())

    def with_httpx() -> None:
        list(pool.map(lambda h: client.post(url, content=body, headers=h).status_code, headers))

    def with_urllib3() -> None:
        list(pool.map(lambda h: manager.request("POST", url, body=body, headers=h), headers))

    async def post(h: dict[str, str]) -> int:
        async with session.post(url, data=body, headers=h) as response:
            await response.read()
            return response.status

    async def post_all() -> None:
        await asyncio.gather(*(post(h) for h in headers))

    for _ in range(2):
        timed("httpx", n, with_httpx)
        timed("urllib3", n, with_urllib3)
        timed("aiohttp", n, lambda: loop.run_until_complete(post_all()))
    loop.run_until_complete(session.close())
    loop.close()
    client.close()
    manager.clear()
    pool.shutdown()


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 3000
    latency_ms = float(sys.argv[2]) if len(sys.argv) > 2 else 50
    with running_stub(latency_ms=latency_ms) as stub:
        print(f"{n} POSTs to the stand-in ({latency_ms:g} ms), {CONCURRENCY} in flight")
        main(stub.payments_url, n)
