"""Engine factory: PostgreSQL (psycopg 3, optional schema) or SQLite (WAL, serialized writers)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import sqlalchemy
from sqlalchemy import Engine, event
from sqlalchemy.engine import make_url

from payment_api.config import Settings

_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def create_db_engine(settings: Settings) -> Engine:
    url = make_url(settings.database_url)
    if url.get_backend_name() == "sqlite":
        return _sqlite_engine(settings)
    connect_args: dict[str, Any] = {}
    if settings.database_schema:
        if not _SCHEMA_NAME.match(settings.database_schema):
            raise ValueError(f"invalid DATABASE_SCHEMA {settings.database_schema!r}")
        connect_args["options"] = f"-csearch_path={settings.database_schema}"
    # Through the module attribute, so OpenTelemetry's wrapper (installed first) sees it.
    return sqlalchemy.create_engine(
        url,
        pool_size=settings.database_pool_size,
        max_overflow=settings.database_max_overflow,
        pool_recycle=1800,
        connect_args=connect_args,
    )


def _sqlite_engine(settings: Settings) -> Engine:
    url = make_url(settings.database_url)
    if url.database and url.database != ":memory:":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    engine = sqlalchemy.create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _: Any) -> None:
        dbapi_connection.isolation_level = None  # SQLAlchemy emits BEGIN itself, below
        for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "foreign_keys=ON"):
            dbapi_connection.execute(f"PRAGMA {pragma}")

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        # Take the write lock up front: transactions run one at a time, so reads that
        # decide a write (the seat, the reservation) cannot go stale before it.
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine
