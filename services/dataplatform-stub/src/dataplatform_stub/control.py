"""Run the stub as a process and steer it over HTTP (tests, benchmarks, local runs)."""

from __future__ import annotations

import contextlib
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
    """The stub's admin endpoints (on ``admin_url``); ``payments_url`` is what a consumer
    posts to (on ``base_url``, the ingest port)."""

    def __init__(self, base_url: str, admin_url: str, pid: int | None = None) -> None:
        self.base_url = base_url
        self.admin_url = admin_url
        self.pid = pid  # of the stub's process, when ``running_stub`` started it
        self.payments_url = f"{base_url}/payments"
        self._http = httpx.Client(base_url=base_url, timeout=10)
        self._admin = httpx.Client(base_url=admin_url, timeout=10)

    def knobs(self, **changes: float) -> dict[str, Any]:
        """Change some knobs (none: read them); returns them all."""
        response = self._admin.put("/admin/knobs", json=changes)
        response.raise_for_status()
        return dict(response.json())

    def received(self, *, keys: bool = False) -> dict[str, Any]:
        response = self._admin.get("/admin/received", params={"keys": str(keys).lower()})
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
        response = self._admin.post("/admin/reset")
        response.raise_for_status()
        return dict(response.json())

    def healthy(self) -> bool:
        """Both ports answer."""
        try:
            return all(
                client.get("/healthz", timeout=1).status_code == 200
                for client in (self._http, self._admin)
            )
        except httpx.TransportError:
            return False

    def close(self) -> None:
        self._http.close()
        self._admin.close()


def _free_ports(count: int) -> list[int]:
    """``count`` distinct free loopback ports (all held open while choosing)."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in sockets]


@contextmanager
def running_stub(**knobs: float) -> Iterator[StubControl]:
    """``dataplatform-stub serve`` on two free loopback ports, with these knobs (or other
    ``DATAPLATFORM_STUB_*`` settings, e.g. ``max_bodies``) at start."""
    port, admin_port = _free_ports(2)
    env = {
        **os.environ,
        "DATAPLATFORM_STUB_HOST": "127.0.0.1",
        "DATAPLATFORM_STUB_PORT": str(port),
        "DATAPLATFORM_STUB_ADMIN_PORT": str(admin_port),
        **{f"DATAPLATFORM_STUB_{name.upper()}": str(value) for name, value in knobs.items()},
    }
    process = subprocess.Popen([str(ENTRYPOINT), "serve"], env=env)
    control = StubControl(f"http://127.0.0.1:{port}", f"http://127.0.0.1:{admin_port}", process.pid)
    try:
        deadline = time.monotonic() + 15
        while not control.healthy():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"dataplatform-stub on ports {port}, {admin_port} did not start")
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
