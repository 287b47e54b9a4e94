"""Run the stub as a process and steer it over HTTP (tests, benchmarks, local runs)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

ENTRYPOINT = Path(sys.executable).with_name("dataplatform-stub")


class StubControl:
    """The stub's admin endpoints; ``payments_url`` is what a consumer posts to."""

    def __init__(self, base_url: str, pid: int | None = None) -> None:
        self.base_url = base_url
        self.pid = pid  # of the stub's process, when ``running_stub`` started it
        self.payments_url = f"{base_url}/payments"
        self._http = httpx.Client(base_url=base_url, timeout=10)

    def knobs(self, **changes: float) -> dict[str, Any]:
        """Change some knobs (none: read them); returns them all."""
        response = self._http.put("/admin/knobs", json=changes)
        response.raise_for_status()
        return dict(response.json())

    def received(self, *, keys: bool = False) -> dict[str, Any]:
        response = self._http.get("/admin/received", params={"keys": str(keys).lower()})
        response.raise_for_status()
        return dict(response.json())

    def keys(self) -> dict[str, int]:
        """How many times each idempotency key was accepted."""
        return dict(self.received(keys=True)["keys"])

    def payment(self, key: str) -> dict[str, Any] | None:
        """The first body received with ``key`` and how many times it came, or None."""
        response = self._http.get(f"/payments/{key}")
        if response.status_code == 404:
            return None
        response.raise_for_status()
        return dict(response.json())

    def reset(self) -> dict[str, Any]:
        response = self._http.post("/admin/reset")
        response.raise_for_status()
        return dict(response.json())

    def healthy(self) -> bool:
        try:
            return self._http.get("/healthz", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    def close(self) -> None:
        self._http.close()


@contextmanager
def running_stub(**knobs: float) -> Iterator[StubControl]:
    """``dataplatform-stub serve`` on a free loopback port, with these knobs (or other
    ``DATAPLATFORM_STUB_*`` settings, e.g. ``max_bodies``) at start."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {
        **os.environ,
        "DATAPLATFORM_STUB_HOST": "127.0.0.1",
        "DATAPLATFORM_STUB_PORT": str(port),
        **{f"DATAPLATFORM_STUB_{name.upper()}": str(value) for name, value in knobs.items()},
    }
    process = subprocess.Popen([str(ENTRYPOINT), "serve"], env=env)
    control = StubControl(f"http://127.0.0.1:{port}", process.pid)
    try:
        deadline = time.monotonic() + 15
        while not control.healthy():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"dataplatform-stub on port {port} did not start")
            time.sleep(0.05)
        yield control
    finally:
        control.close()
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
