"""The agent's hand-offs with the broker and Triton replaced by recording fakes: what a batch
publishes, to whom, and when it is acknowledged."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, cast

import numpy as np
import orjson
import pytest
from mode.utils.queues import FlowControlEvent
from tritonclient.utils import InferenceServerException

from stream.agents import RecommendAgent
from stream.app import StreamApp
from stream.batches import EventBatch
from stream.circuit import CircuitBreaker
from stream.health import Health
from stream.inference import VERSION_CHANGED, ModelShape, TritonScorer
from stream.input_queue import InputQueue
from stream.metrics import StreamMetrics
from stream.monitor import ConsumerLag
from stream.outputs import OutputPublisher
from stream.records import Window
from stream.scored_batch import MALFORMED_RESPONSE, ScoredBatch, checked_response
from stream.settings import Settings
from stream.triton_retries import score_until_answered
from tools.hostile import hostile_message

pytestmark = pytest.mark.unit

SETTINGS = Settings(kafka_bootstrap="kafka:9092", triton_grpc_url="triton:8001", published_top_k=2)
TS = 1_700_000_000_000


def waiting_forever() -> CircuitBreaker:
    """The circuit of a worker without a fallback: it never opens."""
    return CircuitBreaker(math.inf, 1.0)


@dataclass(eq=False)
class Message:
    key: bytes | None
    value: bytes
    offset: int
    topic: str = "events"
    partition: int = 0
    timestamp: float = TS / 1000
    generation_id: int = 0
    tracked: bool = False
    acked: bool = False

    @property
    def serialized_key_size(self) -> int:
        return len(self.key or b"")

    @property
    def serialized_value_size(self) -> int:
        return len(self.value or b"")


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
    """Window writes whose changelog deliveries succeed, or fail with ``refusal``."""

    refusal: BaseException | None = None

    def get(self, user_id: str, source: object = None) -> Window:  # type: ignore[override]
        return super().get(user_id, ())

    async def put(self, user_id: str, window: Window, source: object) -> asyncio.Future[None]:
        self[user_id] = window
        delivered = asyncio.get_running_loop().create_future()
        if self.refusal is None:
            delivered.set_result(None)
        else:
            delivered.set_exception(self.refusal)
        return delivered

    async def evict_idle(self, partitions: set[int]) -> list[asyncio.Future[None]]:
        return []


class Scorer:
    """Names each window's items after the window's newest event, so a record carrying another
    user's items shows."""

    async def score(self, windows: Sequence[Window]) -> ScoredBatch:
        items = [[f"after-{window[-1].event_id}-{k}" for k in range(3)] for window in windows]
        weights = np.zeros((len(windows), 3, 50), dtype=np.float32)
        weights[:, :, -1] = 1.0
        scores = np.tile(np.array([0.5, 0.3, 0.2], dtype=np.float32), (len(windows), 1))
        return ScoredBatch("7", items, scores, weights)


class Failure:
    """Records each worker stop that a failed batch asks for (the real one also stops it)."""

    def __init__(self) -> None:
        self.reasons: list[BaseException] = []

    @property
    def reason(self) -> BaseException | None:
        return self.reasons[0] if self.reasons else None

    def stop_worker(self, reason: BaseException) -> None:
        self.reasons.append(reason)


def agent_with(
    producer: Producer,
    scorer: object | None = None,
    failure: Failure | None = None,
    settings: Settings = SETTINGS,
) -> tuple[RecommendAgent, StreamMetrics, Windows]:
    app = cast(Any, type("App", (), {"producer": producer})())
    metrics, windows = StreamMetrics.create(), Windows()
    failure = failure or Failure()
    parts = StreamApp(
        app=app,
        topics=cast(Any, None),
        windows=cast(Any, windows),
        scorer=cast(Any, scorer or Scorer()),
        outputs=OutputPublisher(app, settings),
        metrics=metrics,
        health=Health(cast(Any, failure), stale_after_s=30),
        lag=ConsumerLag(metrics.consumer_lag, "events"),
        rewinder=None,
        failure=cast(Any, failure),
    )
    return RecommendAgent(parts, settings), metrics, windows


def events(docs: Sequence[dict[str, Any] | bytes], acked: list[int], start: int = 0) -> EventBatch:
    batch = []
    for offset, doc in enumerate(docs, start=start):
        raw = doc if isinstance(doc, bytes) else orjson.dumps(doc)
        key = b"u1" if isinstance(doc, bytes) else str(doc["user_id"]).encode()
        batch.append(Event(Message(key, raw, offset), acked))
    queue: InputQueue[Any] = InputQueue(len(batch) + 1, max_bytes=1 << 20, flow_control=FlowControlEvent())
    for event in batch:
        queue.put_nowait(event)
        queue.get_nowait()  # taken, held until acknowledged
    return EventBatch(cast(Any, batch), queue)


