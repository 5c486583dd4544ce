"""The agent's hand-offs with the broker and Triton replaced by recording fakes: what a batch
publishes, to whom, and when it is acknowledged."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
import orjson
import pytest
from tritonclient.utils import InferenceServerException

from stream.agents import RecommendAgent
from stream.app import StreamApp
from stream.batches import EventBatch
from stream.inference import VERSION_CHANGED, ModelShape, ScoredBatch, TritonScorer, score_until_answered
from stream.metrics import StreamMetrics
from stream.outputs import OutputPublisher
from stream.records import Window
from stream.settings import Settings

pytestmark = pytest.mark.unit

SETTINGS = Settings(kafka_bootstrap="kafka:9092", triton_grpc_url="triton:8001", published_top_k=2)
TS = 1_700_000_000_000


def in_event_loop(scenario: Callable[[], Coroutine[Any, Any, None]]) -> Callable[[], None]:
    @functools.wraps(scenario)
    def test() -> None:
        asyncio.run(scenario())

    return test


@dataclass
class Message:
    key: bytes | None
    value: bytes
    offset: int
    topic: str = "events"
    partition: int = 0
    timestamp: float = TS / 1000


@dataclass
class Event:
    message: Message
    acked: list[int]

    @property
    def value(self) -> bytes:
        return self.message.value

    def ack(self) -> None:
        self.acked.append(self.message.offset)


@dataclass
class Producer:
    """Records each send; deliveries complete only when the test says so."""

    sent: list[tuple[str, bytes | None, bytes | None, Any]] = field(default_factory=list)
    pending: list[asyncio.Future[None]] = field(default_factory=list)

    async def send(
        self, topic: str, key: bytes | None, value: bytes | None, *rest: Any
    ) -> asyncio.Future[None]:
        self.sent.append((topic, key, value, rest[-1]))
        self.pending.append(asyncio.get_running_loop().create_future())
        return self.pending[-1]

    def deliver(self) -> None:
        for future in self.pending:
            if not future.done():
                future.set_result(None)


class Windows(dict[str, Window]):
    def get(self, user_id: str) -> Window:  # type: ignore[override]
        return super().get(user_id, ())

    def put(self, user_id: str, window: Window, source: object) -> None:
        self[user_id] = window


class Scorer:
    """Names each window's items after the window's newest event, so a record carrying another
    user's items shows."""

    async def score(self, windows: Sequence[Window]) -> ScoredBatch:
        items = [[f"after-{window[-1].event_id}-{k}" for k in range(3)] for window in windows]
        weights = np.zeros((len(windows), 3, 50), dtype=np.float32)
        weights[:, :, -1] = 1.0
        scores = np.tile(np.array([0.5, 0.3, 0.2], dtype=np.float32), (len(windows), 1))
        return ScoredBatch("7", items, scores, weights)


def agent_with(producer: Producer) -> tuple[RecommendAgent, StreamMetrics, Windows]:
    app = cast(Any, type("App", (), {"producer": producer})())
    metrics, windows = StreamMetrics.create(), Windows()
    parts = StreamApp(
        app=app,
        topics=cast(Any, None),
        windows=cast(Any, windows),
        scorer=cast(Any, Scorer()),
        outputs=OutputPublisher(app, SETTINGS),
        metrics=metrics,
    )
    return RecommendAgent(parts, SETTINGS), metrics, windows


def events(docs: Sequence[dict[str, Any] | bytes], acked: list[int], start: int = 0) -> EventBatch:
    batch = []
    for offset, doc in enumerate(docs, start=start):
        raw = doc if isinstance(doc, bytes) else orjson.dumps(doc)
        key = b"u1" if isinstance(doc, bytes) else str(doc["user_id"]).encode()
        batch.append(Event(Message(key, raw, offset), acked))
    return EventBatch(cast(Any, batch))


def event(event_id: str, user_id: str, ts: int) -> dict[str, Any]:
    return {"event_id": event_id, "user_id": user_id, "item_id": "i1", "action": "view", "ts": TS + ts}


