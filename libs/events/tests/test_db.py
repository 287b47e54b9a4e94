"""The engine factory against the real PostgreSQL (and SQLite): timeouts, dropped connections,
and a schema that was never migrated."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from ticketing_events.consumer import DeploymentError
from ticketing_events.db import (
    DB_OUTAGE_ERRORS,
    DatabaseServiceSettings,
    create_db_engine,
    engine_for,
)
from ticketing_events.testing import migrated_schema


@contextmanager
def blackhole() -> Iterator[int]:
    """A port whose connections the kernel accepts and nothing ever answers: a database host
    gone silent (no refusal, no reset)."""
    with socket.create_server(("127.0.0.1", 0), backlog=64) as server:
        yield server.getsockname()[1]


def outcome_within(call: Callable[[], object], deadline_s: float) -> BaseException | None:
    """Run ``call`` in a daemon thread; the exception it ended with (None if it returned).
    Fails the test if it is still running at the deadline (a hang, not an error)."""
    result: list[BaseException | None] = []

    def run() -> None:
        try:
            call()
        except BaseException as exc:
            result.append(exc)
        else:
            result.append(None)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(deadline_s)
    assert result, f"still blocked after {deadline_s}s"
    return result[0]


def select_one(engine: sa.Engine) -> None:
    with engine.connect() as conn:
        conn.execute(sa.text("select 1"))


def settings(database_url: str, **fields: Any) -> DatabaseServiceSettings:
    return DatabaseServiceSettings(
        service_name="test", consumer_group="test", database_url=database_url, **fields
    )


@pytest.mark.postgres
def test_a_silent_database_host_is_an_outage_error_not_a_hang(database_url):
    with blackhole() as port:
        url = make_url(database_url).set(host="127.0.0.1", port=port)
        engine = create_db_engine(url.render_as_string(hide_password=False))
        error = outcome_within(lambda: select_one(engine), deadline_s=30)
        engine.dispose()
    assert isinstance(error, DB_OUTAGE_ERRORS), repr(error)


@pytest.mark.postgres
def test_a_statement_running_too_long_is_cancelled_as_an_outage_error(database_url):
    engine = engine_for(settings(database_url, database_statement_timeout_ms=200))
    with pytest.raises(DB_OUTAGE_ERRORS, match="statement timeout"), engine.connect() as conn:
        conn.execute(sa.text("select pg_sleep(3)"))
    engine.dispose()


@pytest.mark.postgres
def test_waiting_too_long_for_a_lock_is_an_outage_error(database_url):
    engine = engine_for(settings(database_url, database_lock_timeout_ms=200))
    key = {"k": 0x7465_7374}
    with engine.connect() as holder, engine.connect() as waiter:
        holder.execute(sa.text("select pg_advisory_lock(:k)"), key)
        try:
            error = outcome_within(
                lambda: waiter.execute(sa.text("select pg_advisory_lock(:k)"), key), deadline_s=30
            )
        finally:
            holder.execute(sa.text("select pg_advisory_unlock(:k)"), key)
    assert isinstance(error, DB_OUTAGE_ERRORS), repr(error)
    assert "lock timeout" in str(error)
    engine.dispose()


@pytest.mark.postgres
def test_a_pooled_connection_the_server_dropped_is_replaced_before_use(database_url):
    engine = create_db_engine(database_url, pool_size=1, max_overflow=0)
    with engine.connect() as conn:
        pid = conn.execute(sa.text("select pg_backend_pid()")).scalar_one()
    admin = sa.create_engine(database_url)
    with admin.connect() as conn:
        assert conn.execute(sa.text("select pg_terminate_backend(:p)"), {"p": pid}).scalar_one()
    admin.dispose()
    with engine.connect() as conn:  # the pooled connection is dead: a fresh one answers
        assert conn.execute(sa.text("select pg_backend_pid()")).scalar_one() != pid
    engine.dispose()


def _create_schema(database_url: str, schema: str) -> None:
    admin = sa.create_engine(database_url)
    with admin.begin() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    admin.dispose()


@pytest.mark.postgres
def test_a_table_or_column_never_migrated_is_a_deployment_error_on_postgresql(database_url):
    def empty(schema: str) -> None:
        _create_schema(database_url, schema)

    with migrated_schema(database_url, "events_db_test", empty) as db:
        with pytest.raises(DeploymentError, match="outbox"), db.engine.connect() as conn:
            conn.execute(sa.text("select id from outbox"))
        with db.engine.begin() as conn:
            conn.execute(sa.text("create table outbox (id bigint)"))
        with pytest.raises(DeploymentError, match="published_at"), db.engine.connect() as conn:
            conn.execute(sa.text("select published_at from outbox"))
        with db.engine.connect() as conn:  # the engine still works
            assert conn.execute(sa.text("select count(*) from outbox")).scalar_one() == 0


def test_a_table_or_column_never_migrated_is_a_deployment_error_on_sqlite(tmp_path):
    engine = create_db_engine(f"sqlite:///{tmp_path}/empty.db")
    with pytest.raises(DeploymentError, match="outbox"), engine.begin() as conn:
        conn.execute(sa.text("select id from outbox"))
    with engine.begin() as conn:
        conn.execute(sa.text("create table outbox (id integer)"))
    with pytest.raises(DeploymentError, match="published_at"), engine.begin() as conn:
        conn.execute(sa.text("select published_at from outbox"))
    with pytest.raises(DeploymentError, match="published_at"), engine.begin() as conn:
        conn.execute(sa.text("insert into outbox (id, published_at) values (1, 2)"))
    engine.dispose()
