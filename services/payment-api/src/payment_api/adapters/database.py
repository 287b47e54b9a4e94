"""Engine factory: PostgreSQL (psycopg 3, optional schema) or SQLite (WAL, serialized writers),
the one every service shares."""

from __future__ import annotations

from ticketing_events.db import engine_for as create_db_engine

__all__ = ["create_db_engine"]
