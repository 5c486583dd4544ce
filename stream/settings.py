"""The one typed settings object. Nothing else in the project reads the environment.

Every field can be set as ``NEXTACTION_<FIELD>`` (e.g. ``NEXTACTION_KAFKA_BOOTSTRAP=broker:9092``);
a ``NEXTACTION_*`` variable that names no field stops start-up, since a misspelt one would
otherwise be silently ignored. The worker needs both addresses: it never starts servers of
its own (the demo, the tests and ``nextaction worker --embedded`` do).
"""

from __future__ import annotations

import difflib
import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, FilePath, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from stream.security_checks import security_problems

__all__ = [
    "ENV_PREFIX",
    "KafkaProtocol",
    "SaslMechanism",
    "Settings",
    "SettingsError",
    "load_settings",
    "reject_unknown_variables",
]

ENV_PREFIX = "NEXTACTION_"

KafkaProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


class SettingsError(ValueError):
    """A setting is invalid; the message names the variable and what to do."""


class Settings(BaseSettings):
    # Inputs stay out of validation errors: some of them are secrets.
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, frozen=True, extra="forbid", hide_input_in_errors=True
    )

    # --- addresses (the worker needs both) ---
    kafka_bootstrap: str = Field("", description="host:port[,host:port]")
    kafka_producer_acks: Literal["all", "1"] = Field(
        "all", description="all = every in-sync replica has the record (and the producer is idempotent)"
    )
    kafka_broker_kind: Literal["kafka", "tansu"] = Field(
        default="kafka", description="tansu = work around Tansu's quirks (stream/tansu_transport.py)"
    )
    tansu_fetch_max_wait_ms: int = Field(
        20,
        ge=1,
        le=10_000,
        description="Tansu only: a fetch's shortest wait (doubled while Tansu answers empty)",
    )
    triton_grpc_url: str = Field("", description="host:port of Triton gRPC")
    metrics_port: int = Field(9108, ge=0, le=65535, description="0 picks a free port")
    metrics_host: str = "127.0.0.1"
    liveness_timeout_s: float = Field(
        30.0, gt=0, le=3600, description="/livez answers 503 once the event loop has not ticked this long"
    )
    stall_rewind_after_s: float = Field(
        60.0,
        ge=0,
        le=3600,
        description="an owned partition's backlog with no commit this long is read again "
        "from the committed offset (0: never)",
    )
    log_format: Literal["text", "json"] = Field(
        "text", description="json = the worker logs one JSON object per line (stream/log_format.py)"
    )

    # --- security (docs/security.md; stream/kafka_security.py, stream/triton_security.py) ---
    kafka_security_protocol: KafkaProtocol = "PLAINTEXT"
    kafka_ssl_cafile: FilePath | None = Field(None, description="PEM CA bundle (unset: the system's)")
    kafka_ssl_certfile: FilePath | None = Field(None, description="PEM client certificate (mTLS)")
    kafka_ssl_keyfile: FilePath | None = Field(None, description="PEM private key of the client certificate")
    kafka_ssl_key_password: SecretStr = SecretStr("")
    kafka_sasl_mechanism: SaslMechanism = "PLAIN"
    kafka_sasl_username: str = ""
    kafka_sasl_password: SecretStr = SecretStr("")
    triton_ssl: bool = Field(False, description="TLS on the gRPC channel to Triton")
    triton_ssl_root_certificates: FilePath | None = Field(None, description="PEM CA bundle (unset: gRPC's)")
    triton_ssl_private_key: FilePath | None = Field(None, description="PEM client key (mTLS)")
    triton_ssl_certificate_chain: FilePath | None = Field(None, description="PEM client certificate chain")
    triton_headers: SecretStr = Field(
        SecretStr(""), description="key=value[,key=value] or a JSON object, sent with every Triton request"
    )

    # --- topics ---
    topic_events: str = "events"
    topic_recommendations: str = "recommendations"
    topic_dead_letter: str = "events.dlq"
    topic_catalogue: str = Field(
        "item-catalogue",
        description="item texts for cold start: `nextaction catalogue` reads it, the worker does not",
    )
    topic_partitions: int = Field(1, ge=1, le=1024)
    topic_replication_factor: int = Field(
        1, ge=1, le=32, description="replicas of every topic the service creates, the changelog included"
    )

    # --- stream semantics ---
    app_id: str = "nextaction"
    window_size: int = Field(50, ge=1, le=512, description="events kept per user")
    window_horizon_s: float = Field(30 * 24 * 3600, gt=0, description="oldest event age kept")
    user_idle_evict_s: float = Field(
        30 * 24 * 3600, gt=0, description="users this far behind their partition's newest event are evicted"
    )
    published_top_k: int = Field(10, ge=1, le=100, description="items per published recommendation")
    batch_max_events: int = Field(512, ge=1, le=100_000)
    batch_max_wait_ms: int = Field(20, ge=1, le=60_000, description="freshness bound of batching")
    pipeline_depth: int = Field(2, ge=1, le=64, description="batches scored or published at once")
    max_event_bytes: int = Field(4096, ge=256, le=1_048_576)
    input_buffer_max_bytes: int = Field(
        32 * 1024 * 1024,
        ge=64 * 1024,
        description="bytes of input held from fetch to acknowledgement before fetching pauses",
    )
    max_event_ahead_s: float = Field(
        300.0, ge=0, description="events dated further ahead of their record's timestamp are dead-lettered"
    )
    dead_letter_max_copy_bytes: int = Field(
        900_000, ge=0, le=950_000, description="larger originals are dead-lettered without their bytes"
    )
    table_store: str = Field("memory://", pattern="^(memory|rocksdb)://")
    data_dir: Path = Path(".nextaction/worker")
    shutdown_timeout_s: float = Field(
        25.0, gt=0, le=3600, description="after SIGTERM the worker exits by then, finished or not"
    )
    broker_session_timeout_s: float = Field(6.0, gt=0)
    broker_heartbeat_interval_s: float = Field(1.0, gt=0)

    # --- what is recommended, beyond the model's order ---
    catalogue_path: Path | None = Field(
        None, description="JSON lines of item_id and title: explanations name items by their titles"
    )
    # Defaults from docs/2026-11-29-beyond-accuracy.md: with 50 served candidates, on converged
    # MovieLens and Amazon Beauty models, 20% more long-tail items and the most diversity for
    # at most 5% NDCG@10. The popularity correction bought less long tail per NDCG@10 lost
    # there: off unless chosen.
    diversity: float = Field(
        0.3, ge=0, le=1, description="MMR weight of dissimilarity to items above (0: the model's order)"
    )
    exploration_slots: int = Field(
        2, ge=0, le=100, description="last slots given to a long-tail item sampled from the model's scores"
    )
    popularity_adjustment: float = Field(
        0.0, ge=0, le=4, description="strength of the model's popularity-bias correction (0: none)"
    )

    # --- inference ---
    triton_model_name: str = "nextaction"
    triton_timeout_s: float = Field(10.0, gt=0)
    triton_max_in_flight: int = Field(4, ge=1, le=256)
    triton_ready_timeout_s: float = Field(60.0, gt=0, description="how long start-up waits for the model")
    triton_refusal_limit_s: float = Field(
        30.0, ge=0, description="how long refused requests are retried before the batch fails"
    )
    fallback_enabled: bool = Field(
        True, description="while Triton is out, publish recommendations from the stream's own statistics"
    )
    triton_outage_after_s: float = Field(
        2.0, ge=0, description="Triton failing this long opens the circuit: batches get the fallback"
    )
    triton_probe_interval_s: float = Field(
        2.0, gt=0, le=8, description="while the circuit is open, one batch tries Triton this often"
    )

    # --- embedded servers (demo, tests, `nextaction worker --embedded`) ---
    model_repository: Path = Path("model_repository")
    embedded_dir: Path = Path(".nextaction/embedded")

    @model_validator(mode="after")
    def _check_relations(self) -> Settings:
        if self.broker_heartbeat_interval_s >= self.broker_session_timeout_s:
            raise ValueError("broker_heartbeat_interval_s must be below broker_session_timeout_s")
        if self.exploration_slots > self.published_top_k:
            raise ValueError("exploration_slots cannot exceed published_top_k")
        if len({self.topic_events, self.topic_recommendations, self.topic_dead_letter}) != 3:
            raise ValueError("topic_events, topic_recommendations and topic_dead_letter must differ")
        return self

    @model_validator(mode="after")
    def _check_security(self) -> Settings:
        """Refuse combinations a client would ignore or fail on only once connected."""
        problems = security_problems(self)
        if problems:
            raise ValueError("incomplete security settings:\n" + "\n".join(f"  {p}" for p in problems))
        return self

    def require_addresses(self) -> None:
        """Fail unless both servers are configured: a worker never starts its own."""
        missing = [
            f"  {ENV_PREFIX}{name.upper()}: not set ({what})"
            for name, what in (
                ("kafka_bootstrap", "the Kafka brokers, host:port[,host:port]"),
                ("triton_grpc_url", "Triton's gRPC endpoint, host:port"),
            )
            if not getattr(self, name)
        ]
        if missing:
            raise SettingsError(
                "the worker needs the addresses of its servers:\n"
                + "\n".join(missing)
                + "\n(or run `nextaction worker --embedded` to start a local broker and Triton)"
            )


