"""Messages that break the event contract in every way we know of, each with the dead-letter
reason the worker must give it: for the tests and the fault-injection run."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import orjson

from serving.synthetic import DAY_MS

__all__ = ["HOSTILE_KINDS", "HostileMessage", "hostile_message"]

_YEAR_MS = 365 * DAY_MS


@dataclass(frozen=True)
class HostileMessage:
    kind: str
    key: bytes | None
    value: bytes
    reason: str  # the dead-letter reason it must get


def _with_context(event: Mapping[str, Any], context: str) -> bytes:
    """``event`` with a raw JSON ``context`` (orjson would refuse to write the nesting)."""
    return orjson.dumps({**event, "context": None})[: -len(b"null}")] + context.encode() + b"}"


def _replace_ts(event: Mapping[str, Any], raw_ts: bytes) -> bytes:
    return orjson.dumps({**event, "ts": 0}).replace(b'"ts":0', b'"ts":' + raw_ts)


# kind -> (key, value) made from a valid event, and the reason the message must be given.
_KINDS: Final[dict[str, tuple[Callable[[Mapping[str, Any]], tuple[bytes | None, bytes]], str]]] = {
    # Nested past orjson's writing limit (about 255 levels) within a few hundred bytes.
    "deep_arrays": (
        lambda e: (e["user_id"].encode(), _with_context(e, '{"a":' + "[" * 300 + "]" * 300 + "}")),
        "bad_context",
    ),
    "deep_objects": (
        lambda e: (e["user_id"].encode(), _with_context(e, '{"a":' + '{"k":' * 300 + "1" + "}" * 300 + "}")),
        "bad_context",
    ),
    "empty_value": (lambda e: (e["user_id"].encode(), b""), "not_json"),
    "non_utf8_key": (lambda e: (b"\xff\xfe" + e["user_id"].encode(), orjson.dumps(e)), "key_mismatch"),
    "integer_beyond_64_bits": (lambda e: (e["user_id"].encode(), _replace_ts(e, b"9" * 30)), "wrong_type"),
    "float_ts": (lambda e: (e["user_id"].encode(), _replace_ts(e, b"1.7e12")), "wrong_type"),
    "nan_ts": (lambda e: (e["user_id"].encode(), _replace_ts(e, b"NaN")), "not_json"),
    "lone_surrogate_id": (
        lambda e: (e["user_id"].encode(), orjson.dumps({**e, "item_id": "X"}).replace(b'"X"', b'"\\ud800"')),
        "not_json",
    ),
    "future_ts": (
        lambda e: (e["user_id"].encode(), orjson.dumps({**e, "ts": int(time.time() * 1000) + _YEAR_MS})),
        "future_timestamp",
    ),
}
HOSTILE_KINDS: Final = tuple(_KINDS)


def hostile_message(kind: str, valid_event: Mapping[str, Any], event_id: str) -> HostileMessage:
    """A message of ``kind`` made from ``valid_event`` (keyed by its user) under ``event_id``."""
    make, reason = _KINDS[kind]
    key, value = make({**valid_event, "event_id": event_id})
    return HostileMessage(kind, key, value, reason)
