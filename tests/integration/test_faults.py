"""Bad input and failures inside the worker, against the real broker and Triton: every message
ends as a recommendation's event or a dead letter, and a failed batch is read again."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest

from serving.synthetic import SyntheticConfig, generate_events
from tools.hostile import HOSTILE_KINDS, hostile_message
from tools.polling import wait_until
from tools.replay import event_message
from tools.topic_reader import committed_offsets

pytestmark = pytest.mark.integration

HERE = Path(__file__).parent


def synthetic(users: int, seed: int) -> list[dict[str, Any]]:
    return generate_events(SyntheticConfig(n_users=users, mean_events_per_user=12, seed=seed))


def committed(worker: Any) -> int:
    """The offset the worker's consumer group has committed on its one input partition."""
    settings = worker.settings
    (offset,) = committed_offsets(settings.kafka_bootstrap, settings.app_id, settings.topic_events, 1)
    return offset


def rewinds(worker: Any) -> float:
    """How often the worker read its one input partition again after a stall."""
    topic = worker.settings.topic_events
    return worker.process.metrics()[f'nextaction_partition_rewinds_total{{partition="0",topic="{topic}"}}']


def test_hostile_messages_are_dead_lettered_and_every_users_newest_event_is_recommended_on(
    worker_factory,
) -> None:
    events = synthetic(users=30, seed=31)
    messages = [event_message(event) for event in events]
    expected = Counter()
    for index, kind in enumerate(HOSTILE_KINDS * 2):  # spread over the stream, among valid events
        hostile = hostile_message(kind, events[index * 7], f"hostile-{index}")
        messages.insert(3 + index * 17, (hostile.key, hostile.value))
        expected[hostile.reason] += 1
    reused = {**events[40], "item_id": "not-what-it-was"}  # an event id sent again, other content
    messages.append(event_message(reused))
    expected["conflicting_duplicate"] += 1

    worker = worker_factory().start()
    worker.produce(messages)
    metrics = worker.wait_acknowledged(len(messages))

    dead = worker.read(worker.settings.topic_dead_letter)
    assert Counter(dict(r.headers)["dlq.reason"].decode() for r in dead) == expected
    for record in dead:
        headers = dict(record.headers)
        assert headers["dlq.source.topic"] == worker.settings.topic_events.encode()
        assert int(headers["dlq.source.offset"]) >= 0 and headers["dlq.detail"].isascii()
    records = [orjson.loads(r.value) for r in worker.read(worker.settings.topic_recommendations)]
    triggers = {record["trigger_event_id"] for record in records}
    newest = {event["user_id"]: event["event_id"] for event in events}
    assert set(newest.values()) <= triggers
    for record in records:  # windows never cite a refused event
        cited = {e["event_id"] for item in record["items"] for e in item["explanation"]["events"]}
        assert not any(event_id.startswith("hostile-") for event_id in cited)
    assert metrics["nextaction_batch_failures_total"] == 0
    assert metrics["nextaction_agent_starts_total"] == 1
    assert worker.stop() == 0


