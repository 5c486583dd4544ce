"""Fuzzed messages, seeded: the known hostile kinds, random bytes, and valid events mutated
field by field or byte by byte. Some mutations stay valid (the worker must then process them);
which is which is for the accounting to decide with the worker's own parser."""

from __future__ import annotations

import random
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Final

import orjson

from tools.hostile import HOSTILE_KINDS, hostile_message

__all__ = ["fuzzed_messages", "interleave"]

_FIELDS: Final = ("event_id", "user_id", "item_id", "action", "ts", "context")


def _odd_value(rng: random.Random) -> Any:
    """A JSON value of any type, often one a field does not take."""
    return rng.choice(
        [
            None,
            True,
            rng.randint(-(2**63), 2**63 - 1),
            rng.random() * 1e13,
            "",
            "x" * rng.randint(1, 300),
            "".join(chr(rng.randint(0x20, 0x2FFF)) for _ in range(rng.randint(1, 20))),
            [rng.randint(0, 9)] * rng.randint(0, 5),
            {"k": rng.randint(0, 9)},
            rng.randint(1_600_000_000_000, 1_800_000_000_000),
            rng.choice(["view", "click", "add_to_cart", "purchase", "like"]),
        ]
    )


def _json_mutation(rng: random.Random, event: dict[str, Any]) -> bytes:
    """``event`` with one field dropped, retyped or added, or its bytes cut or flipped."""
    choice = rng.randrange(6)
    if choice == 0:
        event.pop(rng.choice(_FIELDS), None)
    elif choice == 1:
        event[rng.choice(_FIELDS)] = _odd_value(rng)
    elif choice == 2:
        event[rng.choice(["extra", "Ts", "userId", "ctx"])] = _odd_value(rng)
    else:
        raw = bytearray(orjson.dumps(event))
        if choice == 3:
            return bytes(raw[: rng.randrange(len(raw))])
        if choice == 4:
            raw[rng.randrange(len(raw))] = rng.randrange(256)
            return bytes(raw)
        return rng.choice([b"[", b"{", b'"', b"1", b"null", b"[]"]) + bytes(raw)
    return orjson.dumps(event)


def _one(rng: random.Random, base: Mapping[str, Any], event_id: str) -> tuple[bytes | None, bytes]:
    kind = rng.randrange(4)
    key = str(base["user_id"]).encode()
    if kind == 0:
        hostile = hostile_message(rng.choice(HOSTILE_KINDS), base, event_id)
        return hostile.key, hostile.value
    if kind == 1:
        return key, rng.randbytes(rng.randint(1, 400))
    if kind == 2 and rng.random() < 0.2:  # a key that is not the event's user
        return rng.choice([b"", b"someone-else", rng.randbytes(8)]), orjson.dumps(
            {**base, "event_id": event_id}
        )
    return key, _json_mutation(rng, {**base, "event_id": event_id})


def fuzzed_messages(
    valid_events: Sequence[Mapping[str, Any]], count: int, seed: int
) -> Iterator[tuple[bytes | None, bytes]]:
    """``count`` fuzzed (key, value) messages made from ``valid_events``; each gets a fresh
    event id, so a mutation that stays valid never collides with a real event."""
    rng = random.Random(seed)
    for index in range(count):
        yield _one(rng, rng.choice(valid_events), f"fuzz-{seed}-{index}")


def interleave(
    valid: Sequence[tuple[bytes, bytes]], fuzzed: Sequence[tuple[bytes | None, bytes]], seed: int
) -> list[tuple[bytes | None, bytes]]:
    """Both lists merged at random points, each keeping its own order."""
    rng = random.Random(seed)
    slots = [True] * len(valid) + [False] * len(fuzzed)
    rng.shuffle(slots)
    valid_left, fuzzed_left = iter(valid), iter(fuzzed)
    return [next(valid_left) if is_valid else next(fuzzed_left) for is_valid in slots]
