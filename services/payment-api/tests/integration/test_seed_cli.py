"""``payment-api seed``, the installed command, on a migrated SQLite file: counts of 0 seed none
of that kind; a bad argument gets one line on stderr, exit 2 and no row written."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

PAYMENT_API = str(Path(sys.executable).with_name("payment-api"))
TABLES = ("concerts", "schedules", "seats", "users")


@pytest.fixture(scope="module")
def migrated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("seed") / "migrated.db"
    assert payment_api(path, "migrate").returncode == 0
    return path


@pytest.fixture
def database(migrated: Path, tmp_path: Path) -> Path:
    """A copy of the migrated file, for this test alone."""
    return Path(shutil.copy(migrated, tmp_path / "payment.db"))


def payment_api(database: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{database}", "LOG_LEVEL": "WARNING"}
    env.pop("DATABASE_SCHEMA", None)
    return subprocess.run(
        [PAYMENT_API, *args], env=env, capture_output=True, text=True, timeout=120
    )


def rows(database: Path) -> dict[str, int]:
    with sqlite3.connect(database) as conn:
        return {t: conn.execute(f"select count(*) from {t}").fetchone()[0] for t in TABLES}


def test_no_users_seeds_only_the_catalogue(database: Path) -> None:
    run = payment_api(database, "seed", "--users", "0", "--concerts", "1", "--seats", "3")

    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "seeded 1 concerts, 2 schedules, 6 seats, no users"
    assert rows(database) == {"concerts": 1, "schedules": 2, "seats": 6, "users": 0}


def test_no_concerts_seeds_only_users(database: Path) -> None:
    run = payment_api(database, "seed", "--concerts", "0", "--users", "2")

    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "seeded 0 concerts, 0 schedules, 0 seats, 2 users (ids 1..2)"
    assert rows(database) == {"concerts": 0, "schedules": 0, "seats": 0, "users": 2}


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--users", "-1", "argument --users: must be 0 or more, not -1"),
        ("--concerts", "-2", "argument --concerts: must be 0 or more, not -2"),
        ("--schedules", "0", "argument --schedules: must be 1 or more, not 0"),
        ("--seats", "0", "argument --seats: must be 1 or more, not 0"),
        ("--points", "-1", "argument --points: must be 0 or more, not -1"),
        ("--price", "-1", "argument --price: must be 0 or more, not -1"),
        ("--points", str(2**63), f"argument --points: must be {2**63 - 1} or less, not {2**63}"),
        ("--users", "ten", "argument --users: not a whole number: 'ten'"),
    ],
)
def test_a_bad_argument_gets_one_line_and_exit_2(
    database: Path, option: str, value: str, message: str
) -> None:
    run = payment_api(database, "seed", option, value)

    assert run.returncode == 2
    assert run.stderr.splitlines() == [f"payment-api seed: error: {message}"]
    assert run.stdout == ""
    assert rows(database) == dict.fromkeys(TABLES, 0)
