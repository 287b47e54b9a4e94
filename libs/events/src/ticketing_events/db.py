"""The database side of a service: settings, the engine factory, outage errors, upserts.

PostgreSQL (psycopg 3, optionally in a schema of its own) is the primary database; SQLite is
the embedded local default, shared with payment-api (WAL, one writer at a time).
Needs the ``db`` extra (SQLAlchemy).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import sqlalchemy
from pydantic import Field
from sqlalchemy import BigInteger, DateTime, Engine, Integer, Table, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.types import TypeDecorator

from ticketing_events.service import ServiceSettings

# Errors that mean "the database is down or unreachable" (refused or dropped connections, a
# server shutting down, a lock timeout): consumers pass them as outage errors, retried and
# never dead-lettered.
DB_OUTAGE_ERRORS: tuple[type[Exception], ...] = (OperationalError, InterfaceError)

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


def create_db_engine(
    url: str, *, schema: str | None = None, pool_size: int = 5, max_overflow: int = 10
) -> Engine:
    """An engine for PostgreSQL (``schema`` as its search_path) or SQLite."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(url)
    connect_args: dict[str, Any] = {}
    if schema:
        if not _SCHEMA_NAME.match(schema):
            raise ValueError(f"invalid DATABASE_SCHEMA {schema!r}")
        connect_args["options"] = f"-csearch_path={schema}"
    # Through the module attribute, so OpenTelemetry's wrapper (when installed) sees it.
    return sqlalchemy.create_engine(
        parsed,
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_recycle=1800,
        connect_args=connect_args,
    )


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


def engine_for(settings: DatabaseConfig) -> Engine:
    return create_db_engine(
        settings.database_url,
        schema=settings.database_schema,
        pool_size=settings.database_pool_size,
        max_overflow=settings.database_max_overflow,
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
