"""All of fundwatch's settings in one pydantic-settings class (environment: FUNDWATCH_*)."""
from __future__ import annotations

from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["Settings"]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FUNDWATCH_", extra="ignore")

    bootstrap: str = "127.0.0.1:9092"
    topic_prefix: str = ""
    group_id: str = "fundwatch"
    schema_registry_url: str | None = None  # set: Confluent framing; unset: Avro single-object encoding
    # single-object encoding: directories (os.pathsep-separated) of other writer versions' .avsc files, found by
    # fingerprint and resolved to fundwatch's reader schemas
    schema_dir: str | None = None
    session_timeout_ms: int = 10_000  # kafka-python 3 defaults to 45 s, which makes group joins slow
    heartbeat_interval_ms: int = 1_000
    max_poll_records: int = 5_000

    db_path: str = "var/fundwatch.db"
    checkpoint_dir: str = "var/checkpoints"  # run: state + positions, one file per topic prefix and group
    checkpoint_every_seconds: float = 60.0

    @property
    def checkpoint_path(self) -> str:
        return f"{self.checkpoint_dir}/{self.topic_prefix}{self.group_id}.ckpt"
    dead_letter_file: str = "var/deadletters.jsonl"
    dead_letter_max_ratio: float = 0.05
    dead_letter_min_seen: int = 1_000

    assess_every_days: int = 7  # event-time cadence of scoring
    max_pending: int = 500_000  # transactions waiting for their account or platform, at most
    idle_assess_seconds: float = 2.0
    alert_min_severity: str = "MEDIUM"
    legal_yield_ceiling: float = 0.24  # annual; promised yields above it are an excess_yield finding
    retention_days: int = 90
    random_state: int = 0

    alert_episode_gap_days: int = 30  # a finding absent this long (event time) ends its alert's episode

    # access and delivery
    secret_key: str | None = None  # hex or base64; webhook secrets derive from it (else secret_key_file)
    secret_key_file: str = "var/secret.key"
    webhook_max_attempts: int = 5
    webhook_backoff_base_seconds: float = 0.5  # then 1, 2, 4 ... capped at webhook_backoff_max_seconds
    webhook_backoff_max_seconds: float = 30.0
    webhook_timeout_seconds: float = 5.0
    delivery_poll_seconds: float = 0.2  # how often SSE streams and webhook workers look at the outbox
    tip_max_bytes: int = 8_192
    tip_rate_per_hour: int = 10  # tip-offs accepted per client address and hour
    max_request_bytes: int = 1_048_576
    outbox_retention_days: float = 30.0  # alert events kept for SSE resumption and webhook redelivery

    api_key: str | None = None  # for `fundwatch top` (a client, not the service)

    host: str = "127.0.0.1"
    port: int = 8000
    consume: bool = False  # the API process also runs the Kafka pipeline (fundwatch run)