def event(event_id: str, user_id: str, ts: int) -> dict[str, Any]:
    return {"event_id": event_id, "user_id": user_id, "item_id": "i1", "action": "view", "ts": TS + ts}


async def test_a_batch_recommends_once_per_user_from_that_users_window_and_dead_letters_the_rest() -> None:
    producer, acked = Producer(), []
    agent, metrics, windows = agent_with(producer)
    taken = events(
        [
            event("a1", "ann", 1),
            b"not json",
            event("b1", "bob", 2),
            event("a2", "ann", 3),
            {**event("c1", "cy", 4), "price": 3},  # a field the worker does not know: ignored
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
    assert metrics.events_with_unknown_fields._value.get() == 1


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
    scored = await score_until_answered(
        scorer, [window, window], metrics, refusal_limit_s=30, circuit=waiting_forever()
    )
    assert scored.model_version == "2" and len(scored) == 2
    assert metrics.triton_errors.labels(status=VERSION_CHANGED)._value.get() == 1


async def run_batch(agent: RecommendAgent, producer: Producer, taken: EventBatch) -> None:
    completing = asyncio.ensure_future(agent.complete(await agent.prepare(taken), None))
    await asyncio.sleep(0.01)
    producer.deliver()
    await completing


def dead_letters(producer: Producer) -> list[tuple[bytes | None, bytes | None, dict[str, bytes]]]:
    return [
        (key, value, dict(headers)) for topic, key, value, headers in producer.sent if topic == "events.dlq"
    ]


async def test_hostile_messages_are_dead_lettered_with_their_coordinates_and_the_batch_goes_on() -> None:
    producer, acked = Producer(), []
    agent, metrics, windows = agent_with(producer)
    deep = hostile_message("deep_arrays", event("x", "ann", 0), "x").value
    taken = events([event("a1", "ann", 1), deep, event("a2", "ann", 2)], acked)
    taken.events[1].message.key = None
    taken.events.append(Event(Message(None, cast(bytes, None), 3), acked))  # null key, null value
    await run_batch(agent, producer, taken)

    reasons = [
        (key, value, headers["dlq.reason"], headers["dlq.source.offset"])
        for key, value, headers in dead_letters(producer)
    ]
    assert reasons == [(None, deep, b"bad_context", b"1"), (None, b"", b"not_json", b"3")]
    assert dead_letters(producer)[1][2]["dlq.omitted"] == b"the original had neither key nor value"
    assert [e.event_id for e in windows["ann"]] == ["a1", "a2"]
    assert sorted(acked) == [0, 1, 2, 3]
    assert metrics.events_invalid.labels(reason="bad_context")._value.get() == 1


async def test_an_event_dated_ahead_of_its_record_cannot_take_over_the_window() -> None:
    producer, acked = Producer(), []
    agent, _, windows = agent_with(producer)
    year_2096 = 4_000_000_000_000 - TS
    await run_batch(
        agent, producer, events([event("a1", "ann", 1), event("future", "ann", year_2096)], acked)
    )
    await run_batch(agent, producer, events([event("a2", "ann", 2)], acked, start=2))
    assert [headers["dlq.reason"] for *_, headers in dead_letters(producer)] == [b"future_timestamp"]
    assert [e.event_id for e in windows["ann"]] == ["a1", "a2"]


async def test_an_event_id_reused_with_other_content_is_dead_lettered() -> None:
    producer, acked = Producer(), []
    agent, _, windows = agent_with(producer)
    first = event("a1", "ann", 1)
    await run_batch(agent, producer, events([first], acked))
    await run_batch(agent, producer, events([first, {**first, "item_id": "other"}], acked, start=1))
    assert [headers["dlq.reason"] for *_, headers in dead_letters(producer)] == [b"conflicting_duplicate"]
    assert [(e.event_id, e.item_id) for e in windows["ann"]] == [("a1", "i1")]
    assert sorted(acked) == [0, 1, 2]


async def test_a_dead_letter_too_large_to_forward_goes_out_without_its_bytes() -> None:
    producer, acked = Producer(), []
    agent, _, _ = agent_with(
        producer, settings=SETTINGS.model_copy(update={"dead_letter_max_copy_bytes": 100})
    )
    await run_batch(agent, producer, events([b"x" * 5000], acked))
    [(key, value, headers)] = dead_letters(producer)
    assert (key, value, headers["dlq.reason"]) == (None, b"", b"oversized")
    assert b"5002 bytes" in headers["dlq.omitted"]


class BrokenScorer(Scorer):
    async def score(self, windows: Sequence[Window]) -> ScoredBatch:
        raise RuntimeError("a defect in scoring")


class Stream:
    """What ``EventReader`` reads of an agent's stream: the channel's queue and the app."""

    def __init__(self, batch: EventBatch) -> None:
        self.channel = SimpleNamespace(
            queue=InputQueue(0, max_bytes=1 << 20, flow_control=FlowControlEvent())
        )
        for queued in batch.events:
            self.channel.queue.put_nowait(queued)
        self.app = SimpleNamespace(
            consumer=SimpleNamespace(unacked=set()),
            topics=SimpleNamespace(acking_topics={"events"}),
            flow_control=SimpleNamespace(is_active=lambda: True, _queues=set()),
            consumer_generation_id=0,
        )


async def test_a_failed_batch_stops_the_worker_at_once_without_acknowledging_anything() -> None:
    producer, acked, failure = Producer(), [], Failure()
    scorer = BrokenScorer()
    scorer.start = lambda timeout: asyncio.sleep(0)  # type: ignore[attr-defined]
    agent, metrics, _ = agent_with(producer, scorer=scorer, failure=failure)
    stream = Stream(events([event("a1", "ann", 1), b"bad"], acked))
    running = asyncio.ensure_future(agent.run(cast(Any, stream)))
    for _ in range(100):  # no later event arrives: the failure must not wait for one
        producer.deliver()
        await asyncio.sleep(0.01)
        if failure.reasons:
            break
    running.cancel()
    assert [str(reason) for reason in failure.reasons] == ["a defect in scoring"]
    assert acked == []
    # Released, so that the shutdown does not wait for them; their offsets stay uncommitted.
    assert stream.app.consumer.unacked == set()
    assert metrics.batch_failures._value.get() == 1 and metrics.events_acknowledged._value.get() == 0


def refusing_scorer(statuses: list[str]) -> tuple[TritonScorer, list[str]]:
    """A scorer whose calls fail with ``statuses`` in turn, then answer; logs shape re-reads."""
    scorer = TritonScorer("triton:8001", "nextaction", timeout_s=1, max_in_flight=1)
    scorer.shape = ModelShape(window=50, served_top_k=3, max_batch_size=8)
    calls: list[str] = []
    pending = iter(statuses)

    async def score(windows: Sequence[Window]) -> ScoredBatch:
        calls.append("score")
        status = next(pending, None)
        if status is not None:
            raise InferenceServerException(msg="no", status=status)
        return ScoredBatch("1", [["x"] * 3], np.ones((1, 3), np.float32), np.zeros((1, 3, 50), np.float32))

    async def refresh_shape() -> ModelShape:
        calls.append("refresh")
        return ModelShape(window=50, served_top_k=3, max_batch_size=8)

    scorer.score = score  # type: ignore[method-assign]
    scorer.refresh_shape = refresh_shape  # type: ignore[method-assign]
    return scorer, calls


async def test_transient_failures_are_retried_and_refusals_re_read_the_models_shape() -> None:
    scorer, calls = refusing_scorer(["StatusCode.UNAVAILABLE", "StatusCode.INVALID_ARGUMENT"])
    scored = await score_until_answered(
        scorer, [cast(Window, ())], StreamMetrics.create(), refusal_limit_s=30, circuit=waiting_forever()
    )
    assert scored is not None
    assert len(scored) == 1
    assert calls == ["score", "score", "refresh", "score"]


async def test_refusals_that_last_fail_the_batch_instead_of_stalling_the_stream() -> None:
    scorer, calls = refusing_scorer(["StatusCode.INVALID_ARGUMENT"] * 100)
    with pytest.raises(InferenceServerException):
        await score_until_answered(
            scorer, [cast(Window, ())], StreamMetrics.create(), refusal_limit_s=0.5, circuit=waiting_forever()
        )
    assert 2 <= calls.count("refresh") < 10


def test_a_response_that_does_not_fit_its_request_is_refused() -> None:
    items = ["a", "b", "c", "d"]
    good = checked_response(2, "1", items, np.ones((2, 2), np.float32), np.zeros((2, 2, 5), np.float32))
    assert good.items == [["a", "b"], ["c", "d"]]
    for rows, scores, attributions, names in [
        (3, (2, 2), (2, 2, 5), items),  # fewer rows than windows
        (2, (2, 2), (2, 3, 5), items),  # attributions for another top-k
        (2, (2, 3), (2, 3, 5), items),  # items for another top-k
    ]:
        with pytest.raises(InferenceServerException) as refused:
            checked_response(
                rows, "1", names, np.ones(scores, np.float32), np.zeros(attributions, np.float32)
            )
        assert refused.value.status() == MALFORMED_RESPONSE


class OutageScorer(Scorer):
    """Answers like :class:`Scorer`, or, while ``down``, as a Triton that is out."""

    def __init__(self) -> None:
        self.down = True
        self.calls = 0

    async def score(self, windows: Sequence[Window]) -> ScoredBatch:
        self.calls += 1
        if self.down:
            raise InferenceServerException(msg="connection refused", status="StatusCode.UNAVAILABLE")
        return await super().score(windows)


async def published(agent: RecommendAgent, producer: Producer, taken: EventBatch) -> list[dict[str, Any]]:
    completing = asyncio.ensure_future(agent.complete(await agent.prepare(taken), None))
    while not completing.done():
        producer.deliver()
        await asyncio.sleep(0.005)
    await completing
    records = [
        orjson.loads(value) for topic, _, value, _ in producer.sent if topic == SETTINGS.topic_recommendations
    ]
    producer.sent.clear()
    return records


async def test_while_triton_is_out_users_get_the_fallback_and_the_model_once_it_returns() -> None:
    producer, acked, scorer = Producer(), [], OutageScorer()
    settings = SETTINGS.model_copy(update={"triton_outage_after_s": 0.0, "triton_probe_interval_s": 0.05})
    agent, metrics, _ = agent_with(producer, scorer, settings=settings)
    history = [
        {**event(f"a{n}", "ann", n), "item_id": item} for n, item in enumerate(["tent", "stove", "tent"])
    ]
    await published(agent, producer, events(history, acked))
    (record,) = await published(
        agent, producer, events([{**event("b1", "bob", 9), "item_id": "tent"}], acked, 3)
    )
    assert record["source"] == "fallback" and record["model_version"] is None
    assert record["items"][0]["item_id"] == "stove"  # it followed "tent" in ann's history
    assert acked == [0, 1, 2, 3] and metrics.triton_circuit_open._value.get() == 1
    assert metrics.fallback_recommendations._value.get() == 2
    calls = scorer.calls
    (record,) = await published(agent, producer, events([event("c1", "cy", 10)], acked, 4))
    assert record["source"] == "fallback" and scorer.calls == calls  # no call before the probe is due

    scorer.down = False
    await asyncio.sleep(0.06)
    (record,) = await published(agent, producer, events([event("c2", "cy", 11)], acked, 5))
    assert record["source"] == "model" and record["model_version"] == "7"
    assert metrics.triton_circuit_open._value.get() == 0 and acked == [0, 1, 2, 3, 4, 5]


async def test_without_the_fallback_a_batch_waits_for_triton_unacknowledged() -> None:
    producer, acked, scorer = Producer(), [], OutageScorer()
    settings = SETTINGS.model_copy(update={"fallback_enabled": False, "triton_outage_after_s": 0.0})
    agent, metrics, _ = agent_with(producer, scorer, settings=settings)
    completing = asyncio.ensure_future(
        agent.complete(await agent.prepare(events([event("a1", "ann", 1)], acked)), None)
    )
    await asyncio.sleep(0.5)
    assert not completing.done() and acked == [] and scorer.calls >= 3
    assert metrics.triton_circuit_open._value.get() == 0
    scorer.down = False
    while not completing.done():
        producer.deliver()
        await asyncio.sleep(0.01)
    await completing
    (_, _, value, _) = producer.sent[0]
    assert orjson.loads(value)["source"] == "model" and acked == [0]


async def test_a_window_write_the_changelog_refuses_fails_the_batch_unacknowledged() -> None:
    producer, acked = Producer(), []
    agent, metrics, windows = agent_with(producer)
    windows.refusal = RuntimeError("NotEnoughReplicas")
    completing = asyncio.ensure_future(
        agent.complete(await agent.prepare(events([event("a1", "ann", 1)], acked)), None)
    )
    await asyncio.sleep(0.01)
    producer.deliver()  # the recommendation is delivered, the window's changelog write is not
    with pytest.raises(RuntimeError, match="NotEnoughReplicas"):
        await completing
    assert acked == [] and metrics.events_acknowledged._value.get() == 0
