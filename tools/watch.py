"""``nextaction watch``: read the events, recommendations and dead-letter topics with a consumer
of its own (assigned partitions, no group, nothing committed) and show them live.

Reading from the end asks the broker for each partition's end offset; Tansu under-reports it
(the last batch's base offset + 1), so a watch against Tansu may first show a few records
written just before it started.
"""

from __future__ import annotations

import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass

from kafka import KafkaConsumer, TopicPartition
from rich.console import Console
from rich.live import Live

from stream.kafka_security import KafkaSecurity
from stream.settings import Settings
from tools.watch_state import RecordKind, WatchedRecord, WatchState
from tools.watch_view import render

__all__ = ["WatchOptions", "watch"]

_POLL_MS = 250


@dataclass(frozen=True)
class WatchOptions:
    from_beginning: bool = False
    duration_s: float | None = None  # None: until Ctrl-C
    max_recommendations: int | None = None  # stop once this many were read
    once: bool = False  # print the view once, at the end, instead of a live display
    shown: int = 5
    latency_window_s: float = 60.0


def watch(settings: Settings, options: WatchOptions, console: Console) -> WatchState:
    """Fold records into a :class:`WatchState` until the duration, the count or Ctrl-C ends
    the watch; returns the final state."""
    kinds: dict[str, RecordKind] = {
        settings.topic_events: "event",
        settings.topic_recommendations: "recommendation",
        settings.topic_dead_letter: "dead_letter",
    }
    consumer = KafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        enable_auto_commit=False,
        check_crcs=False,
        **KafkaSecurity.from_settings(settings).client_kwargs(),
    )
    state = WatchState(shown=options.shown, latency_window_s=options.latency_window_s)
    try:
        partitions = [TopicPartition(t, p) for t in kinds for p in range(settings.topic_partitions)]
        consumer.assign(partitions)
        (consumer.seek_to_beginning if options.from_beginning else consumer.seek_to_end)(*partitions)
        for partition in partitions:  # resolve the start now: records from here on are shown
            consumer.position(partition)
        print(
            f"watching {', '.join(kinds)} on {settings.kafka_bootstrap} "
            f"from the {'beginning' if options.from_beginning else 'end'} (Ctrl-C stops)",
            file=sys.stderr,
            flush=True,
        )
        deadline = time.monotonic() + options.duration_s if options.duration_s is not None else None
        live = nullcontext() if options.once else Live(render(state), console=console, refresh_per_second=4)
        with live:
            try:
                while not _done(state, options, deadline):
                    for records in consumer.poll(timeout_ms=_POLL_MS).values():
                        for r in records:
                            kind = kinds[r.topic]
                            state.fold(
                                WatchedRecord(kind, r.partition, r.offset, r.timestamp, r.value, r.headers)
                            )
                    if isinstance(live, Live):
                        live.update(render(state))
            except KeyboardInterrupt:
                pass  # Ctrl-C is how a live watch ends
    finally:
        consumer.close()
    if options.once:
        console.print(render(state))
    return state


def _done(state: WatchState, options: WatchOptions, deadline: float | None) -> bool:
    if deadline is not None and time.monotonic() >= deadline:
        return True
    return options.max_recommendations is not None and state.recommendations >= options.max_recommendations
