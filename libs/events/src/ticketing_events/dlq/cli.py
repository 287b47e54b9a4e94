"""The ``ticketing-dlq`` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TextIO

from confluent_kafka import KafkaException
from pydantic import ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from ticketing_events.dlq.records import DeadLetter, Selection, parse_dlq_topic
from ticketing_events.dlq.store import DeadLetters, RedriveError
from ticketing_events.settings import KafkaSettings
from ticketing_events.topics import TOPIC_EVENTS, redrive_topic


class DlqSettings(BaseSettings):
    """``JAEGER_QUERY_URL``: where ``show`` links a dead letter's trace."""

    model_config = SettingsConfigDict(extra="ignore")

    jaeger_query_url: str = "http://127.0.0.1:16686"


def _selection(args: argparse.Namespace) -> Selection:
    return Selection(
        group=args.group,
        topic=args.topic,
        reasons=frozenset(getattr(args, "reason", None) or ()),
        event_ids=frozenset(getattr(args, "event_id", None) or ()),
        partition=getattr(args, "partition", None),
        from_offset=getattr(args, "from_offset", None),
        to_offset=getattr(args, "to_offset", None),
    )


def _print_list(dlq: DeadLetters, args: argparse.Namespace, out: TextIO) -> int:
    rows = dlq.summary(_selection(args))
    for row in rows:
        reasons = ", ".join(f"{r}={n}" for r, n in sorted(row.reasons.items())) or "-"
        print(
            f"{row.topic}: {row.count} dead letter(s), {row.redriven} redriven; "
            f"reasons: {reasons}; oldest: {row.oldest or '-'}",
            file=out,
        )
    if not rows:
        print("no dead-letter topic matches", file=out)
    return 0


def _print_show(dlq: DeadLetters, args: argparse.Namespace, out: TextIO) -> int:
    if args.event_id:
        letters = dlq.letters(
            Selection(group=args.group, topic=args.topic, event_ids=frozenset(args.event_id))
        )
    else:
        if args.dlq_topic is None or args.partition is None or args.offset is None:
            print("show: give DLQ_TOPIC PARTITION OFFSET, or --event-id", file=sys.stderr)
            return 2
        found = None
        if parse_dlq_topic(args.dlq_topic) is not None:
            found = dlq.find(args.dlq_topic, args.partition, args.offset)
        letters = [] if found is None else [found]
    if not letters:
        print("no such dead letter", file=out)
        return 1
    jaeger = DlqSettings().jaeger_query_url.rstrip("/")
    for letter in letters:
        _show_one(letter, dlq.original(letter) if letter.truncated else None, jaeger, out)
    return 0


def _show_one(letter: DeadLetter, original: DeadLetter | None, jaeger: str, out: TextIO) -> None:
    """``original``: the record a truncated dead letter points to, when it is still there."""
    source, group = letter.source
    print(f"== {letter.coordinates} (group {group})", file=out)
    print(f"key: {(letter.key or b'').decode(errors='backslashreplace')}", file=out)
    print("headers:", file=out)
    for k, v in letter.headers:
        print(f"  {k}: {v.decode(errors='backslashreplace')}", file=out)
    record: DeadLetter | None = letter
    if letter.truncated:
        where = "/".join(map(str, letter.original or ()))
        state = "read from there" if original is not None else "gone"
        print(f"truncated: {', '.join(letter.truncated)}; original at {where}: {state}", file=out)
        record = original
    if record is not None:
        try:
            event = TOPIC_EVENTS[source].model_validate_json(record.value or b"")
            print(f"event:\n{event.model_dump_json(indent=2)}", file=out)
        except ValidationError as exc:
            print(f"event: not decodable ({exc.error_count()} error(s))", file=out)
            print(f"value: {(record.value or b'')[:500]!r}", file=out)
    trace_id = letter.trace_id or (original.trace_id if original is not None else None)
    if trace_id is None:
        print("trace: none", file=out)
    else:
        print(f"trace: {trace_id}", file=out)
        print(f"  Jaeger UI:  {jaeger}/trace/{trace_id}", file=out)
        print(f"  Jaeger API: {jaeger}/api/traces/{trace_id}", file=out)


