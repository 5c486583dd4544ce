"""Create the service's topics up front, so producers never race the worker's declaration."""

from __future__ import annotations

from contextlib import suppress

from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError

from stream.kafka_security import KafkaSecurity
from stream.settings import Settings, SettingsError

__all__ = ["ensure_topics"]


def ensure_topics(bootstrap: str, settings: Settings) -> None:
    """Create the missing input and output topics, after checking that the cluster has the
    brokers the replication factor needs (the changelog, which Faust creates, needs them too)."""
    admin = KafkaAdminClient(
        bootstrap_servers=bootstrap,
        client_id=f"{settings.app_id}-admin",
        **KafkaSecurity.from_settings(settings).client_kwargs(),
    )
    try:
        brokers = len(admin.describe_cluster()["brokers"])
        if settings.topic_replication_factor > brokers:
            raise SettingsError(
                f"NEXTACTION_TOPIC_REPLICATION_FACTOR={settings.topic_replication_factor} needs as many "
                f"brokers, and the cluster at {bootstrap} has {brokers}: lower it or add brokers"
            )
        names = (settings.topic_events, settings.topic_recommendations, settings.topic_dead_letter)
        existing = set(admin.list_topics())
        missing = [
            NewTopic(
                name,
                num_partitions=settings.topic_partitions,
                replication_factor=settings.topic_replication_factor,
            )
            for name in names
            if name not in existing
        ]
        if missing:
            # Another process may create one between our list and create.
            with suppress(TopicAlreadyExistsError):
                admin.create_topics(missing)
    finally:
        admin.close()
