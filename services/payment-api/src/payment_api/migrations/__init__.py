"""Alembic migrations, applied by ``payment-api migrate``."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, text
from ticketing_events.db import SchemaMissing

from payment_api.config import Settings


def alembic_config(settings: Settings) -> Config:
    config = Config()
    config.set_main_option("script_location", str(Path(__file__).parent))
    config.attributes["settings"] = settings
    return config


def upgrade(settings: Settings, revision: str = "head") -> None:
    command.upgrade(alembic_config(settings), revision)


def upgrade_schema(database_url: str, schema: str | None = None) -> None:
    """Migrate the database at ``database_url`` (in ``schema``): other services' tests."""
    upgrade(Settings(database_url=database_url, database_schema=schema))


class SchemaVersion:
    """Whether a database holds the schema this code needs: every head of its migrations
    applied. A revision this code does not know comes from a newer release, migrated (by the
    chart's pre-upgrade hook) before that release's pods replace these: these stay ready."""

    def __init__(self, settings: Settings) -> None:
        self._script = ScriptDirectory.from_config(alembic_config(settings))
        self.heads = frozenset(self._script.get_heads())
        self._known = frozenset(r.revision for r in self._script.walk_revisions())

    def behind(self, connection: Connection) -> str | None:
        """Why the schema is behind the code, or None when it is not."""
        try:
            rows = connection.execute(text("SELECT version_num FROM alembic_version"))
            applied = frozenset(rows.scalars())
        except SchemaMissing:
            return "the migrations were never applied (no alembic_version table)"
        if applied - self._known:
            return None
        reached = {r.revision for r in self._script.iterate_revisions(tuple(applied), "base")}
        if missing := self.heads - reached:
            found = ", ".join(sorted(applied)) or "none"
            return f"schema at revision {found}, the code needs {', '.join(sorted(missing))}"
        return None
