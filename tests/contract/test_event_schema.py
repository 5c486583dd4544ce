"""The input contract has two statements: ``stream/schemas/event.schema.json`` for producers and
``stream/validation.py`` for the worker. Generated near-valid documents must get the same verdict
from both, except for the rules the schema lists in ``x-worker-only-rules``: a document that
touches one is compared with that rule neutralized, and the worker's verdict on the original may
differ only by that rule's reason."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from importlib.resources import files
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from contract import ACTIONS
from stream.validation import MAX_CONTEXT_BYTES, MAX_ID_CHARS, InvalidEvent, parse_event

pytestmark = pytest.mark.unit

SCHEMA = json.loads((files("stream") / "schemas" / "event.schema.json").read_text())
VALIDATOR = Draft202012Validator(SCHEMA)
GOOD: dict[str, Any] = {
    "event_id": "e1",
    "user_id": "u1",
    "item_id": "i1",
    "action": "view",
    "ts": 1_700_000_000_000,
}
ID_FIELDS = ("event_id", "user_id", "item_id")
MIN_TS, MAX_TS = 946_684_800_000, 4_102_444_800_000


def _unprintable_ids(doc: dict[str, Any]) -> list[str]:
    return [
        name
        for name in ID_FIELDS
        if isinstance(doc.get(name), str)
        and 0 < len(doc[name]) <= MAX_ID_CHARS
        and not doc[name].isprintable()
    ]


def _context_over_limit(context: Any) -> bool:
    if not isinstance(context, dict):
        return False
    try:
        return len(orjson.dumps(context)) > MAX_CONTEXT_BYTES
    except TypeError:  # too deep or too large a number for the worker to write back
        return True


@dataclass(frozen=True)
class WorkerOnlyRule:
    applies: Callable[[dict[str, Any]], bool]
    neutralized: Callable[[dict[str, Any]], dict[str, Any]]
    reason: str  # the worker's reason when only this rule is broken


# The schema's x-worker-only-rules that generated documents can touch. key_mismatch,
# future_timestamp and message_bytes never arise here: each document is keyed by its user_id,
# parsed with no broker timestamp and with room for any size.
WORKER_ONLY: dict[str, WorkerOnlyRule] = {
    "printable_ids": WorkerOnlyRule(
        lambda doc: bool(_unprintable_ids(doc)),
        lambda doc: {**doc, **dict.fromkeys(_unprintable_ids(doc), "x")},
        "bad_id",
    ),
    "context_bytes": WorkerOnlyRule(
        lambda doc: _context_over_limit(doc.get("context")), lambda doc: {**doc, "context": {}}, "bad_context"
    ),
    "iso_timestamp": WorkerOnlyRule(
        lambda doc: isinstance(doc.get("ts"), str), lambda doc: {**doc, "ts": GOOD["ts"]}, "bad_timestamp"
    ),
    "integer_ts_literal": WorkerOnlyRule(
        lambda doc: isinstance(doc.get("ts"), float) and doc["ts"].is_integer(),
        lambda doc: {**doc, "ts": GOOD["ts"]},
        "wrong_type",
    ),
}
NEVER_GENERATED = {"key_mismatch", "future_timestamp", "message_bytes"}


def worker_verdict(doc: dict[str, Any]) -> str | None:
    """None if the worker accepts ``doc``, else its dead-letter reason."""
    # The standard library writes integers beyond 64 bits, which producers in other languages can.
    raw = json.dumps(doc, ensure_ascii=False, allow_nan=False).encode()
    user_id = doc.get("user_id")
    try:
        parse_event(raw, user_id.encode() if isinstance(user_id, str) else b"", 1 << 20)
    except InvalidEvent as error:
        return error.reason
    return None


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=4), children, max_size=3)
    ),
    max_leaves=6,
)
odd_text = st.text(st.characters(codec="utf-8"), min_size=0, max_size=MAX_ID_CHARS + 2)
ids = st.one_of(
    st.just("u1"),
    st.sampled_from(
        ["", "x" * MAX_ID_CHARS, "x" * (MAX_ID_CHARS + 1), "caf\u00e9", "a b", "a\u00a0b", "\u200b"]
    ),
    odd_text,
    json_values,
)
in_range = st.datetimes(datetime(2000, 1, 2), datetime(2099, 12, 30), timezones=st.just(UTC))
timestamps = st.one_of(
    st.sampled_from(
        [MIN_TS - 1, MIN_TS, MAX_TS - 1, MAX_TS, 1_700_000_000, 1.7e12, 1_700_000_000_000.5, True]
    ),
    st.integers(MIN_TS - 10**12, MAX_TS + 10**12),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    in_range.map(lambda moment: moment.isoformat()),
    in_range.map(lambda moment: moment.replace(tzinfo=None).isoformat()),  # no time zone
    st.sampled_from(["1999-12-31T23:59:59Z", "2100-01-01T00:00:00Z", "yesterday", "2023-02-30T00:00:00Z"]),
    st.just(datetime(2000, 1, 1, 1, tzinfo=timezone(timedelta(hours=2))).isoformat()),  # 1999 in UTC
    json_values,
)
contexts = st.one_of(
    st.dictionaries(st.text(max_size=6), json_values, max_size=4),
    st.dictionaries(st.text(max_size=6), st.text(min_size=400, max_size=900), min_size=2, max_size=4),
    json_values,
)
extras = st.dictionaries(
    st.text(max_size=10).filter(lambda name: name not in GOOD and name != "context"), json_values, max_size=3
)


@st.composite
def near_valid(draw: st.DrawFn) -> dict[str, Any]:
    doc = dict(GOOD)
    for name in ID_FIELDS:
        if draw(st.booleans()):
            doc[name] = draw(ids)
    if draw(st.booleans()):
        doc["action"] = draw(st.one_of(st.sampled_from([*ACTIONS, "like", "View", ""]), json_values))
    if draw(st.booleans()):
        doc["ts"] = draw(timestamps)
    if draw(st.booleans()):
        doc["context"] = draw(contexts)
    for name in draw(st.lists(st.sampled_from([*GOOD, "context"]), max_size=2)):
        doc.pop(name, None)
    return {**doc, **draw(extras)}


def test_the_schema_names_exactly_the_rules_the_test_leaves_to_the_worker() -> None:
    assert set(SCHEMA["x-worker-only-rules"]) == WORKER_ONLY.keys() | NEVER_GENERATED


def assert_schema_and_worker_agree(doc: dict[str, Any]) -> None:
    touched = [rule for rule in WORKER_ONLY.values() if rule.applies(doc)]
    neutral = doc
    for rule in touched:
        neutral = rule.neutralized(neutral)
    verdict = worker_verdict(neutral)
    assert VALIDATOR.is_valid(neutral) == (verdict is None), (neutral, verdict)
    if touched:
        assert worker_verdict(doc) in {verdict, *(rule.reason for rule in touched)}


@pytest.mark.parametrize(
    "doc",
    [
        *({**GOOD, "ts": ts} for ts in (MIN_TS - 1, MIN_TS, MAX_TS - 1, MAX_TS)),
        *(
            {**GOOD, name: "x" * length}
            for name in ID_FIELDS
            for length in (0, MAX_ID_CHARS, MAX_ID_CHARS + 1)
        ),
        {**GOOD, "price": {"currency": "EUR"}, "": None},  # unknown fields: accepted by both
        {**GOOD, "context": None},
        {**GOOD, "context": {"blob": "x" * (MAX_CONTEXT_BYTES - 11)}},  # exactly the limit
        {**GOOD, "ts": 1.7e12},
        {**GOOD, "item_id": "i\x00"},
        {**GOOD, "ts": "2099-12-31T23:59:59.999+00:00"},
    ],
)
def test_schema_and_worker_agree_at_the_boundaries(doc: dict[str, Any]) -> None:
    assert_schema_and_worker_agree(doc)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(near_valid())
def test_schema_and_worker_accept_and_refuse_the_same_documents(doc: dict[str, Any]) -> None:
    assert_schema_and_worker_agree(doc)
