"""The embedded default: migrate, seed and run the whole flow on SQLite (WAL), real Redis."""

from __future__ import annotations

import time
import uuid

import httpx
import pytest
from payment_api.adapters.outbox import OutboxStore
from payment_api.auth import mint_dev_token
from payment_api.bootstrap import bootstrap
from payment_api.config import Settings
from payment_api.migrations import upgrade
from payment_api.seed import seed

pytestmark = [pytest.mark.redis]


def test_reserve_and_pay_on_sqlite(tmp_path, redis_url, publisher, serve):
    settings = Settings(
        database_url=f"sqlite:///{tmp_path}/demo/payment.db",
        redis_url=redis_url,
        redis_key_prefix=f"sqlite-{uuid.uuid4().hex[:8]}:",
        queue_activate_interval_s=0.05,
        outbox_sweep_interval_s=0.05,
    )
    upgrade(settings)
    services = bootstrap(settings, publisher=publisher, instrument=False)
    seeded = seed(
        services.engine,
        concerts_count=1,
        schedules_per_concert=1,
        seats_per_schedule=2,
        users_count=2,
        points=200,
        price=150,
    )
    with (
        serve(settings, services, instrument=False) as server,
        httpx.Client(base_url=server.url) as client,
    ):
        mode = services.engine.connect().exec_driver_sql("pragma journal_mode").scalar()
        assert mode == "wal"
        me = {"Authorization": f"Bearer {mint_dev_token(seeded.user_ids[0])}"}
        token = client.post("/v1/queue/tokens", headers=me).json()
        deadline = time.monotonic() + 30
        state = f"/v1/queue/tokens/{token['token_id']}"
        while client.get(state, headers=me).json()["status"] != "active":
            assert time.monotonic() < deadline
            time.sleep(0.02)
        auth = {**me, "X-Queue-Token": token["token"]}
        reserved = client.post(
            "/v1/reservations", json={"seat_id": seeded.seat_ids[0]}, headers=auth
        )
        assert reserved.status_code == 201, reserved.text
        taken = client.post("/v1/reservations", json={"seat_id": seeded.seat_ids[0]}, headers=auth)
        assert taken.status_code == 409
        paid = client.post(
            "/v1/payments",
            json={"reservation_id": reserved.json()["reservation_id"]},
            headers={**auth, "Idempotency-Key": "once"},
        )
        assert paid.status_code == 201 and paid.json()["balance"] == 50
        replay = client.post(
            "/v1/payments",
            json={"reservation_id": reserved.json()["reservation_id"]},
            headers={**auth, "Idempotency-Key": "once"},
        )
        assert replay.json() == paid.json()
        deadline = time.monotonic() + 30
        while OutboxStore(services.engine).pending():
            assert time.monotonic() < deadline
            time.sleep(0.02)
    assert [m.event_type for m in publisher.batches[0] + publisher.batches[1]] == [
        "reservation.created",
        "payment.success",
    ]
