"""At-least-once consumer runtime: poll in batches, decode, dispatch, retry, dead-letter, commit.

Offsets are committed only for messages that were handled or dead-lettered: per batch
(asynchronously), on partition revocation and at shutdown (synchronously). Handlers must
therefore be idempotent; ``ticketing_events.idempotency`` helps with that.

``runtime`` holds the loop (``ConsumerRuntime``), ``delivery`` what handlers get, ``errors``
what they raise, ``dead_letters`` the reasons and the shrinking of a dead letter too large,
``headers`` the reading of a message's headers.
"""

from ticketing_events.consumer.dead_letters import DeadLetterReason
from ticketing_events.consumer.delivery import BatchHandler, Delivery, each
from ticketing_events.consumer.errors import (
    BatchFailures,
    DeploymentError,
    PermanentError,
    RetriesExhausted,
)
from ticketing_events.consumer.runtime import ConsumerRuntime, ConsumerStats, backoff_delay

__all__ = [
    "BatchFailures",
    "BatchHandler",
    "ConsumerRuntime",
    "ConsumerStats",
    "DeadLetterReason",
    "Delivery",
    "DeploymentError",
    "PermanentError",
    "RetriesExhausted",
    "backoff_delay",
    "each",
]
