"""schemathesis (``--checks all``) against the live API's OpenAPI document, with a valid
development JWT: every answer is one the document declares (status, content type, schema),
also in the stateful phase, which chains calls along the document's links (a queue token to
its state and to a reservation, the catalogue down to a seat, a reservation to its payment)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from payment_api.auth import mint_dev_token

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.kafka]


CONFIG = Path(__file__).resolve().parents[2] / "schemathesis.toml"


def test_schemathesis_checks_all(live, world, tmp_path: Path):
    user_id = world.user(points=1000)
    world.schedule(seats=20)  # a catalogue for the stateful phase's links to walk
    jwt = mint_dev_token(user_id)
    command = [
        sys.executable, "-m", "schemathesis.cli", "--config-file", str(CONFIG),
        "run", f"{live.url}/openapi.json",
        "--checks", "all", "--max-examples", os.environ.get("SCHEMATHESIS_EXAMPLES", "25"),
        "--header", f"Authorization: Bearer {jwt}", "--no-color", "--seed", "1",
        "--phases", "examples,coverage,fuzzing,stateful",
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-20000:] + result.stderr[-3000:]
    # The stateful phase ran, and followed links (it is skipped when there are none).
    covered = re.search(r"API Links:\s+(\d+) covered", result.stdout)
    assert covered and int(covered.group(1)) > 0, result.stdout[-5000:]
