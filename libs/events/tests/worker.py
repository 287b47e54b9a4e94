"""A consumer process for crash and shutdown tests: records each handled event id to a file."""

import argparse
import os
import signal
import time
from collections.abc import Sequence
from typing import TextIO

from ticketing_events.consumer import ConsumerRuntime, Delivery
from ticketing_events.schemas import PaymentSucceeded
from ticketing_events.settings import ConsumerSettings, KafkaSettings


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--group", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--delay", type=float, default=0.0, help="seconds per event")
    parser.add_argument("--crash-after", type=int, default=0, help="SIGKILL itself mid-batch")
    args = parser.parse_args()
    with open(args.out, "a", buffering=1) as out:
        run(args.group, args.delay, args.crash_after, out)


def run(group: str, delay: float, crash_after: int, out: TextIO) -> None:
    handled = 0

    def handle(batch: Sequence[Delivery[PaymentSucceeded]]) -> None:
        nonlocal handled
        for i, delivery in enumerate(batch):
            time.sleep(delay)
            out.write(f"{delivery.event.event_id}\n")
            out.flush()
            os.fsync(out.fileno())
            handled += 1
            if crash_after and handled >= crash_after and 0 < i < len(batch) - 1:
                os.kill(os.getpid(), signal.SIGKILL)  # no shutdown, no final commit

    runtime = ConsumerRuntime(
        group,
        {PaymentSucceeded: handle},
        kafka=KafkaSettings(),
        settings=ConsumerSettings(
            batch_size=50, poll_timeout_s=0.2, health_port=0, session_timeout_ms=6000
        ),
    )
    runtime.run(install_signal_handlers=True)


if __name__ == "__main__":
    main()
