"""A Faust transport for the embedded Tansu broker: exact table recovery, prompt fetches.

1. Faust restores a table by replaying its changelog up to the partition's end offset, which
   it reads with ListOffsets(latest). Tansu answers that with the base offset of the
   partition's last record batch + 1, so a restarted worker stops inside the last batch and
   silently loses the rest of it. The high watermark that every Fetch response carries is
   right, so this transport takes partition ends from a Fetch instead.
2. Tansu holds a long-poll Fetch for its whole max wait even when records arrive meanwhile,
   so Faust's fixed 1,500 ms wait becomes the stream's latency. This transport's consumer
   waits ``TansuTransport.fetch_max_wait_ms`` (NEXTACTION_TANSU_FETCH_MAX_WAIT_MS). But Tansu
   also looks a fetch's records up within that wait, and answers with none when the lookup
   outlasts it, which it does more the further into a partition the fetch starts (a 20 ms
   wait got nothing at offset 687,400 of a 1.3-million-record partition in memory storage,
   for ever; 100 ms did; S3 storage needs about 500 ms from the start). So the wait adapts:
   :class:`FetchWaitAdapter`.
3. Tansu numbers a new group's first generation 0, which aiokafka takes for "not a member"
   and so sends no LeaveGroup when the consumer closes. The stopped worker then stays in the
   group until its session times out, and a worker started meanwhile is rebalanced twice
   under the same generation number, after which Faust was seen to sit idle. This
   transport's consumer leaves from generation 0 on.

4. Tansu refuses InitProducerId, so its producer is not idempotent (``acks=all`` still holds).
Apache Kafka needs none of these; there :mod:`stream.lean_transport` runs, which this one
extends. The app selects a transport by URL scheme: :func:`stream.transports.faust_broker_url`.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar, Final, cast

from aiokafka import AIOKafkaClient, AIOKafkaConsumer, TopicPartition
from aiokafka.consumer.group_coordinator import GroupCoordinator
from aiokafka.errors import KafkaError, LeaderNotAvailableError, for_code
from aiokafka.protocol.fetch import FetchRequest
from aiokafka.protocol.group import LeaveGroupRequest
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP, ProducerT

from stream.lean_transport import LeanConsumer, LeanConsumerThread, LeanTransport

__all__ = ["FetchWaitAdapter", "TansuTransport", "fetch_highwaters"]

log = logging.getLogger(__name__)

# Tansu answers a Fetch with max_wait 0 without any partition (so without a highwater); with
# min_bytes 0 a few milliseconds of allowed wait still return at once.
_FETCH_MAX_WAIT_MS: Final = 10
# We want the highwater, not records: brokers still return at least one batch if there is one.
_FETCH_MAX_BYTES: Final = 1
_READ_UNCOMMITTED: Final = 0
# The longest a consumer's adapted fetch wait grows to: above S3 storage's ~500 ms, and far
# below the session timeout.
_FETCH_WAIT_CEILING_MS: Final = 2000


async def fetch_highwaters(
    consumer: AIOKafkaConsumer, partitions: Iterable[TopicPartition]
) -> dict[TopicPartition, int]:
    """The end offset of each partition, from the high watermark of a Fetch response.

    Errors are raised, never papered over: a wrong end offset would lose table state silently.
    """
    # ListOffsets' answer is never past the end, so a Fetch from there returns at most the
    # partition's last batch (brokers send one even when it exceeds max_bytes).
    offsets = await consumer.end_offsets(list(partitions))
    # aiokafka has no public call for a raw request; Faust's own driver uses _client as well.
    client: AIOKafkaClient = consumer._client
    by_leader: defaultdict[int, list[tuple[TopicPartition, int]]] = defaultdict(list)
    for tp, offset in offsets.items():
        leader = client.cluster.leader_for_partition(tp)
        if leader is None or leader < 0:
            raise LeaderNotAvailableError(f"no leader known for {tp}")
        by_leader[leader].append((tp, offset))
    responses = await asyncio.gather(
        *(client.send(leader, _fetch_request(parts)) for leader, parts in by_leader.items())
    )
    highwaters: dict[TopicPartition, int] = {}
    for response in responses:
        for topic, partition_data in response.topics:
            for partition, error_code, highwater, *_ in partition_data:
                if error_code:
                    raise for_code(error_code)(f"Fetch of {topic}[{partition}] for its highwater")
                highwaters[TopicPartition(topic, partition)] = highwater
    missing = offsets.keys() - highwaters.keys()
    if missing:
        raise KafkaError(f"Fetch responses carried no highwater for {sorted(missing)}")
    return highwaters


def _fetch_request(parts: Iterable[tuple[TopicPartition, int]]) -> FetchRequest:
    by_topic: defaultdict[str, list[tuple[int, int, int]]] = defaultdict(list)
    for tp, offset in parts:
        by_topic[tp.topic].append((tp.partition, offset, _FETCH_MAX_BYTES))
    return FetchRequest(
        _FETCH_MAX_WAIT_MS,
        0,  # min_bytes: answer at once, with or without records
        _FETCH_MAX_BYTES,
        _READ_UNCOMMITTED,
        list(by_topic.items()),
    )


class FetchWaitAdapter:
    """Stands in for a fetcher's client and sets the fetcher's wait from the answers: doubled
    (up to ``ceiling_ms``) after a Fetch that brought no records for a partition whose high
    watermark lies past the fetched offset, eased by a tenth (down to ``floor_ms``) after one
    that brought records. Every other call goes to the client unchanged."""

    def __init__(self, fetcher: Any, floor_ms: int, ceiling_ms: int = _FETCH_WAIT_CEILING_MS) -> None:
        self._fetcher = fetcher
        self._client: AIOKafkaClient = fetcher._client
        self._floor_ms = floor_ms
        self._ceiling_ms = max(floor_ms, ceiling_ms)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    async def send(self, node_id: int, request: Any, *args: Any, **kwargs: Any) -> Any:
        response = await self._client.send(node_id, request, *args, **kwargs)
        if isinstance(request, FetchRequest):
            self.observe(request, response)
        return response

    def observe(self, request: Any, response: Any) -> None:
        offsets = {
            (topic, partition): offset
            for topic, partitions in request.topics
            for partition, offset, *_ in partitions
        }
        starved = fed = False
        for topic, partitions in response.topics:
            for partition, error_code, highwater, *data in partitions:
                if error_code:
                    continue
                if data[-1]:
                    fed = True
                elif highwater > offsets.get((topic, partition), highwater):
                    starved = True
        wait = self._fetcher._fetch_max_wait_ms
        if starved:
            wait = min(self._ceiling_ms, wait * 2)
            if wait != self._fetcher._fetch_max_wait_ms:
                log.info("Tansu fetched nothing short of the partition end: fetch wait now %d ms", wait)
        elif fed:
            wait = max(self._floor_ms, int(wait * 0.9))
        self._fetcher._fetch_max_wait_ms = wait


async def _leave_group(coordinator: GroupCoordinator) -> None:
    """aiokafka's ``GroupCoordinator._maybe_leave_group`` for brokers whose generations start at
    0: leave whenever a generation was joined (aiokafka's "none" is -1), then forget it."""
    if coordinator.generation >= 0 and coordinator._group_instance_id is None:
        try:
            await coordinator._send_req(LeaveGroupRequest(coordinator.group_id, coordinator.member_id))
        except KafkaError as exc:  # best effort, as in aiokafka: the session timeout still applies
            log.error("LeaveGroup request failed: %s", exc)
        else:
            log.info("LeaveGroup request succeeded")
    coordinator.reset_generation()


class _TansuConsumerThread(LeanConsumerThread):
    def _create_worker_consumer(self, transport: faust_aiokafka.Transport) -> AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        # Faust passes a fixed fetch_max_wait_ms=1500; aiokafka reads it when the consumer starts.
        consumer._fetch_max_wait_ms = TansuTransport.fetch_max_wait_ms
        return consumer

    async def on_start(self) -> None:
        await super().on_start()
        consumer = self._ensure_consumer()
        # The coordinator and the fetcher exist once the consumer has started; the coordinator
        # leaves the group on close, and the fetcher looks its client up for every request.
        coordinator = consumer._coordinator
        coordinator._maybe_leave_group = functools.partial(_leave_group, coordinator)
        fetcher = consumer._fetcher
        fetcher._client = FetchWaitAdapter(fetcher, TansuTransport.fetch_max_wait_ms)

    async def _highwaters(self, partitions: list[TP]) -> Mapping[TP, int]:
        # Run on the consumer's own thread and event loop, like the stock method it replaces.
        if self.consumer.in_transaction:
            # Transactional recovery stops at the last stable offset, which aiokafka already
            # keeps from Fetch responses.
            return await super()._highwaters(partitions)
        tps = [TopicPartition(tp.topic, tp.partition) for tp in partitions]
        return cast(Mapping[TP, int], await fetch_highwaters(self._ensure_consumer(), tps))


class TansuConsumer(LeanConsumer):
    """The lean consumer with highwaters from Fetch responses and short fetch waits."""

    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return _TansuConsumerThread(self, loop=self.loop, beacon=self.beacon)


class TansuTransport(LeanTransport):
    """The lean transport with :class:`TansuConsumer` and Faust's own producer."""

    Consumer = TansuConsumer
    Producer: ClassVar[type[ProducerT]] = faust_aiokafka.Producer
    #: Longest a consumer Fetch waits on Tansu, which answers only when it runs out; set from
    #: the settings when the transports are registered (one app per process).
    fetch_max_wait_ms: ClassVar[int] = 20
