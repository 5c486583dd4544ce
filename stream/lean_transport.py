"""The Faust transport the worker runs on: Faust's aiokafka driver with a lean delivery loop.

Faust's stock consumer hands every fetched record to the streams through
``Service.wait_first(callback(message), suspend_flow.wait())``, which creates four asyncio
tasks and an ``asyncio.wait`` per record so that a rebalance can interrupt a delivery blocked
on a full buffer: that alone bounded a do-nothing agent's throughput
(docs/2026-11-stream-performance.md). This consumer awaits the delivery directly while the
flow runs, and keeps the stock interruptible wait whenever the flow is suspended (a
rebalance or shutdown is under way).
Everything else (offset tracking, gaps, commits) is the stock loop.

It also rewinds partitions that have no committed offset. After a rebalance or a table
recovery Faust drops the events it fetched meanwhile and seeks every partition to its
committed offset to read them again; aiokafka's ``seek_to_committed`` leaves a partition with
no commit (or a commit of 0) where it is, so those events were never read again. That is the
case of a new consumer group, and of a worker restarted after one that stopped before its
first commit: its replacement sat idle over a full partition.

It can also be told to read a partition again from an offset (:meth:`LeanConsumer.request_rewind`),
which the worker's stall watch does when a partition's backlog waits with no commit, and it reads
the group's committed offsets as the broker holds them (:meth:`LeanConsumer.broker_offsets`):
Faust records an offset as committed whatever the commit's outcome, so its own record cannot
tell a stalled commit.

Its producer is idempotent whenever it waits for all in-sync replicas (``acks=all``): a send
that the client retries after a lost answer is then written once and in order.

The app selects a transport by URL scheme: :func:`stream.transports.faust_broker_url`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar, Final, cast

from aiokafka import TopicPartition
from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP, ProducerT, ServiceT
from mode import Service

from stream.stall_watch import BrokerOffsets

__all__ = ["IdempotentProducer", "LeanConsumer", "LeanConsumerThread", "LeanTransport"]

_ACKS_ALL: Final = -1  # Faust's number for acks=all

# Let other tasks run after this many records of one fetch (the stock loop's value).
_YIELD_EVERY: Final = 100


class LeanConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    """Faust's aiokafka consumer thread, rewinding partitions that were never committed."""

    async def seek_to_committed(self) -> Mapping[TP, int]:
        # Like the stock method, run on the consumer's own thread and event loop.
        return await self.call_thread(self._seek_to_committed_or_reset)

    async def _seek_to_committed_or_reset(self) -> Mapping[TP, int]:
        consumer = self._ensure_consumer()
        committed: Mapping[TopicPartition, int | None] = await consumer.seek_to_committed()
        # Only the streams' partitions: Faust positions changelog partitions itself.
        streams = self.app.topics.acking_topics
        uncommitted = [
            tp for tp, offset in committed.items() if tp.topic in streams and (not offset or offset <= 0)
        ]
        if uncommitted and self.app.conf.consumer_auto_offset_reset == "earliest":
            await consumer.seek_to_beginning(*uncommitted)
        return cast(Mapping[TP, int], committed)

    async def rewind(self, tp: TP, offset: int) -> None:
        """Fetch ``tp`` from ``offset`` on, on the consumer's own thread and event loop."""
        await self.call_thread(self._seek_now, tp, offset)

    async def _seek_now(self, tp: TP, offset: int) -> None:
        self._ensure_consumer().seek(TopicPartition(tp.topic, tp.partition), offset)

    async def broker_offsets(self, partitions: Iterable[TP], timeout_s: float) -> BrokerOffsets:
        """The group's committed offset of each partition (None: none) and its end, read from
        the broker."""
        return await self.call_thread(self._read_broker_offsets, list(partitions), timeout_s)

    async def _read_broker_offsets(self, partitions: list[TP], timeout_s: float) -> BrokerOffsets:
        consumer = self._ensure_consumer()
        # aiokafka retries until the coordinator answers; the time limit applies here, on the
        # thread's own loop, so that a read cannot hold one of the thread's two method workers
        # (which the fetches and commits share) for as long as the broker is away.
        committed, ends = await asyncio.wait_for(
            asyncio.gather(
                asyncio.gather(
                    *(consumer.committed(TopicPartition(tp.topic, tp.partition)) for tp in partitions)
                ),
                self._highwaters(partitions),
                return_exceptions=True,
            ),
            timeout_s,
        )
        if isinstance(committed, BaseException):
            raise committed
        # Ends unknown (a leader moving, say) leave the watch with the consumer's own fetches.
        known_ends = {} if isinstance(ends, BaseException) else dict(ends)
        return BrokerOffsets(dict(zip(partitions, committed, strict=True)), known_ends)


