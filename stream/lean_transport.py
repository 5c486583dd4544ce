"""The Faust transport the worker runs on: Faust's aiokafka driver with a lean delivery loop.

Faust's stock consumer hands every fetched record to the streams through
``Service.wait_first(callback(message), suspend_flow.wait())``, which creates four asyncio
tasks and an ``asyncio.wait`` per record so that a rebalance can interrupt a delivery blocked
on a full buffer: that alone bounded a do-nothing agent's throughput
(docs/2026-11-stream-performance.md). This consumer awaits the delivery directly while the
flow runs, and keeps the stock interruptible wait whenever the flow is suspended (a
rebalance or shutdown is under way).
Everything else (offset tracking, gaps, commits) is the stock loop.

The app selects a transport by URL scheme: :func:`stream.transports.faust_broker_url`.
"""

from __future__ import annotations

import asyncio
from typing import Final, cast

from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import ServiceT
from mode import Service

__all__ = ["LeanConsumer", "LeanTransport"]

# Let other tasks run after this many records of one fetch (the stock loop's value).
_YIELD_EVERY: Final = 100


class LeanConsumer(faust_aiokafka.Consumer):
    """Faust's aiokafka consumer, delivering records without a task per record."""

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


class LeanTransport(faust_aiokafka.Transport):
    """Faust's aiokafka transport with :class:`LeanConsumer`; producing is unchanged."""

    Consumer = LeanConsumer
