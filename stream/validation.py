"""Parse one raw ``events`` message into an :class:`Event`, or say precisely why not.

Limits are part of the public contract (docs/contracts.md, ``stream/schemas/event.schema.json``).
Known fields are strict; fields this worker does not know are ignored and counted, so producers
can add a field before every worker is upgraded (docs/contracts.md, "Unknown fields").
"""

from __future__ import annotations

from typing import Any, Final

import orjson

from contract import ACTION_CODES, event_time_ms
from stream.records import Event

__all__ = [
    "MAX_CONTEXT_BYTES",
    "MAX_ID_CHARS",
    "REASONS",
    "InvalidEvent",
    "escape_untrusted",
    "parse_event",
]

MAX_ID_CHARS: Final = 128
MAX_CONTEXT_BYTES: Final = 2048
# Timestamps outside [2000-01-01, 2100-01-01) are almost surely seconds/micros mix-ups.
_MIN_TS_MS: Final = 946_684_800_000
_MAX_TS_MS: Final = 4_102_444_800_000
_ID_FIELDS: Final = ("event_id", "user_id", "item_id")
_REQUIRED_FIELDS: Final = (*_ID_FIELDS, "action", "ts")
#: Longest text from a message that reaches a log line or a dead-letter header.
UNTRUSTED_TEXT_CHARS: Final = 200

REASONS: Final = (
    "oversized",
    "not_json",
    "not_object",
    "missing_field",
    "wrong_type",
    "bad_id",
    "unknown_action",
    "bad_timestamp",
    "bad_context",
    "key_mismatch",
    "future_timestamp",
    "conflicting_duplicate",
    "internal_error",
)


class InvalidEvent(ValueError):
    """The message breaks the event contract; ``reason`` is one of :data:`REASONS`."""

    def __init__(self, reason: str, detail: str) -> None:
        detail = escape_untrusted(detail)
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def escape_untrusted(text: str, limit: int = UNTRUSTED_TEXT_CHARS) -> str:
    """``text`` made safe for a log line or a header: at most ``limit`` characters, every
    control, non-ASCII or unpaired surrogate character escaped (``\\n``, ``\\xe9``, ``\\ud800``)."""
    escaped = text[:limit].encode("unicode_escape").decode("ascii")
    return escaped[:limit] + "..." if len(text) > limit or len(escaped) > limit else escaped


def parse_event(
    raw: bytes | None, key: bytes | None, max_bytes: int, *, not_after_ms: int | None = None
) -> Event:
    """Validate ``raw`` (the message value) against the contract; ``key`` must be the user id.

    ``not_after_ms`` is the latest acceptable event time (the record's broker timestamp plus the
    allowed clock skew): a later event would take over its user's window. Any failure, expected
    or not, is an :class:`InvalidEvent`, so one message can never stop the stream.
    """
    try:
        event = _parse(raw, key, max_bytes)
    except InvalidEvent:
        raise
    except Exception as exc:  # a defect met by one message must cost that message only
        raise InvalidEvent("internal_error", f"{type(exc).__name__}: {exc}") from exc
    if not_after_ms is not None and event.ts_ms > not_after_ms:
        raise InvalidEvent(
            "future_timestamp",
            f"ts {event.ts_ms} ms is {event.ts_ms - not_after_ms} ms past the allowed skew ahead of "
            "the record's timestamp",
        )
    return event


def _parse(raw: bytes | None, key: bytes | None, max_bytes: int) -> Event:
    if raw is None:
        raise InvalidEvent("not_json", "empty message value")
    if len(raw) > max_bytes:
        raise InvalidEvent("oversized", f"{len(raw)} bytes > limit {max_bytes}")
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidEvent("not_json", str(exc)) from None
    if not isinstance(doc, dict):
        raise InvalidEvent("not_object", f"top level is {type(doc).__name__}, expected object")
    missing = [name for name in _REQUIRED_FIELDS if name not in doc]
    if missing:
        raise InvalidEvent("missing_field", f"missing {', '.join(missing)}")
    ids = [_identifier(doc, name) for name in _ID_FIELDS]
    event = Event(
        event_id=ids[0],
        user_id=ids[1],
        item_id=ids[2],
        action=_action(doc["action"]),
        ts_ms=parse_timestamp_ms(doc["ts"]),
        context=_context(doc.get("context")),
        # Every required field is present, so the rest are context or unknown: no set to build.
        unknown_fields=len(doc) - len(_REQUIRED_FIELDS) - ("context" in doc),
    )
    if key != event.user_id.encode():
        # Windows live in the partition of their events: a user's events must share one key.
        detail = "message key is missing" if key is None else "message key differs from user_id"
        raise InvalidEvent("key_mismatch", f"{detail}; key events by user_id")
    return event


def _identifier(doc: dict[str, Any], name: str) -> str:
    value = doc[name]
    if not isinstance(value, str):
        raise InvalidEvent("wrong_type", f"{name} must be a string, got {type(value).__name__}")
    if not value or len(value) > MAX_ID_CHARS or not value.isprintable():
        raise InvalidEvent("bad_id", f"{name} must be 1-{MAX_ID_CHARS} printable characters")
    return value


def _action(value: Any) -> str:
    if not isinstance(value, str):
        raise InvalidEvent("wrong_type", f"action must be a string, got {type(value).__name__}")
    if value not in ACTION_CODES:
        raise InvalidEvent("unknown_action", f"{value[:40]!r} is not one of {', '.join(ACTION_CODES)}")
    return value


def parse_timestamp_ms(value: Any) -> int:
    """Epoch milliseconds (integer) or an ISO-8601 string with a time zone, within 2000-2100."""
    try:
        ts_ms = event_time_ms(value)
    except TypeError as exc:
        raise InvalidEvent("wrong_type", str(exc)) from None
    except ValueError as exc:
        raise InvalidEvent("bad_timestamp", str(exc)) from None
    if not _MIN_TS_MS <= ts_ms < _MAX_TS_MS:
        raise InvalidEvent("bad_timestamp", f"{ts_ms} ms is outside 2000-2100 (seconds sent?)")
    return ts_ms


def _context(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise InvalidEvent("wrong_type", f"context must be an object, got {type(value).__name__}")
    try:
        size = len(orjson.dumps(value))
    except TypeError as exc:  # nested deeper than orjson writes (about 255 levels)
        raise InvalidEvent("bad_context", f"context cannot be re-encoded: {exc}") from None
    if size > MAX_CONTEXT_BYTES:
        raise InvalidEvent("bad_context", f"context exceeds {MAX_CONTEXT_BYTES} bytes")
    return value
