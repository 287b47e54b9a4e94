"""What handlers raise to tell the runtime how an event failed."""

from __future__ import annotations

from collections.abc import Mapping


class PermanentError(Exception):
    """The handler can never process this event: dead-letter it at once, without retries."""


class RetriesExhausted(PermanentError):
    """The handler spent its own retry budget on this event: dead-letter it at once."""


class DeploymentError(Exception):
    """The deployment is wrong, not the event (a table never migrated, a wrong URL).

    Treated as an outage by every runtime: consumption pauses until it is fixed and nothing is
    dead-lettered; the runtime logs it once at error level and reports not ready meanwhile.
    """


class BatchFailures(Exception):
    """Raised by a batch handler that finished some events and failed others.

    ``failures`` maps a failed event's index in the batch to its error; every event not named
    is done. The runtime retries or dead-letters only the failed events, one at a time, as it
    does any event's error (``PermanentError`` at once, outage errors with consumption paused).
    """

    def __init__(self, failures: Mapping[int, Exception]) -> None:
        super().__init__(f"{len(failures)} event(s) failed")
        self.failures = dict(failures)


def short(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:500]