def test_a_failed_batch_stops_the_worker_and_its_restart_loses_nothing(
    worker_factory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHONPATH", str(HERE))
    monkeypatch.setenv("FAULTY_WORKER_MARKER", str(tmp_path / "failed-once"))
    events = synthetic(users=40, seed=37)
    failing = worker_factory("failing", module="faulty_worker", batch_max_events=16).start()
    failing.process.wait_assigned()
    failing.produce([event_message(event) for event in events])
    assert failing.process.process is not None
    assert failing.process.process.wait(timeout=120) == 6  # EXIT_STREAM_FAILED
    assert (tmp_path / "failed-once").exists()
    assert "stopping the worker: a batch failed (RuntimeError: injected defect)" in failing.log.read_text()

    # The first batch failed, so nothing was acknowledged: nothing may be committed either. The
    # restart then starts over a full partition with a changelog to restore and no commit, the
    # case where Faust used to drop the events fetched during its recovery.
    assert committed(failing) == 0

    restarted = worker_factory("failing", module="faulty_worker", batch_max_events=16).start()
    restarted.wait_acknowledged(len(events))
    records = restarted.read(restarted.settings.topic_recommendations)
    newest = {event["user_id"]: event["event_id"] for event in events}
    assert set(newest.values()) <= {orjson.loads(r.value)["trigger_event_id"] for r in records}
    assert restarted.stop() == 0


def test_a_partition_whose_deliveries_were_lost_is_read_again_and_committed_to_its_end(
    worker_factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHONPATH", str(HERE))
    monkeypatch.setenv("FAULTY_WORKER_DEFECT", "lose-deliveries")
    lost = range(100, 120)
    monkeypatch.setenv("FAULTY_WORKER_LOST_FROM", str(lost[0]))
    monkeypatch.setenv("FAULTY_WORKER_LOST_TO", str(lost[-1]))
    events = synthetic(users=40, seed=43)
    worker = worker_factory("losing", module="faulty_worker", stall_rewind_after_s=3).start()
    worker.process.wait_assigned()
    worker.produce([event_message(event) for event in events])

    # Without the rewind the commit stays at the first lost offset for good: it passes an
    # offset only once that event is acknowledged, so reaching the end means all were.
    wait_until(lambda: committed(worker) == len(events), timeout_s=120, what="every event committed")
    assert rewinds(worker) >= 1
    assert worker.process.metrics()["nextaction_agent_starts_total"] == 1  # the same worker read again
    assert f"records past the committed offset {lost[0]} and no commit" in worker.log.read_text()
    records = worker.read(worker.settings.topic_recommendations)
    newest = {event["user_id"]: event["event_id"] for event in events}
    assert set(newest.values()) <= {orjson.loads(record.value)["trigger_event_id"] for record in records}
    assert worker.stop() == 0


@pytest.mark.parametrize(
    ("defect", "seed", "stall_rewind_after_s"),
    [
        # The commit of the partition's end never reaches the broker.
        ("lose-commit", 47, 3),
        # It reaches the broker a record each 0.75 s (three minutes for the second half): the
        # group's offset moves all the time, yet stays short. The wait is longer than those
        # steps, and than a batch and a commit take.
        ("creeping-commit", 59, 10),
    ],
)
def test_a_commit_faust_takes_as_done_but_the_broker_lacks_is_noticed_and_committed_to_the_end(
    defect: str, seed: int, stall_rewind_after_s: int, worker_factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    events = synthetic(users=40, seed=seed)
    first, second = events[: len(events) // 2], events[len(events) // 2 :]
    monkeypatch.setenv("PYTHONPATH", str(HERE))
    monkeypatch.setenv("FAULTY_WORKER_DEFECT", defect)
    monkeypatch.setenv("FAULTY_WORKER_LOST_COMMIT", str(len(events)))
    worker = worker_factory(defect, module="faulty_worker", stall_rewind_after_s=stall_rewind_after_s).start()
    worker.process.wait_assigned()

    worker.produce([event_message(event) for event in first])
    wait_until(lambda: committed(worker) == len(first), timeout_s=120, what="the first half committed")
    # Faust takes the end's commit as done, and with no event after it nothing would commit
    # again: only the stall watch's view of the broker notices.
    worker.produce([event_message(event) for event in second])
    wait_until(lambda: committed(worker) == len(events), timeout_s=120, what="every event committed")
    assert rewinds(worker) >= 1
    assert worker.process.metrics()["nextaction_agent_starts_total"] == 1
    told = f"up to what the worker committed) for {stall_rewind_after_s} s: reading again from"
    assert told in worker.log.read_text()
    assert worker.stop() == 0


def test_a_partition_the_fetcher_left_out_is_fetched_again_by_the_stall_watch(
    worker_factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    events = synthetic(users=20, seed=53)
    budget = 64 * 1024
    large = {**events[0], "event_id": "large", "context": {"blob": "x" * (budget * 2)}}
    first = [event_message(large)] + [event_message(event) for event in events[: len(events) // 2]]
    second = [event_message(event) for event in events[len(events) // 2 :]]
    monkeypatch.setenv("PYTHONPATH", str(HERE))
    monkeypatch.setenv("FAULTY_WORKER_DEFECT", "lose-buffer-drops")
    worker = worker_factory(
        "unfetched", module="faulty_worker", stall_rewind_after_s=3, input_buffer_max_bytes=budget
    ).start()
    worker.process.wait_assigned()

    # The large message fills the input buffer, which takes the partition out of the fetch;
    # the word that the buffer has room again is lost, so nothing fetches it again by itself,
    # and the consumer's last fetch may know nothing of the records sent after it.
    worker.produce(first)
    wait_until(lambda: committed(worker) == len(first), timeout_s=120, what="the first part committed")
    worker.produce(second)
    wait_until(
        lambda: committed(worker) == len(first) + len(second), timeout_s=120, what="every event committed"
    )
    assert rewinds(worker) >= 1
    assert worker.process.metrics()["nextaction_agent_starts_total"] == 1
    assert "reading again from" in worker.log.read_text()
    assert "fetch: held back: the input buffer is full" in worker.log.read_text()
    assert worker.stop() == 0


def test_messages_larger_than_the_input_budget_pause_fetching_without_stalling_it(worker_factory) -> None:
    events = synthetic(users=20, seed=41)
    messages = [event_message(event) for event in events]
    budget = 64 * 1024
    for index in range(8):  # each over the whole budget: fetching pauses after every one
        large = {**events[index], "event_id": f"large-{index}", "context": {"blob": "x" * (budget * 2)}}
        messages.insert(5 + index * 20, event_message(large))

    worker = worker_factory(input_buffer_max_bytes=budget).start()
    worker.produce(messages)
    metrics = worker.wait_acknowledged(len(messages))

    dead = worker.read(worker.settings.topic_dead_letter)
    assert Counter(dict(r.headers)["dlq.reason"].decode() for r in dead) == {"oversized": 8}
    records = [orjson.loads(r.value) for r in worker.read(worker.settings.topic_recommendations)]
    newest = {event["user_id"]: event["event_id"] for event in events}
    assert set(newest.values()) <= {record["trigger_event_id"] for record in records}
    assert metrics["nextaction_input_held_bytes"] == 0  # every byte released on acknowledgement
    assert worker.stop() == 0
