"""Alembic migrations, applied by ``payment-api migrate``."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

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