class LeanConsumer(faust_aiokafka.Consumer):
    """Faust's aiokafka consumer, delivering records without a task per record."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._rewinds: dict[TP, int] = {}  # partition -> offset to read again from

    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return LeanConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def broker_offsets(self, partitions: Iterable[TP], timeout_s: float) -> BrokerOffsets:
        """The group's committed offset of each partition as the broker holds it (None: no
        commit yet), and its end: a request per partition and one for the ends;
        ``TimeoutError`` past ``timeout_s``."""
        return await cast(LeanConsumerThread, self._thread).broker_offsets(partitions, timeout_s)

    def held_back(self, tp: TP) -> bool:
        """Faust took ``tp`` out of the fetch when the input buffer was full, and has not put
        it back."""
        return tp in self._buffered_partitions

    def fetch_state(self, tp: TP) -> str:
        """How the fetcher treats ``tp`` now, in words (for the stall watch's log)."""
        if tp in self._paused_partitions:
            state = "paused"
        elif self.held_back(tp):
            state = "held back: the input buffer is full"
        elif tp not in self._get_active_partitions():
            state = "not fetched"
        else:
            state = "fetched"
        return f"{state}, read to {self._read_offset.get(tp)}, highwater {self.highwater(tp)} as last fetched"

    def request_rewind(self, tp: TP, offset: int) -> None:
        """Read ``tp`` again from ``offset``, the group's committed offset (:mod:`stream.stall_watch`).
        The delivery loop seeks between two fetches: a seek while it delivers a fetch's records
        would be undone by the read offsets those records set."""
        self._rewinds[tp] = offset

    async def on_partitions_revoked(self, revoked: set[TP]) -> None:
        self._rewinds.clear()  # the rebalance seeks every partition kept to its committed offset
        await super().on_partitions_revoked(revoked)

    async def _apply_rewinds(self) -> None:
        rewinds, self._rewinds = self._rewinds, {}
        if self.app.rebalancing or self.app.in_recovery:
            return  # asked for before the rebalance began: its own seek stands in for them
        assigned = self.assignment()
        for tp, offset in rewinds.items():
            if tp in assigned:
                await cast(LeanConsumerThread, self._thread).rewind(tp, offset)
                # Records below the read offset are skipped as delivered: it moves back too.
                self._read_offset[tp] = offset or None
                self._restart_acknowledgements(tp, offset)
                self._fetch_again(tp)

    def _fetch_again(self, tp: TP) -> None:
        """A stalled partition may be one the fetcher left out: paused, or held back for a full
        input buffer, and never let go. Neither holds by right here: the watch asks for a
        rewind only while the worker reads (no rebalance, no recovery), and of a partition held
        back only once the input buffer is empty (:class:`stream.monitor.StallRewinder`)."""
        self._buffered_partitions.discard(tp)
        self.resume_partitions([tp])

    def _restart_acknowledgements(self, tp: TP, committed: int) -> None:
        """Faust ignores an acknowledgement below the offset it believes committed, and commits
        only a run of acknowledged offsets that starts there. When that belief ran ahead of the
        broker, the records read again would be ignored and the commit would wait for good:
        the bookkeeping of ``tp`` starts over at the broker's committed offset."""
        self._committed_offset[tp] = committed
        self._acked.pop(tp, None)
        self._acked_index.pop(tp, None)
        self._gap.pop(tp, None)
        # Acknowledged below the old belief, so never taken off the set, and never will be.
        for message in [message for message in self._unacked_messages if message.tp == tp and message.acked]:
            self._unacked_messages.discard(message)

    async def _drain_messages(self, fetcher: ServiceT) -> None:
        callback = self.callback
        getmany = self.getmany
        consumer_should_stop = cast(Service, self)._stopped.is_set
        fetcher_should_stop = cast(Service, fetcher)._stopped.is_set
        flow_suspended = self.suspend_flow.is_set
        get_read_offset = self._read_offset.__getitem__
        set_read_offset = self._read_offset.__setitem__
        acks_enabled_for = self.app.topics.acks_enabled_for
        commit_every = self._commit_every
        since_yield = 0
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                if self._rewinds:
                    await self._apply_rewinds()
                self.diag.set_flag(CONSUMER_FETCHING)
                records = getmany(timeout=1.0)
                await self.sleep(0)
                if self.should_stop:
                    continue
                async for tp, message in records:
                    since_yield += 1
                    if since_yield > _YIELD_EVERY:
                        await asyncio.sleep(0)
                        since_yield = 0
                    offset = message.offset
                    read_offset = get_read_offset(tp)
                    if read_offset is not None and offset < read_offset:
                        continue  # already delivered (a re-fetch after a seek)
                    if read_offset and offset - read_offset > 1 and acks_enabled_for(message.topic):
                        await self._add_gap(tp, read_offset + 1, offset)
                    if commit_every is not None and self._n_acked >= commit_every:
                        self._n_acked = 0
                        await self.commit()
                    if flow_suspended():
                        await self.wait_first(callback(message), self.suspend_flow.wait())
                    else:
                        await callback(message)
                    set_read_offset(tp, offset)
                self.diag.unset_flag(CONSUMER_FETCHING)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                self.log.info("Broker stopped consumer, shutting down...")
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                self.log.info("Consumer shutting down for user cancel.")
                return
            raise
        finally:
            self.diag.unset_flag(CONSUMER_FETCHING)


class IdempotentProducer(faust_aiokafka.Producer):
    """Faust's aiokafka producer, idempotent when it sends with ``acks=all``."""

    def _settings_extra(self) -> Mapping[str, Any]:
        extra = dict(super()._settings_extra())
        if self.acks == _ACKS_ALL:
            extra["enable_idempotence"] = True
        return extra


class LeanTransport(faust_aiokafka.Transport):
    """Faust's aiokafka transport with :class:`LeanConsumer` and :class:`IdempotentProducer`."""

    Consumer = LeanConsumer
    Producer: ClassVar[type[ProducerT]] = IdempotentProducer
