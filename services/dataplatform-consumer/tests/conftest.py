"""The data platform stub: a real server on a free loopback port, one per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from dataplatform_stub.control import StubControl, running_stub


@pytest.fixture
def stub() -> Iterator[StubControl]:
    with running_stub() as control:
        yield control
