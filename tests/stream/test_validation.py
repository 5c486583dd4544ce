import orjson
import pytest

from stream.records import Event
from stream.validation import REASONS, InvalidEvent, parse_event

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


def test_iso_timestamp_is_converted_to_epoch_ms() -> None:
    assert parse({**GOOD, "ts": "2023-11-14T22:13:20.5+00:00"}).ts_ms == 1_700_000_000_500


@pytest.mark.parametrize(
    ("doc", "reason"),
    [
        (b"{not json", "not_json"),
        (b"\xff\xfe", "not_json"),
        ([1, 2], "not_object"),
        ({k: v for k, v in GOOD.items() if k != "item_id"}, "missing_field"),
        ({**GOOD, "price": 3}, "unknown_field"),
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