def _print_redrive(dlq: DeadLetters, args: argparse.Namespace, out: TextIO) -> int:
    result = dlq.redrive(_selection(args), apply=args.apply)
    verb = "redriven" if args.apply else "to redrive"
    for letter in result.sent:
        source, group = letter.source
        print(
            f"{verb}: {letter.coordinates} event {letter.event_id or '-'} "
            f"reason {letter.reason} -> {redrive_topic(source, group)}",
            file=out,
        )
    for letter in result.missing:
        print(f"skipped: {letter.coordinates} truncated, original gone", file=out)
    print(
        ("" if args.apply else "dry run (--apply to act): ")
        + f"selected {len(result.selected)}, {verb} {len(result.sent)}, "
        f"already redriven {len(result.already)}, original gone {len(result.missing)}",
        file=out,
    )
    return 1 if result.missing else 0


def _print_purge(dlq: DeadLetters, args: argparse.Namespace, out: TextIO) -> int:
    counts = dlq.purge(_selection(args), redriven_only=args.redriven_only, apply=args.apply)
    verb = "purged" if args.apply else "to purge"
    for topic, n in counts.items():
        print(f"{verb}: {topic}: {n} record(s)", file=out)
    print(
        ("" if args.apply else "dry run (--apply to act): ")
        + f"{verb} {sum(counts.values())} record(s) in {len(counts)} topic(s)",
        file=out,
    )
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ticketing-dlq", description="List, show, redrive and purge the dead-letter topics."
    )
    parser.add_argument("--bootstrap-servers", default=None)
    commands = parser.add_subparsers(dest="command", required=True)

    def scoped(name: str, text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=text, description=text)
        sub.add_argument("--group", help="the consumer group that dead-lettered")
        sub.add_argument("--topic", help="the source topic, e.g. payment.success")
        return sub

    scoped("list", "per dead-letter topic: count, redriven, reasons, oldest")
    show = scoped("show", "headers, decoded event, trace id and Jaeger link")
    show.add_argument("dlq_topic", nargs="?")
    show.add_argument("partition", nargs="?", type=int)
    show.add_argument("offset", nargs="?", type=int)
    show.add_argument("--event-id", action="append")
    redrive = scoped("redrive", "send dead letters back to the group that failed them")
    redrive.add_argument("--reason", action="append", help="dlq.reason; repeatable")
    redrive.add_argument("--event-id", action="append", help="repeatable")
    redrive.add_argument("--partition", type=int, help="of the dead-letter topic")
    redrive.add_argument("--from-offset", type=int, help="first offset, inclusive")
    redrive.add_argument("--to-offset", type=int, help="last offset, inclusive")
    redrive.add_argument("--apply", action="store_true", help="act; a dry run without it")
    purge = scoped("purge", "delete dead letters (a partition's prefix: Kafka deletes no other)")
    purge.add_argument("--redriven-only", action="store_true", help="only what was redriven")
    purge.add_argument("--apply", action="store_true", help="act; a dry run without it")
    return parser


_COMMANDS = {
    "list": _print_list,
    "show": _print_show,
    "redrive": _print_redrive,
    "purge": _print_purge,
}


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    args = _parser().parse_args(argv)
    dlq = DeadLetters(args.bootstrap_servers or KafkaSettings().bootstrap_servers)
    try:
        return _COMMANDS[args.command](dlq, args, out or sys.stdout)
    except (RedriveError, KafkaException, TimeoutError) as exc:
        print(f"ticketing-dlq: {exc}", file=sys.stderr)
        return 1
    finally:
        dlq.close()


def run() -> None:
    """Console script entry point."""
    sys.exit(main())
