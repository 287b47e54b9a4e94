"""The load generator of the chart's `loadgen` component (scripts/loadgen.py).

It plays a round against a real `payment-api serve` (its own PostgreSQL schema, migrated by
`payment-api migrate`, and Redis key prefix), as it does against the API Service in a cluster.
"""

from __future__ import annotations

import asyncio
import importlib.util
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
import redis
import sqlalchemy

ROOT = Path(__file__).resolve().parents[2]


def load_module() -> ModuleType:
    """scripts/ is no package; its dataclasses need the module in sys.modules."""
    path = ROOT / "scripts" / "loadgen.py"
    spec = importlib.util.spec_from_file_location("ticketing_loadgen", path)
    assert spec and spec.loader
    module = sys.modules[spec.name] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


loadgen = load_module()


def test_options_default_to_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("API_URL", "http://ticketing-payment-api:8000")
    monkeypatch.setenv("LOADGEN_RATE", "7.5")
    monkeypatch.setenv("LOADGEN_ROUNDS", "2")
    options = loadgen.parser().parse_args(["--fans", "30"])
    assert options.api == "http://ticketing-payment-api:8000"
    assert (options.rate, options.rounds, options.fans) == (7.5, 2, 30)
    assert not options.stay


@pytest.fixture
def api(database_url: str, redis_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """`payment-api serve` on a free port, its schema and keys dropped after; the load
    generator reads the same database settings from the environment."""
    schema = f"loadgen_test_{uuid.uuid4().hex[:8]}"
    prefix = f"{schema}:"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {
        "DATABASE_URL": database_url,
        "DATABASE_SCHEMA": schema,
        "REDIS_URL": redis_url,
        "REDIS_KEY_PREFIX": prefix,
        "API_HOST": "127.0.0.1",
        "API_PORT": str(port),
        "OUTBOX_RELAY_ENABLED": "false",
        "OTEL_SDK_DISABLED": "true",
        "QUEUE_ACTIVATE_INTERVAL_S": "0.1",
        "LOG_LEVEL": "WARNING",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    command = str(Path(sys.executable).with_name("payment-api"))
    subprocess.run([command, "migrate"], check=True, timeout=120)
    server = subprocess.Popen([command, "serve"])
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(30)
        engine = sqlalchemy.create_engine(database_url)
        with engine.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        engine.dispose()
        with redis.Redis.from_url(redis_url) as client:
            keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
            if keys:
                client.delete(*keys)


@pytest.mark.postgres
@pytest.mark.redis
def test_a_round_pays_fails_and_runs_out_of_seats(api: str) -> None:
    # 24 seats for 40 fans, 10 of them too poor to pay.
    args = ["--api", api, "--fans", "40", "--rate", "40", "--seats", "2", "--poor-share", "0.25"]
    args += ["--patience", "3", "--rounds", "1"]
    options = loadgen.parser().parse_args(args)
    (tally,) = asyncio.run(loadgen.run(options))
    print(tally.line())
    assert not tally.errors
    assert tally.done == tally.fans == 40
    assert 0 < tally.paid <= 24
    assert tally.failed  # poor fans who got a seat
    assert tally.no_seat > 0  # sold out
    assert tally.paid + sum(tally.failed.values()) + tally.no_seat == 40
