import time

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stream.records import Event, WindowEvent
from stream.validation import REASONS, InvalidEvent, escape_untrusted, parse_event
from tools.hostile import HOSTILE_KINDS, hostile_message

pytestmark = pytest.mark.unit

GOOD = {"event_id": "e1", "user_id": "u1", "item_id": "i1", "action": "click", "ts": 1_700_000_000_000}


def parse(doc: object, key: bytes | None = b"u1", max_bytes: int = 4096) -> Event:
    raw = doc if isinstance(doc, bytes) else orjson.dumps(doc)
    return parse_event(raw, key, max_bytes)


def reason_of(doc: object, **kwargs: object) -> str:
    with pytest.raises(InvalidEvent) as caught:
        parse(doc, **kwargs)  # type: ignore[arg-type]
    assert caught.value.reason in REASONS
    return caught.value.reason


def test_valid_event_with_epoch_ms_and_context() -> None:
    event = parse({**GOOD, "context": {"page": "home"}})
    assert event == Event("e1", "u1", "i1", "click", 1_700_000_000_000, {"page": "home"})


def test_unknown_fields_are_ignored_and_counted_while_known_fields_stay_strict() -> None:
    # A producer may add a field before the workers know it (docs/contracts.md, Unknown fields).
    event = parse({**GOOD, "price": {"amount": 3}, "Ts": "later", "context": {"page": "home"}})
    assert event == Event("e1", "u1", "i1", "click", 1_700_000_000_000, {"page": "home"}, unknown_fields=2)
    assert WindowEvent.of(event) == WindowEvent("e1", "i1", "click", 1_700_000_000_000)
    assert parse(GOOD).unknown_fields == 0
    assert reason_of({**GOOD, "price": 3, "action": "like"}) == "unknown_action"


def test_iso_timestamp_is_converted_to_epoch_ms() -> None:
    assert parse({**GOOD, "ts": "2023-11-14T22:13:20.5+00:00"}).ts_ms == 1_700_000_000_500


@pytest.mark.parametrize(
    ("doc", "reason"),
    [
        (b"{not json", "not_json"),
        (b"\xff\xfe", "not_json"),
        ([1, 2], "not_object"),
        ({k: v for k, v in GOOD.items() if k != "item_id"}, "missing_field"),
        ({**GOOD, "user_id": 7}, "wrong_type"),
        ({**GOOD, "item_id": ""}, "bad_id"),
        ({**GOOD, "item_id": "x" * 129}, "bad_id"),
        ({**GOOD, "action": "like"}, "unknown_action"),
        ({**GOOD, "ts": 1_700_000_000}, "bad_timestamp"),
        ({**GOOD, "ts": "yesterday"}, "bad_timestamp"),
        ({**GOOD, "ts": "2023-11-14T22:13:20"}, "bad_timestamp"),
        ({**GOOD, "ts": True}, "wrong_type"),
        ({**GOOD, "ts": 1.5e12}, "wrong_type"),
        ({**GOOD, "context": "home"}, "wrong_type"),
        ({**GOOD, "context": {"blob": "x" * 3000}}, "bad_context"),
    ],
)
def test_each_invalid_kind_has_its_reason(doc: object, reason: str) -> None:
    assert reason_of(doc) == reason


def test_oversized_message_is_rejected_before_parsing() -> None:
    assert reason_of({**GOOD, "context": {"a": "b" * 100}}, max_bytes=100) == "oversized"


@pytest.mark.parametrize("key", [None, b"u2"])
def test_key_must_be_the_user_id(key: bytes | None) -> None:
    assert reason_of(GOOD, key=key) == "key_mismatch"


@pytest.mark.parametrize("kind", HOSTILE_KINDS)
def test_hostile_messages_get_their_reason_not_a_crash(kind: str) -> None:
    hostile = hostile_message(kind, GOOD, "h1")
    with pytest.raises(InvalidEvent) as caught:
        parse_event(hostile.value, hostile.key, 4096, not_after_ms=int(time.time() * 1000))
    assert caught.value.reason == hostile.reason


def test_a_message_with_neither_key_nor_value_is_not_json() -> None:
    with pytest.raises(InvalidEvent) as caught:
        parse_event(None, None, 4096)
    assert caught.value.reason == "not_json"


def test_an_unexpected_failure_becomes_an_internal_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(value: object) -> None:
        raise RuntimeError("a defect")

    monkeypatch.setattr("stream.validation._action", broken)
    assert reason_of(GOOD) == "internal_error"


def test_an_event_dated_past_the_allowed_skew_is_refused() -> None:
    raw = orjson.dumps(GOOD)
    assert parse_event(raw, b"u1", 4096, not_after_ms=GOOD["ts"]).ts_ms == GOOD["ts"]  # type: ignore[index]
    with pytest.raises(InvalidEvent) as caught:
        parse_event(raw, b"u1", 4096, not_after_ms=GOOD["ts"] - 1)  # type: ignore[operator]
    assert caught.value.reason == "future_timestamp"


def test_producer_text_in_a_reason_is_escaped_and_truncated() -> None:
    with pytest.raises(InvalidEvent) as caught:
        parse({**GOOD, "action": "\n\x1b[31mFAKE LOG LINE" + "\U0001f600" * 40})
    detail = caught.value.detail
    assert "\n" not in detail and "\x1b" not in detail and detail.isascii()
    assert len(detail) <= 203 and detail.endswith("...")
    assert escape_untrusted("caf\u00e9 \ud800") == "caf\\xe9 \\ud800"


@settings(max_examples=300)
@given(st.binary(max_size=600), st.one_of(st.none(), st.binary(max_size=20)))
def test_any_bytes_parse_or_are_refused_with_a_known_reason(raw: bytes, key: bytes | None) -> None:
    try:
        parse_event(raw, key, 512, not_after_ms=GOOD["ts"])  # type: ignore[arg-type]
    except InvalidEvent as error:
        assert error.reason in REASONS


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=4), children, max_size=3)
    ),
    max_leaves=8,
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.fixed_dictionaries(
        {},
        optional={
            name: st.one_of(json_values, st.just(GOOD.get(name, "view")))
            for name in ("event_id", "user_id", "item_id", "action", "ts", "context", "extra")
        },
    )
)
def test_any_document_parses_or_is_refused_with_a_known_reason(doc: dict[str, object]) -> None:
    try:
        raw = orjson.dumps(doc)
    except TypeError:  # integers beyond 64 bits: no producer can send them through orjson either
        return
    try:
        event = parse_event(raw, orjson.dumps(doc.get("user_id"))[1:-1], 4096)
    except InvalidEvent as error:
        assert error.reason in REASONS
        return
    assert event.user_id == doc["user_id"] and event.action in {"view", "click", "add_to_cart", "purchase"}
