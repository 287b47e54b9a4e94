"""A database whose migrations were never applied is a deployment fault: a 503 to retry later,
not a 500 that blames the request; and the API is not ready until the schema is at its
migration head."""

from __future__ import annotations

import uuid

import pytest
import sqlalchemy
from alembic.script import ScriptDirectory
from payment_api.migrations import alembic_config, upgrade

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


def test_not_ready_until_the_schema_is_at_the_migration_head(
    settings, serve, client_for, assert_problem
):
    """An empty schema, then one migration short of the head: 503 `not-ready` saying why;
    at the head, ready; a revision from a newer release (unknown here) stays ready."""
    schema = f"unmigrated_{uuid.uuid4().hex[:10]}"
    own = settings.model_copy(
        update={
            "database_schema": schema,
            "outbox_relay_enabled": False,
            "queue_activator_enabled": False,
        }
    )
    script = ScriptDirectory.from_config(alembic_config(own))
    (head,) = script.get_heads()
    previous = script.get_revision(head).down_revision
    assert isinstance(previous, str), "the head has one parent"
    admin = sqlalchemy.create_engine(settings.database_url)
    with admin.begin() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    try:
        with serve(own) as server:
            api = client_for(server.url)
            body = assert_problem(api.http.get("/readyz"), 503, "not-ready")
            assert body["checks"] == {"database": True, "migrations": False, "redis": True}
            assert "never applied" in body["detail"], body["detail"]

            upgrade(own, previous)
            body = assert_problem(api.http.get("/readyz"), 503, "not-ready")
            assert body["checks"]["migrations"] is False
            assert f"at revision {previous}, the code needs {head}" in body["detail"]

            upgrade(own)
            ready = api.http.get("/readyz")
            assert ready.status_code == 200, ready.text
            assert ready.json()["checks"] == {"database": True, "migrations": True, "redis": True}

            with admin.begin() as conn:
                conn.exec_driver_sql(
                    f"UPDATE \"{schema}\".alembic_version SET version_num = 'from-a-newer-release'"
                )
            assert api.http.get("/readyz").status_code == 200
            api.http.close()
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        admin.dispose()
