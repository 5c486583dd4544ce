"""Realistic stored windows for many users: the project's synthetic generator, merged through
the worker's own window code (:func:`stream.window.merge_events`, :func:`encode_window`).

Generating events costs more the more users it generates, so one group of users is generated
and merged once, then copied under new user and event ids until there are as many distinct
users as asked for. Used by the window-state measurement and the recovery benchmark.
"""

from __future__ import annotations

from collections.abc import Iterator

from contract import ACTIONS
from serving.data import UserSequence, user_sequences
from serving.synthetic import SyntheticConfig, generate_events
from stream.records import Window, WindowEvent
from stream.window import encode_window, merge_events

__all__ = ["GROUP_USERS", "synthetic_windows"]

GROUP_USERS = 10_000


def synthetic_windows(
    users: int, window_size: int, horizon_ms: int, *, group_users: int = GROUP_USERS
) -> Iterator[tuple[str, bytes]]:
    """(user id, encoded window) of ``users`` distinct users, as the worker stores them.

    Copy ``c`` of generated user ``u`` is user ``u.c``, with event ids suffixed ``.c``.
    """
    config = SyntheticConfig(n_users=min(users, group_users), mean_events_per_user=60.0, seed=1)
    group = [
        (seq.user_id, _window(seq, window_size, horizon_ms))
        for seq in user_sequences(generate_events(config))
    ]
    for copy in range(-(-users // len(group))):
        suffix = f".{copy}"
        for user_id, window in group[: users - copy * len(group)]:
            renamed = tuple(WindowEvent(e.event_id + suffix, e.item_id, e.action, e.ts_ms) for e in window)
            yield user_id + suffix, encode_window(renamed)


def _window(seq: UserSequence, window_size: int, horizon_ms: int) -> Window:
    """The window the worker keeps after all of the user's events."""
    events = [
        WindowEvent(event_id, item, ACTIONS[code - 1], ts)
        for event_id, item, code, ts in zip(
            seq.event_ids, seq.items, seq.actions, seq.timestamps_ms, strict=True
        )
    ]
    return merge_events((), events, window_size, horizon_ms).window
