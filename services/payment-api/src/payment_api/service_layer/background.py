"""A daemon thread that runs one step every interval, or at once when woken."""

from __future__ import annotations

import threading
from collections.abc import Callable

import structlog

log = structlog.get_logger(__name__)


class BackgroundLoop:
    def __init__(self, name: str, step: Callable[[], object], interval_s: float) -> None:
        self.name = name
        self._step = step
        self._interval = interval_s
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def wake(self) -> None:
        self._wake.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 15.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self._interval)
            self._wake.clear()  # a wake during the step below sets it again: none is lost
            if self._stop.is_set():
                break
            try:
                self._step()
            except Exception:
                log.exception("background step failed", loop=self.name)
