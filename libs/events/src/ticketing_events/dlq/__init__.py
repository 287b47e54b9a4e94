"""``ticketing-dlq``: list, show, redrive and purge the dead-letter topics.

A dead letter goes back to the one group that failed it, through that group's redrive topic
(``topics.redrive_topic``), which no other group reads. It keeps its key, value and headers
(event id, trace context), so the consumer continues the original trace and its idempotency
still applies the effect once.

What was redriven is recorded in Kafka itself: every redriven record carries a
``redrive.from`` header naming the dead letter it came from (DLQ topic, partition, offset), and
a redrive skips the dead letters the redrive topic already names. So a second redrive changes
nothing, any filter can be used (a committed offset could only mark a prefix), and an event
that fails again is a new dead letter, which can be redriven again. The record of it lasts as
long as the redrive topic's retention.

Every command that changes something is a dry run unless given ``--apply``.
"""

from ticketing_events.dlq.cli import main
from ticketing_events.dlq.records import REDRIVE_FROM, DeadLetter, Selection, parse_dlq_topic
from ticketing_events.dlq.store import DeadLetters, RedriveError, RedriveResult, TopicSummary

__all__ = [
    "REDRIVE_FROM",
    "DeadLetter",
    "DeadLetters",
    "RedriveError",
    "RedriveResult",
    "Selection",
    "TopicSummary",
    "main",
    "parse_dlq_topic",
]
