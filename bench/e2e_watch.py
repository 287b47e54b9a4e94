"""Timestamps of two effects the system does not record itself, for bench/e2e_bench.py.

Runs as a process of its own (so the load generator's event loop never delays a timestamp)
and appends one line per observation to ``--out``: ``effect<TAB>key<TAB>epoch seconds``.

- ``platform``: an HTTP tap in front of the data platform stand-in. The dataplatform-consumer
  posts to the tap, which forwards each request to the stand-in and notes the time its 2xx
  answer came back, i.e. once the stand-in has recorded the receipt (key: Idempotency-Key).
- ``hold``: the deletion of a seat hold in Redis, pushed by keyspace notifications on the
  ``del`` keyevent channel (the caller enables them; key: the seat id).

Prints ``ready`` once it listens and is subscribed.

    python bench/e2e_watch.py --port P --target URL --redis URL --hold-prefix PREFIX --out FILE
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import time
from collections.abc import AsyncIterator
from typing import TextIO

import aiohttp
import redis.asyncio as aioredis
from aiohttp import web

IDEMPOTENCY_KEY = "Idempotency-Key"
FORWARDED = (IDEMPOTENCY_KEY, "Content-Type", "traceparent", "tracestate")


def tap_app(target: str, out: TextIO) -> web.Application:
    """POST /payments forwarded to ``target``; the time of each 2xx answer written down."""
    app = web.Application()

    async def session_ctx(app: web.Application) -> AsyncIterator[None]:
        connector = aiohttp.TCPConnector(limit=128)
        async with aiohttp.ClientSession(connector=connector) as session:
            app["session"] = session
            yield

    async def forward(request: web.Request) -> web.Response:
        body = await request.read()
        headers = {k: v for k in FORWARDED if (v := request.headers.get(k)) is not None}
        async with app["session"].post(target, data=body, headers=headers) as answer:
            seen = time.time()
            payload = await answer.read()
        key = request.headers.get(IDEMPOTENCY_KEY)
        if key and 200 <= answer.status < 300:
            out.write(f"platform\t{key}\t{seen:.6f}\n")
        return web.Response(body=payload, status=answer.status, content_type="application/json")

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app.cleanup_ctx.append(session_ctx)
    app.router.add_post("/payments", forward)
    app.router.add_get("/healthz", healthz)
    return app


async def watch_holds(url: str, prefix: str, out: TextIO, subscribed: asyncio.Event) -> None:
    client = aioredis.Redis.from_url(url)
    db = client.connection_pool.connection_kwargs.get("db", 0)
    pubsub = client.pubsub()
    await pubsub.subscribe(f"__keyevent@{db}__:del")
    subscribed.set()
    wanted = prefix.encode()
    try:
        async for message in pubsub.listen():
            if message["type"] == "message" and message["data"].startswith(wanted):
                seen = time.time()
                seat = message["data"][len(wanted) :].decode()
                out.write(f"hold\t{seat}\t{seen:.6f}\n")
    finally:
        await pubsub.aclose()
        await client.aclose()


async def main_async(args: argparse.Namespace, out: TextIO) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    runner = web.AppRunner(tap_app(args.target, out), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", args.port).start()
    subscribed = asyncio.Event()
    holds = asyncio.create_task(watch_holds(args.redis, args.hold_prefix, out, subscribed))
    await subscribed.wait()
    print("ready", flush=True)
    await stop.wait()
    holds.cancel()
    await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True, help="the tap listens here")
    parser.add_argument("--target", required=True, help="the stand-in's POST /payments URL")
    parser.add_argument("--redis", required=True, help="REDIS_URL")
    parser.add_argument("--hold-prefix", required=True, help="the seat hold keys' prefix")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    with open(args.out, "a", buffering=1) as out:  # line-buffered: readable while running
        asyncio.run(main_async(args, out))


if __name__ == "__main__":
    main()
