"""Local servers for the addresses a configuration leaves unset: how the demo and
``nextaction worker --embedded`` get a broker and a Triton."""

from __future__ import annotations

from contextlib import ExitStack

from stream.settings import Settings, SettingsError
from tools.demo_model import has_version
from tools.embedded import EmbeddedBroker, EmbeddedTriton

__all__ = ["start_missing_servers"]


def start_missing_servers(settings: Settings, servers: ExitStack) -> Settings:
    """Start a Tansu broker if ``kafka_bootstrap`` is unset and a tritonserver serving
    ``model_repository`` if ``triton_grpc_url`` is; ``servers`` stops them. Returns the
    settings with their addresses (and Tansu's fixes on for a local broker)."""
    update: dict[str, str] = {}
    if not settings.kafka_bootstrap:
        broker = servers.enter_context(EmbeddedBroker(settings.embedded_dir))
        update |= {"kafka_bootstrap": broker.bootstrap, "kafka_broker_kind": "tansu"}
    if not settings.triton_grpc_url:
        if not has_version(settings.model_repository, settings.triton_model_name):
            raise SettingsError(
                f"no model version in {settings.model_repository / settings.triton_model_name}: run "
                "`nextaction demo` once, or `nextaction train` and `nextaction export` "
                "(NEXTACTION_MODEL_REPOSITORY points elsewhere)"
            )
        triton = servers.enter_context(EmbeddedTriton(settings.model_repository, settings.embedded_dir))
        triton.wait_for_model(settings.triton_model_name)
        update["triton_grpc_url"] = triton.grpc_url
    return settings.model_copy(update=update)
