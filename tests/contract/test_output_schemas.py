"""The published output contracts: every record the worker's code paths build validates against
``stream/schemas/recommendation.schema.json`` (tightened to forbid undocumented fields), and
every dead letter's headers against ``stream/schemas/dead-letter.schema.json``."""

from __future__ import annotations

import copy
import json
from importlib.resources import files
from typing import Any, get_args

import numpy as np
import orjson
import pytest
from jsonschema import Draft202012Validator

from contract import ACTIONS, SIGNAL_CODES, SIGNAL_KINDS, TEXT_ORIGIN
from stream.fallback import FallbackRecommender
from stream.outputs import dead_letter_copy, dead_letter_headers
from stream.recommendations import Presentation, build_recommendations, encode_recommendation
from stream.records import RECOMMENDATION_SCHEMA_VERSION, ItemSource, UserUpdate, WindowEvent
from stream.rerank import RerankPolicy
from stream.scored_batch import ScoredBatch
from stream.validation import REASONS, InvalidEvent
from stream.wording import ItemTitles

pytestmark = pytest.mark.unit

NOW = 1_700_000_600_000
WINDOW = (
    WindowEvent("e1", "shoes", "view", NOW - 300_000),
    WindowEvent("e2", "socks", "click", NOW - 200_000),
    WindowEvent("e3", "laces", "add_to_cart", NOW - 100_000),
)
UPDATES = [UserUpdate("u1", "e3", WINDOW, 4, 91), UserUpdate("u2", "e2", WINDOW[:2], 0, 3)]


def published_schema(name: str) -> dict[str, Any]:
    """A schema as the installed package ships it."""
    return json.loads((files("stream") / "schemas" / f"{name}.schema.json").read_text())


def exact(schema: Any) -> Any:
    """``schema`` with every object closed: the worker must publish no field the schema does not
    document (consumers, by policy, ignore fields they do not know)."""
    if isinstance(schema, dict):
        schema = {key: exact(value) for key, value in schema.items()}
        if schema.get("type") == "object" and "properties" in schema:
            schema.setdefault("additionalProperties", False)
    elif isinstance(schema, list):
        schema = [exact(value) for value in schema]
    return schema


RECOMMENDATION = Draft202012Validator(
    exact(published_schema("recommendation")), format_checker=Draft202012Validator.FORMAT_CHECKER
)
DEAD_LETTER = Draft202012Validator(published_schema("dead-letter"))


def assert_valid(validator: Draft202012Validator, doc: Any) -> None:
    errors = [f"{list(error.absolute_path)}: {error.message}" for error in validator.iter_errors(doc)]
    assert not errors, errors


def model_output(*, described: bool, origins: list[int] | None = None) -> ScoredBatch:
    """Two windows' output over four items; ``described``: with similarities, signals,
    popularity and the next event, as versions since re-ranking and 1.1 serve."""
    rows, k, length = len(UPDATES), 4, len(WINDOW)
    context = SIGNAL_CODES["context"]
    actions = np.tile(np.array([0.6, 0.2, 0.05, 0.15], dtype=np.float32), (rows, 1))
    action_weights = np.tile(np.array([[0.0, 0.3, 0.7]] * len(ACTIONS), dtype=np.float32), (rows, 1, 1))
    return ScoredBatch(
        model_version="3",
        items=[["laces", "boots", "boots-twin", "tail"]] * rows,
        scores=np.tile(np.array([0.4, 0.35, 0.2, 0.05], dtype=np.float32), (rows, 1)),
        attributions=np.tile(np.array([[0.0, 0.1, 0.9]] * k, dtype=np.float32), (rows, 1, 1)),
        similarities=np.tile(np.eye(k, dtype=np.float32) * 0.9 + 0.1, (rows, 1, 1)) if described else None,
        signals=np.full((rows, k, length), context, dtype=np.int8) if described else None,
        popularity=np.tile(np.array([0.5, 0.02, 0.01, 0.9], dtype=np.float32), (rows, 1))
        if described
        else None,
        item_origins=None if origins is None else np.tile(np.array(origins, dtype=np.int8), (rows, 1)),
        next_actions=actions if described else None,
        item_actions=np.tile(actions[:, None], (1, k, 1)) if described else None,
        gap_quantiles=np.tile(np.array([5.0, 30.0, 90.0, 600.0, 7200.0], dtype=np.float32), (rows, 1))
        if described
        else None,
        action_attributions=action_weights if described else None,
    )


def published(batch: ScoredBatch, policy: RerankPolicy) -> list[dict[str, Any]]:
    records = build_recommendations(
        UPDATES,
        batch,
        model_name="nextaction",
        top_k=3,
        now_ms=NOW,
        presentation=Presentation(policy, ItemTitles(laces="Red laces")),
    )
    return [orjson.loads(encode_recommendation(record)) for record in records]