@in_event_loop
async def test_a_batch_recommends_once_per_user_from_that_users_window_and_dead_letters_the_rest() -> None:
    producer, acked = Producer(), []
    agent, metrics, windows = agent_with(producer)
    taken = events(
        [
            event("a1", "ann", 1),
            b"not json",
            event("b1", "bob", 2),
            event("a2", "ann", 3),
            event("c1", "cy", 4),
        ],
        acked,
    )
    batch = await agent.prepare(taken)
    completing = asyncio.ensure_future(agent.complete(batch, None))
    await asyncio.sleep(0.01)
    producer.deliver()
    await completing

    dead = [send for send in producer.sent if send[0] == SETTINGS.topic_dead_letter]
    assert [(key, value) for _, key, value, _ in dead] == [(b"u1", b"not json")]
    assert dict(dead[0][3])["dlq.reason"] == b"not_json"
    records = [
        orjson.loads(value) for topic, _, value, _ in producer.sent if topic == SETTINGS.topic_recommendations
    ]
    assert [(r["user_id"], r["trigger_event_id"]) for r in records] == [
        ("ann", "a2"),
        ("bob", "b1"),
        ("cy", "c1"),
    ]
    for record in records:  # the items scored for this user's own window, and no one else's
        assert [item["item_id"] for item in record["items"]] == [
            f"after-{record['trigger_event_id']}-{k}" for k in range(SETTINGS.published_top_k)
        ]
        assert record["model_version"] == "7"
    assert [e.event_id for e in windows["ann"]] == ["a1", "a2"]
    assert metrics.events_invalid.labels(reason="not_json")._value.get() == 1


@in_event_loop
async def test_a_batch_is_acknowledged_only_once_every_record_is_delivered() -> None:
    producer, acked = Producer(), []
    agent, metrics, _ = agent_with(producer)
    taken = events([event("a1", "ann", 1), b"{}", event("b1", "bob", 2)], acked)
    completing = asyncio.ensure_future(agent.complete(await agent.prepare(taken), None))
    await asyncio.sleep(0.01)
    assert not completing.done() and acked == []
    assert metrics.events_acknowledged._value.get() == 0
    producer.deliver()
    await completing
    assert sorted(acked) == [0, 1, 2]  # the dead-lettered event too
    assert metrics.events_acknowledged._value.get() == 3


@in_event_loop
async def test_a_batch_publishes_only_after_the_batch_before_it() -> None:
    producer, acked = Producer(), []
    agent, _, _ = agent_with(producer)
    first = await agent.prepare(events([event("a1", "ann", 1)], acked))
    second = await agent.prepare(events([event("a2", "ann", 2)], acked, start=1))
    gate: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    later = asyncio.ensure_future(agent.complete(second, gate))
    await asyncio.sleep(0.01)
    assert producer.sent == []  # scored, but waiting for the batch before it
    earlier = asyncio.ensure_future(agent.complete(first, None))
    await asyncio.sleep(0.01)
    producer.deliver()
    await earlier
    gate.set_result(None)
    await asyncio.sleep(0.01)
    producer.deliver()
    await later
    triggers = [orjson.loads(value)["trigger_event_id"] for _, _, value, _ in producer.sent]
    assert triggers == ["a1", "a2"] and acked == [0, 1]


@in_event_loop
async def test_a_batch_split_between_two_versions_by_a_roll_out_is_scored_again() -> None:
    scorer = TritonScorer("triton:8001", "nextaction", timeout_s=1, max_in_flight=2)
    scorer.shape = ModelShape(window=50, served_top_k=3, max_batch_size=1, instances=2)
    answers = iter(["1", "2", "2", "2"])  # the first call's two requests straddle the roll-out

    async def chunk(windows: Sequence[Window]) -> ScoredBatch:
        return ScoredBatch(
            next(answers), [["x"] * 3], np.ones((1, 3), np.float32), np.zeros((1, 3, 50), np.float32)
        )

    scorer._score_chunk = chunk  # type: ignore[method-assign]
    window = cast(Window, ())
    with pytest.raises(InferenceServerException) as split:
        await scorer.score([window, window])
    assert split.value.status() == VERSION_CHANGED
    metrics = StreamMetrics.create()
    answers = iter(["1", "2", "2", "2"])
    scored = await score_until_answered(scorer, [window, window], metrics)
    assert scored.model_version == "2" and len(scored) == 2
    assert metrics.triton_errors.labels(status=VERSION_CHANGED)._value.get() == 1
