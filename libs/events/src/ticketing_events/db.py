"""The database side of a service: settings, the engine factory, outage errors, upserts.

PostgreSQL (psycopg 3, optionally in a schema of its own) is the primary database; SQLite is
the embedded local default, shared with payment-api (WAL, one writer at a time).
Needs the ``db`` extra (SQLAlchemy).
"""

from __future__ import annotations

import re
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import sqlalchemy
from pydantic import Field
from sqlalchemy import BigInteger, DateTime, Engine, Integer, Table, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import ExceptionContext, make_url
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.types import TypeDecorator

from ticketing_events.consumer import DeploymentError
from ticketing_events.service import ServiceSettings

# Errors that mean "the database is down or unreachable" (refused, dropped or timed-out
# connections, a server shutting down, a statement or lock timeout): consumers pass them as
# outage errors, retried and never dead-lettered.
DB_OUTAGE_ERRORS: tuple[type[Exception], ...] = (OperationalError, InterfaceError)

# Bounds on waiting for PostgreSQL (0 disables the statement and lock ones), each well under
# the consumers' liveness window: an unreachable or stuck database becomes an outage error
# instead of a handler blocked until the Pod is killed mid-batch.
CONNECT_TIMEOUT_S = 5  # libpq's minimum is 2
STATEMENT_TIMEOUT_MS = 30_000
LOCK_TIMEOUT_MS = 10_000
# TCP keepalives and a bound on unacknowledged sends find a peer that vanished mid-connection.
_TCP_ARGS = {
    "keepalives": 1,
    "keepalives_idle": 30,
    "keepalives_interval": 10,
    "keepalives_count": 3,
    "tcp_user_timeout": 30_000,
}


class SchemaMissing(DeploymentError):
    """A table or column the code uses is not in the database: its migrations were not applied
    (or not all of them). The deployment is wrong, not the event or the request."""


# undefined_table, undefined_column
_MISSING_SQLSTATES = frozenset({"42P01", "42703"})
_SQLITE_MISSING = re.compile(r"no such (table|column)|table \S+ has no column named")

# Ids: BIGINT on PostgreSQL, the rowid alias (INTEGER PRIMARY KEY) on SQLite.
Id = BigInteger().with_variant(Integer(), "sqlite")

_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class DatabaseServiceSettings(ServiceSettings):
    """A service with database effects (the tables are payment-api's, see its README)."""

    # PostgreSQL (postgresql+psycopg://...) or SQLite (sqlite:///path), payment-api's default.
    database_url: str = "sqlite:///./.demo/payment.db"
    # PostgreSQL only: the schema (search_path) holding the tables; None: the server default.
    database_schema: str | None = None
    database_pool_size: int = Field(default=2, ge=1)
    database_max_overflow: int = Field(default=2, ge=0)
    # PostgreSQL only, see the constants above.
    database_connect_timeout_s: int = Field(default=CONNECT_TIMEOUT_S, ge=2)
    database_statement_timeout_ms: int = Field(default=STATEMENT_TIMEOUT_MS, ge=0)
    database_lock_timeout_ms: int = Field(default=LOCK_TIMEOUT_MS, ge=0)


def create_db_engine(
    url: str,
    *,
    schema: str | None = None,
    pool_size: int = 5,
    max_overflow: int = 10,
    connect_timeout_s: int = CONNECT_TIMEOUT_S,
    statement_timeout_ms: int = STATEMENT_TIMEOUT_MS,
    lock_timeout_ms: int = LOCK_TIMEOUT_MS,
) -> Engine:
    """An engine for PostgreSQL (``schema`` as its search_path) or SQLite.

    A table or column missing from the database raises ``SchemaMissing``.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        engine = _sqlite_engine(url)
    else:
        options = [
            f"-c statement_timeout={statement_timeout_ms}",
            f"-c lock_timeout={lock_timeout_ms}",
        ]
        if schema:
            if not _SCHEMA_NAME.match(schema):
                raise ValueError(f"invalid DATABASE_SCHEMA {schema!r}")
            options.append(f"-c search_path={schema}")
        # Through the module attribute, so OpenTelemetry's wrapper (when installed) sees it.
        engine = sqlalchemy.create_engine(
            parsed,
            pool_size=pool_size,
            max_overflow=max_overflow,
            pool_recycle=1800,
            pool_pre_ping=True,  # a connection the server dropped is replaced, not handed out
            connect_args={
                "connect_timeout": connect_timeout_s,
                "options": " ".join(options),
                **_TCP_ARGS,
            },
        )
    event.listen(engine, "handle_error", _raise_schema_missing)
    return engine


def _raise_schema_missing(context: ExceptionContext) -> None:
    error = context.original_exception
    missing = getattr(error, "sqlstate", None) in _MISSING_SQLSTATES or (
        isinstance(error, sqlite3.OperationalError) and _SQLITE_MISSING.match(str(error))
    )
    if missing:
        raise SchemaMissing(f"{error} (are the database migrations applied?)")


class DatabaseConfig(Protocol):
    """Where the database is: ``DatabaseServiceSettings``, or payment-api's settings."""

    @property
    def database_url(self) -> str: ...
    @property
    def database_schema(self) -> str | None: ...
    @property
    def database_pool_size(self) -> int: ...
    @property
    def database_max_overflow(self) -> int: ...
    @property
    def database_connect_timeout_s(self) -> int: ...
    @property
    def database_statement_timeout_ms(self) -> int: ...
    @property
    def database_lock_timeout_ms(self) -> int: ...


def engine_for(settings: DatabaseConfig) -> Engine:
    return create_db_engine(
        settings.database_url,
        schema=settings.database_schema,
        pool_size=settings.database_pool_size,
        max_overflow=settings.database_max_overflow,
        connect_timeout_s=settings.database_connect_timeout_s,
        statement_timeout_ms=settings.database_statement_timeout_ms,
        lock_timeout_ms=settings.database_lock_timeout_ms,
    )


def _sqlite_engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = sqlalchemy.create_engine(
        parsed, connect_args={"check_same_thread": False, "timeout": 30}
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _: Any) -> None:
        dbapi_connection.isolation_level = None  # SQLAlchemy emits BEGIN itself, below
        for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "foreign_keys=ON"):
            dbapi_connection.execute(f"PRAGMA {pragma}")

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        # Take the write lock up front: transactions run one at a time, so reads that
        # decide a write cannot go stale before it.
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


class UtcDateTime(TypeDecorator[datetime]):
    """``timestamptz`` that stores UTC and hands back aware UTC datetimes (SQLite keeps naive
    ones, and compares them as text: every value must be in the same zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


def upsert(dialect: str, table: Table) -> Any:
    """``INSERT`` of ``dialect`` (a connection's ``dialect.name``), with
    ``on_conflict_do_nothing`` and ``on_conflict_do_update``: PostgreSQL or SQLite."""
    if dialect == "postgresql":
        return postgresql.insert(table)
    if dialect == "sqlite":
        return sqlite.insert(table)
    raise NotImplementedError(f"no upsert for {dialect}")
