"""The contract between the stream and the model: the only module both sides import.

What a window means to the model and how it crosses to Triton: action codes, the item
vocabulary's reserved indices, time-gap buckets, the Triton and ONNX tensor names with their
types and shapes, and left-padding. The Triton model file ships with a copy of this module in
every version folder, so it imports the standard library and numpy only, and runs on the
Python 3.10 of older Triton containers as well.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Final

import numpy as np

__all__ = [
    "ACTIONS",
    "ACTION_ATTRIBUTIONS",
    "ACTION_CODES",
    "ATTRIBUTIONS",
    "FIRST_ITEM_INDEX",
    "GAP_QUANTILES",
    "GAP_QUANTILE_LEVELS",
    "HEAD_SHARE",
    "INPUTS",
    "ITEM_ACTIONS",
    "ITEM_IDS",
    "ITEM_ORIGINS",
    "LEARNED_ORIGIN",
    "NEXT_ACTIONS",
    "N_GAP_BUCKETS",
    "ONNX_INPUTS",
    "ONNX_OUTPUTS",
    "OUTPUTS",
    "PAD_INDEX",
    "POPULARITY",
    "POPULARITY_ADJUSTMENT",
    "SIGNALS",
    "SIGNAL_CODES",
    "SIGNAL_KINDS",
    "SIMILARITIES",
    "TEXT_ORIGIN",
    "TIMESTAMPS",
    "TOP_ITEMS",
    "TOP_SCORES",
    "UNKNOWN_INDEX",
    "WINDOW_ACTIONS",
    "TensorSpec",
    "event_time_ms",
    "gap_buckets",
    "left_pad",
    "read_vocab_items",
    "write_vocab_items",
]

# Action codes as the model sees them; 0 is padding. The order is part of the contract.
ACTIONS: Final[tuple[str, ...]] = ("view", "click", "add_to_cart", "purchase")
ACTION_CODES: Final[dict[str, int]] = {name: code for code, name in enumerate(ACTIONS, start=1)}

# Item vocabulary: index 0 pads a window, 1 stands for any item the model does not know.
PAD_INDEX: Final = 0
UNKNOWN_INDEX: Final = 1
FIRST_ITEM_INDEX: Final = 2

# Gap buckets: 0 = padding, 1 = oldest event in the window (no previous event visible),
# 2.. = floor(log2(1 + gap seconds)), capped. Log scale because a 5 s and a 50 s gap differ
# as much in meaning as a 1 h and a 10 h gap.
N_GAP_BUCKETS: Final = 24
_PAD_GAP: Final = 0
_FIRST_GAP: Final = 1
_FIRST_TIMED_GAP: Final = 2

# Levels of the quantiles of the time until the user's next event that the model serves
# (GAP_QUANTILES): a distribution, because the same window may be followed seconds or days later.
GAP_QUANTILE_LEVELS: Final[tuple[float, ...]] = (0.1, 0.25, 0.5, 0.75, 0.9)


@dataclass(frozen=True)
class TensorSpec:
    """One Triton tensor: its name, types on each side, and its dims without the batch
    dimension, written as ``window`` (W), ``top_k`` (K), ``actions`` (A, the action types),
    ``quantiles`` (Q, the gap quantile levels) or ``one`` (1)."""

    name: str
    config_type: str  # config.pbtxt data_type
    client_type: str  # tritonclient datatype
    dtype: type[np.generic]
    dims: tuple[str, ...]
    optional: bool = False  # a request may leave the input out

    def shape(self, window: int, top_k: int) -> list[int]:
        sizes = {
            "window": window,
            "top_k": top_k,
            "actions": len(ACTIONS),
            "quantiles": len(GAP_QUANTILE_LEVELS),
            "one": 1,
        }
        return [sizes[dim] for dim in self.dims]


# Inputs: the window, oldest to newest, left-padded with "" / 0 / 0, and the strength of the
# popularity correction for this window (optional, 0 when left out: workers older than it
# keep working; see the README's model section).
ITEM_IDS: Final = TensorSpec("ITEM_IDS", "TYPE_STRING", "BYTES", np.object_, ("window",))
WINDOW_ACTIONS: Final = TensorSpec("ACTIONS", "TYPE_INT32", "INT32", np.int32, ("window",))
TIMESTAMPS: Final = TensorSpec("TIMESTAMPS", "TYPE_INT64", "INT64", np.int64, ("window",))
POPULARITY_ADJUSTMENT: Final = TensorSpec(
    "POPULARITY_ADJUSTMENT", "TYPE_FP32", "FP32", np.float32, ("one",), optional=True
)
# Outputs: the best items first, their probabilities, per item the weight of each window
# position (0 on padding and on events older than those the model explains), the items'
# pairwise cosine similarity, how each window event relates to each item (SIGNAL_CODES),
# each item's popularity as the share of the catalogue at least as popular (0 = the most),
# and where each item's embedding came from. Then what the user does next: the probability of
# each action type (ACTIONS order), the same given that the next item is each top item, the
# seconds until the next event at GAP_QUANTILE_LEVELS, and per action type the weight of each
# window position in its probability (as ATTRIBUTIONS weigh them for items).
TOP_ITEMS: Final = TensorSpec("TOP_ITEMS", "TYPE_STRING", "BYTES", np.object_, ("top_k",))
TOP_SCORES: Final = TensorSpec("TOP_SCORES", "TYPE_FP32", "FP32", np.float32, ("top_k",))
ATTRIBUTIONS: Final = TensorSpec("ATTRIBUTIONS", "TYPE_FP32", "FP32", np.float32, ("top_k", "window"))
SIMILARITIES: Final = TensorSpec("SIMILARITIES", "TYPE_FP32", "FP32", np.float32, ("top_k", "top_k"))
SIGNALS: Final = TensorSpec("SIGNALS", "TYPE_INT8", "INT8", np.int8, ("top_k", "window"))
POPULARITY: Final = TensorSpec("POPULARITY", "TYPE_FP32", "FP32", np.float32, ("top_k",))
ITEM_ORIGINS: Final = TensorSpec("ITEM_ORIGINS", "TYPE_INT8", "INT8", np.int8, ("top_k",))
NEXT_ACTIONS: Final = TensorSpec("NEXT_ACTIONS", "TYPE_FP32", "FP32", np.float32, ("actions",))
ITEM_ACTIONS: Final = TensorSpec("ITEM_ACTIONS", "TYPE_FP32", "FP32", np.float32, ("top_k", "actions"))
GAP_QUANTILES: Final = TensorSpec("GAP_QUANTILES", "TYPE_FP32", "FP32", np.float32, ("quantiles",))
ACTION_ATTRIBUTIONS: Final = TensorSpec(
    "ACTION_ATTRIBUTIONS", "TYPE_FP32", "FP32", np.float32, ("actions", "window")
)
INPUTS: Final = (ITEM_IDS, WINDOW_ACTIONS, TIMESTAMPS, POPULARITY_ADJUSTMENT)
OUTPUTS: Final = (
    TOP_ITEMS,
    TOP_SCORES,
    ATTRIBUTIONS,
    SIMILARITIES,
    SIGNALS,
    POPULARITY,
    ITEM_ORIGINS,
    NEXT_ACTIONS,
    ITEM_ACTIONS,
    GAP_QUANTILES,
    ACTION_ATTRIBUTIONS,
)
# Where an item's embedding came from (ITEM_ORIGINS): learned from interactions, or predicted
# from its text after training (cold start, until a retraining learns it).
LEARNED_ORIGIN: Final = 0
TEXT_ORIGIN: Final = 1

# How a window event relates to a recommended item; 0 = padding. ``sequence_pattern``: the
# item often followed the event's item in the training data; ``similar_item``: their
# embeddings are among the closest pairs of the catalogue; ``context``: neither, the event
# weighs through the pattern of the whole window. The order is part of the contract.
SIGNAL_KINDS: Final[tuple[str, ...]] = ("same_item", "sequence_pattern", "similar_item", "context")
SIGNAL_CODES: Final[dict[str, int]] = {name: code for code, name in enumerate(SIGNAL_KINDS, start=1)}

# The most popular share of the catalogue (by training interactions); everything else is the
# long tail, in evaluation and in the stream's exploration alike.
HEAD_SHARE: Final = 0.2

# The exported ONNX graph: vocabulary indices, action codes and gap buckets, int64 [B, W'] with
# W' between the explained positions and W, and the popularity correction float [B, 1]; out
# come indices [B, K], probabilities [B, K], attributions [B, K, W'], similarities [B, K, K],
# signals int8 [B, K, W'], popularity [B, K], item origins int8 [B, K], next action
# probabilities [B, A], item action probabilities [B, K, A], gap quantiles in seconds [B, Q] and
# action attributions [B, A, W'].
ONNX_INPUTS: Final = ("items", "actions", "gap_buckets", "popularity_adjustment")
ONNX_OUTPUTS: Final = (
    "top_indices",
    "top_scores",
    "attributions",
    "similarities",
    "signals",
    "popularity",
    "item_origins",
    "next_actions",
    "item_actions",
    "gap_quantiles",
    "action_attributions",
)


_EPOCH: Final = datetime(1970, 1, 1, tzinfo=timezone.utc)  # noqa: UP017 (runs on Python 3.10 too)


def event_time_ms(value: Any) -> int:
    """An event's ``ts`` as events carry it, in the topic and in training files: epoch
    milliseconds (an integer), or an ISO-8601 string with a time zone.

    Raises TypeError for another type and ValueError for a string that is not such a time.
    """
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if not isinstance(value, str):
        raise TypeError(f"ts must be epoch milliseconds or ISO-8601, got {type(value).__name__}")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{value[:40]!r} is not ISO-8601") from None
    if parsed.tzinfo is None:
        raise ValueError("ISO-8601 ts needs a time zone (e.g. Z)")
    # Integer arithmetic: a float of seconds would turn .001 into .000999... and lose a millisecond.
    return (parsed - _EPOCH) // timedelta(milliseconds=1)


def left_pad(rows: Sequence[Sequence[Any] | np.ndarray], width: int, fill: Any, dtype: Any) -> np.ndarray:
    """The newest ``width`` values of each row, right-aligned and left-padded with ``fill``:
    an array [len(rows), width]."""
    padded = np.full((len(rows), width), fill, dtype=dtype)
    for index, row in enumerate(rows):
        tail = row[-width:] if width else row[:0]
        if len(tail):
            padded[index, width - len(tail) :] = tail
    return padded


def gap_buckets(timestamps_ms: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Log-bucketed gap of each event to the previous one in the same window.

    timestamps_ms: int64 [..., W] epoch ms, oldest to newest; valid: bool [..., W] (False = pad).
    Returns int64 [..., W]. Only gaps inside the window count, because the server sees only
    the window: the oldest event always gets the "first" bucket, in training and in serving.
    """
    ts = np.asarray(timestamps_ms, dtype=np.int64)
    valid = np.asarray(valid, dtype=bool)
    previous_valid = np.zeros_like(valid)
    previous_valid[..., 1:] = valid[..., :-1]
    gap_ms = np.zeros(ts.shape, dtype=np.int64)
    gap_ms[..., 1:] = ts[..., 1:] - ts[..., :-1]
    # Out-of-order timestamps count as simultaneous rather than failing the request.
    gap_s = np.maximum(gap_ms, 0) / 1000.0
    timed = _FIRST_TIMED_GAP + np.minimum(
        np.floor(np.log2(1.0 + gap_s)).astype(np.int64), N_GAP_BUCKETS - 1 - _FIRST_TIMED_GAP
    )
    buckets = np.where(previous_valid, timed, _FIRST_GAP)
    return np.where(valid, buckets, _PAD_GAP).astype(np.int64)


def write_vocab_items(path: str | os.PathLike[str], items: Sequence[str]) -> None:
    """Write a version's ``vocab.json``: known item ids in index order, after the reserved ones."""
    data = {"pad_index": PAD_INDEX, "unknown_index": UNKNOWN_INDEX, "items": list(items)}
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(json.dumps(data, indent=0) + "\n")


def read_vocab_items(path: str | os.PathLike[str]) -> list[str]:
    """Item ids of a version's ``vocab.json`` in index order: item ``i`` of the list has
    index ``i + FIRST_ITEM_INDEX``."""
    with open(path, encoding="utf-8") as handle:
        data = json.load(handle)
    if (data.get("pad_index"), data.get("unknown_index")) != (PAD_INDEX, UNKNOWN_INDEX):
        raise ValueError(f"{path}: vocabulary layout differs from pad={PAD_INDEX}, unknown={UNKNOWN_INDEX}")
    items = data["items"]
    if not all(isinstance(item, str) and item for item in items):
        raise ValueError(f"{path}: item ids must be non-empty strings")
    return list(items)
