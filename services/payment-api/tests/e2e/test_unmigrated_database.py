"""A database whose migrations were never applied is a deployment fault: a 503 to retry later,
not a 500 that blames the request."""

from __future__ import annotations

import uuid

import pytest

pytestmark = [pytest.mark.postgres, pytest.mark.redis]


def test_a_request_on_an_unmigrated_database_is_a_503(settings, serve, client_for):
    unmigrated = settings.model_copy(
        update={
            "database_schema": f"unmigrated_{uuid.uuid4().hex[:10]}",
            "outbox_relay_enabled": False,
            "queue_activator_enabled": False,
        }
    )
    with serve(unmigrated) as server:
        api = client_for(server.url)
        response = api.http.get("/v1/concerts")
        api.http.close()
    assert response.status_code == 503, response.text
    assert response.json()["type"] == "urn:ticketing:problem:dependency-unavailable"
    assert response.headers["Retry-After"]
