"""Windows as Triton input tensors, and Triton's string outputs back as text.

tritonclient serializes string tensors element by element in Python, which cost more than
the rest of the stream per window; here item ids are serialized once per distinct id and
joined, and outputs are read from the raw response.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Final

import numpy as np

from contract import ACTION_CODES, TIMESTAMPS, WINDOW_ACTIONS, left_pad
from stream.records import Window

__all__ = ["decode_strings", "encode_windows"]


# Triton BYTES tensors are sent as a 4-byte little-endian length before each element.
_LENGTH: Final = struct.Struct("<I")
_EMPTY_ELEMENT: Final = _LENGTH.pack(0)


class _ItemBytes(dict[str, bytes]):
    """Item id -> its serialized BYTES element. Popular items repeat in almost every window;
    the cache is emptied when it grows past ``limit`` ids, so memory stays bounded."""

    def __init__(self, limit: int = 1_000_000) -> None:
        super().__init__()
        self._limit = limit

    def __missing__(self, item_id: str) -> bytes:
        if len(self) >= self._limit:
            self.clear()
        encoded = item_id.encode()
        element = self[item_id] = _LENGTH.pack(len(encoded)) + encoded
        return element


_ITEM_BYTES: Final = _ItemBytes()


def encode_windows(windows: Sequence[Window], length: int) -> tuple[bytes, np.ndarray, np.ndarray]:
    """The newest ``length`` events of each window, left-padded, as the three input tensors:
    ITEM_IDS already serialized as a Triton BYTES tensor [B, length], then ACTIONS int32 and
    TIMESTAMPS int64 arrays [B, length]."""
    items: list[bytes] = []
    tails = [window[-length:] if length else () for window in windows]
    for tail in tails:
        items.append(_EMPTY_ELEMENT * (length - len(tail)))
        items.extend([_ITEM_BYTES[event.item_id] for event in tail])
    actions = left_pad(
        [[ACTION_CODES[event.action] for event in tail] for tail in tails], length, 0, WINDOW_ACTIONS.dtype
    )
    stamps = left_pad([[event.ts_ms for event in tail] for tail in tails], length, 0, TIMESTAMPS.dtype)
    return b"".join(items), actions, stamps


def decode_strings(raw: bytes) -> list[str]:
    """The elements of a serialized Triton BYTES tensor, in row-major order, as text."""
    strings = []
    offset, end = 0, len(raw)
    unpack = _LENGTH.unpack_from
    while offset < end:
        (size,) = unpack(raw, offset)
        offset += 4
        strings.append(raw[offset : offset + size].decode())
        offset += size
    return strings