@lru_cache(maxsize=1)
def load_settings() -> Settings:
    """Read the environment once; a bad value or an unknown name fails fast naming the variable."""
    reject_unknown_variables()
    try:
        return Settings()
    except ValidationError as exc:
        lines = [
            f"  NEXTACTION_{'_'.join(str(p) for p in err['loc']).upper() or '<settings>'}: {err['msg']}"
            for err in exc.errors()
        ]
        raise SettingsError(
            "invalid configuration (fix these environment variables):\n" + "\n".join(lines)
        ) from None


def reject_unknown_variables(environ: dict[str, str] | None = None) -> None:
    """Fail on ``NEXTACTION_*`` variables that name no setting, suggesting the closest one."""
    environ = dict(os.environ) if environ is None else environ
    known = [name.upper() for name in Settings.model_fields]
    unknown = sorted(
        name
        for name in environ
        if name.upper().startswith(ENV_PREFIX) and name.upper().removeprefix(ENV_PREFIX) not in known
    )
    if unknown:
        lines = []
        for name in unknown:
            # Compared without the shared prefix, which would make every name look alike.
            close = difflib.get_close_matches(name.upper().removeprefix(ENV_PREFIX), known, n=1, cutoff=0.5)
            hint = f"did you mean {ENV_PREFIX}{close[0]}?" if close else "no setting has this name"
            lines.append(f"  {name}: unknown setting; {hint}")
        raise SettingsError("unknown configuration variables (rename or unset them):\n" + "\n".join(lines))
