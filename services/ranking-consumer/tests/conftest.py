"""A PostgreSQL schema of this session, migrated with payment-api's migrations."""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial

import pytest
import sqlalchemy
from payment_api.migrations import upgrade_schema
from ticketing_events.testing import Database, migrated_schema


@pytest.fixture(scope="session")
def db(database_url: str) -> Iterator[Database]:
    migrate = partial(upgrade_schema, database_url)
    with migrated_schema(database_url, "ranking_test", migrate) as db:
        yield db


@pytest.fixture(scope="session")
def engine(db: Database) -> sqlalchemy.Engine:
    return db.engine