@pytest.mark.parametrize(
    ("batch", "policy", "sources"),
    [
        (model_output(described=False), RerankPolicy(diversity=0.5, exploration_slots=1), {"model"}),
        (
            model_output(described=True),
            RerankPolicy(diversity=0.5, exploration_slots=1),
            {"model", "exploration"},
        ),
        (
            model_output(described=True, origins=[0, 0, TEXT_ORIGIN, TEXT_ORIGIN]),
            RerankPolicy(diversity=0.0, exploration_slots=0),
            {"model", "cold_start"},
        ),
    ],
    ids=["model-order", "exploration", "cold-start"],
)
def test_model_records_match_the_published_schema_exactly(
    batch: ScoredBatch, policy: RerankPolicy, sources: set[str]
) -> None:
    docs = published(batch, policy)
    assert {item["source"] for doc in docs for item in doc["items"]} == sources
    predicts_next = batch.next_actions is not None
    assert all((doc["next_event"] is not None) == predicts_next for doc in docs)
    items = [item for doc in docs for item in doc["items"]]
    assert all((item["actions_if_next"] is not None) == predicts_next for item in items)
    for doc in docs:
        assert doc["schema_version"] == RECOMMENDATION_SCHEMA_VERSION
        assert_valid(RECOMMENDATION, doc)


def test_fallback_records_match_the_published_schema_exactly() -> None:
    recommender = FallbackRecommender(ItemTitles(stove="Camp stove"))
    empty = recommender.recommend(UPDATES[:1], model_name="nextaction", top_k=3, now_ms=NOW)
    recommender.learn(None, [WindowEvent(f"h{i}", item, "view", NOW - i) for i, item in enumerate("ab" * 3)])
    recommender.learn(None, list(WINDOW))
    learned = recommender.recommend(UPDATES, model_name="nextaction", top_k=3, now_ms=NOW)
    docs = [orjson.loads(encode_recommendation(record)) for record in [*empty, *learned]]
    assert docs[0]["items"] == [] and all(doc["items"] for doc in docs[1:])
    reasons = {item["explanation"]["reason"] for doc in docs for item in doc["items"]}
    assert reasons == {"sequence_pattern", "popular_now"}
    for doc in docs:
        assert_valid(RECOMMENDATION, doc)


def test_the_schema_refuses_records_that_break_the_contract() -> None:
    [good, _] = published(model_output(described=True), RerankPolicy(diversity=0.0, exploration_slots=0))
    broken = [copy.deepcopy(good) for _ in range(5)]
    del broken[0]["schema_version"]
    broken[1]["source"] = "fallback"  # a fallback record has no model version and fallback items
    broken[2]["items"][0]["explanation"]["events"][0]["signal"] = "hunch"
    broken[3]["items"][0]["rank"] = 0
    broken[4]["items"][0]["surprise"] = 1
    for doc in broken:
        assert not RECOMMENDATION.is_valid(doc)
    # Consumers of 1.x read a later minor with fields added: the published schema accepts it.
    newer = {**broken[4], "schema_version": "1.7"}
    assert Draft202012Validator(published_schema("recommendation")).is_valid(newer)


def test_schema_enums_and_version_are_the_codes() -> None:
    schema = published_schema("recommendation")
    defs = schema["$defs"]
    assert schema["x-schema-version"] == RECOMMENDATION_SCHEMA_VERSION
    Draft202012Validator.check_schema(schema)
    assert tuple(defs["item"]["properties"]["source"]["enum"]) == get_args(ItemSource)
    assert tuple(defs["explained_event"]["properties"]["signal"]["enum"]) == SIGNAL_KINDS
    assert tuple(defs["explained_event"]["properties"]["action"]["enum"]) == ACTIONS
    reasons = defs["explanation"]["properties"]["reason"]["enum"]
    assert reasons == [*SIGNAL_KINDS, "popular", "overall", "exploration", "cold_start", "popular_now"]
    assert tuple(published_schema("dead-letter")["properties"]["dlq.reason"]["enum"]) == REASONS


@pytest.mark.parametrize("reason", REASONS)
def test_dead_letter_headers_match_the_published_schema(reason: str) -> None:
    error = InvalidEvent(reason, "caf\u00e9\n\x1b[31m" + "x" * 500)  # producer text: escaped and cut
    headers = dead_letter_headers(error, "events", 4, 91822)
    assert_valid(DEAD_LETTER, {name: value.decode() for name, value in headers})


def test_a_dead_letter_without_its_original_says_why() -> None:
    key, value, omitted = dead_letter_copy(b"u1", b"x" * 100, max_bytes=50)
    headers = dead_letter_headers(InvalidEvent("oversized", "too big"), "events", 0, 0)
    headers.append(("dlq.omitted", omitted.encode()))
    assert (key, value) == (None, b"")
    assert_valid(DEAD_LETTER, {name: value.decode() for name, value in headers})
    assert not DEAD_LETTER.is_valid({"dlq.reason": "unknown_field"})
