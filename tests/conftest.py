"""The whole system as processes (ticketing_dev.stack) for the end-to-end tests: PostgreSQL in
a schema of its own, consumer groups and Redis keys of its own, traces to the local Jaeger."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the helper modules beside the tests

from e2e_stack import running_stack  # noqa: E402
from ticketing_dev.stack import Stack  # noqa: E402


@pytest.fixture(scope="session")
def stack(
    kafka_bootstrap: str,
    redis_url: str,
    database_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    with running_stack(kafka_bootstrap, tmp_path_factory.mktemp("stack")) as stack:
        yield stack
