"""Build the Faust app and the parts an agent works with: topics, the windows table, the
Triton scorer, the output publisher and the metrics, wired from settings."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import faust
from faust.types import TP, StreamT
from mode import BaseSignalT

from stream.failure import FailFast
from stream.health import Health
from stream.inference import TritonScorer
from stream.kafka_security import KafkaSecurity
from stream.metrics import StreamMetrics
from stream.monitor import ConsumerLag, Monitor, StallRewinder
from stream.outputs import OutputPublisher
from stream.recommendations import Presentation
from stream.rerank import RerankPolicy
from stream.settings import Settings, SettingsError
from stream.stall_watch import StallWatch
from stream.tables import WindowStore, declare_windows
from stream.topics import Topics, declare_topics
from stream.transports import faust_broker_url, register_transports
from stream.triton_security import TritonSecurity
from stream.wording import ItemTitles, load_item_titles

__all__ = ["StreamApp", "create_app"]

_PRODUCER_BATCH_BYTES = 512 * 1024


@dataclass(frozen=True)
class StreamApp:
    """The Faust app and what its agent needs; the agent is attached separately."""

    app: faust.App
    topics: Topics
    windows: WindowStore
    scorer: TritonScorer
    outputs: OutputPublisher
    metrics: StreamMetrics
    health: Health
    lag: ConsumerLag
    rewinder: StallRewinder | None
    presentation: Presentation = field(default_factory=Presentation)
    failure: FailFast = field(default_factory=FailFast)

    def attach_agent(self, run: Callable[[StreamT], Awaitable[None]]) -> None:
        """Make ``run`` the app's one agent over the events topic."""
        self.app.agent(self.topics.events, name="recommend")(run)

    def monitor(self) -> Monitor:
        """The heartbeat and lag timer, to run beside the app (:func:`stream.worker.run_app`)."""
        return Monitor(self.app, self.health, self.lag, self.rewinder)


def create_app(settings: Settings, metrics: StreamMetrics) -> StreamApp:
    register_transports(settings)
    app = faust.App(
        settings.app_id,
        broker=faust_broker_url(settings),
        broker_credentials=KafkaSecurity.from_settings(settings).faust_credentials(),
        store=settings.table_store,
        datadir=str(settings.data_dir),
        topic_partitions=settings.topic_partitions,
        broker_session_timeout=settings.broker_session_timeout_s,
        broker_heartbeat_interval=settings.broker_heartbeat_interval_s,
        producer_acks=-1 if settings.kafka_producer_acks == "all" else 1,
        topic_replication_factor=settings.topic_replication_factor,
        # A record batch per partition is in flight at a time; with the default 16 KiB batches
        # a recommendation batch (a few KiB a record) took one broker round trip per 5 records.
        producer_max_batch_size=_PRODUCER_BATCH_BYTES,
        web_enabled=False,
        autodiscover=False,
    )
    scorer = TritonScorer(
        settings.triton_grpc_url,
        settings.triton_model_name,
        timeout_s=settings.triton_timeout_s,
        max_in_flight=settings.triton_max_in_flight,
        popularity_adjustment=settings.popularity_adjustment,
        security=TritonSecurity.from_settings(settings),
    )

    failure = FailFast()
    health = Health(failure, settings.liveness_timeout_s)
    metrics.ready.set_function(lambda: health.ready().ok)

    # Faust signal receivers get the partitions positionally.
    async def track_revocation(sender: Any, /, *args: Any, signal: BaseSignalT[Any], **kwargs: Any) -> None:
        health.rebalancing()

    async def track_assignment(sender: Any, /, *args: Any, signal: BaseSignalT[Any], **kwargs: Any) -> None:
        assigned: set[TP] = args[0]
        owned = sum(1 for tp in assigned if tp.topic == settings.topic_events)
        metrics.assigned_partitions.set(owned)
        health.assigned(owned)

    # Sent once the rebalance's table recovery is done, before input is read again.
    async def track_recovery(sender: Any, /, *args: Any, signal: BaseSignalT[Any], **kwargs: Any) -> None:
        health.recovered()

    app.on_partitions_revoked.connect(track_revocation)
    app.on_partitions_assigned.connect(track_assignment)
    app.on_rebalance_complete.connect(track_recovery)
    return StreamApp(
        app=app,
        topics=declare_topics(app, settings),
        windows=declare_windows(app, settings, metrics),
        scorer=scorer,
        outputs=OutputPublisher(app, settings),
        metrics=metrics,
        health=health,
        lag=ConsumerLag(metrics.consumer_lag, settings.topic_events),
        rewinder=stall_rewinder(settings, metrics),
        presentation=presentation(settings),
        failure=failure,
    )


def stall_rewinder(settings: Settings, metrics: StreamMetrics) -> StallRewinder | None:
    after_s = settings.stall_rewind_after_s
    if not after_s:
        return None
    return StallRewinder(StallWatch(after_s), metrics.partition_rewinds, settings.topic_events)


def presentation(settings: Settings) -> Presentation:
    """The re-ranking policy and the catalogue's titles; a catalogue that cannot be read stops
    the start with the reason."""
    try:
        titles = load_item_titles(settings.catalogue_path) if settings.catalogue_path else ItemTitles()
    except ValueError as exc:
        raise SettingsError(str(exc)) from None
    policy = RerankPolicy(settings.diversity, settings.exploration_slots)
    return Presentation(policy, titles)
