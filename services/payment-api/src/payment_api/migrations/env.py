"""Alembic environment: runs on the service's own engine (same URL, schema and dialect)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import text

from payment_api.adapters.database import create_db_engine
from payment_api.adapters.tables import metadata
from payment_api.config import Settings

MIGRATION_LOCK = 0x7061796D  # any constant shared by every replica running `migrate`

settings: Settings = context.config.attributes.get("settings") or Settings()
# A migration may rewrite big tables and waits for another replica's migration lock: no timeouts.
no_timeouts = {"database_statement_timeout_ms": 0, "database_lock_timeout_ms": 0}
engine = create_db_engine(settings.model_copy(update=no_timeouts))
try:
    with engine.connect() as connection:
        if connection.dialect.name == "postgresql":
            if settings.database_schema:
                connection.execute(
                    text(f'CREATE SCHEMA IF NOT EXISTS "{settings.database_schema}"')
                )
                connection.commit()
            # Several replicas may run `migrate` at once; one at a time applies it.
            connection.execute(text("SELECT pg_advisory_lock(:k)"), {"k": MIGRATION_LOCK})
            connection.commit()
        context.configure(
            connection=connection,
            target_metadata=metadata,
            render_as_batch=connection.dialect.name == "sqlite",
        )
        with context.begin_transaction():
            context.run_migrations()
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": MIGRATION_LOCK})
            connection.commit()
finally:
    engine.dispose()
