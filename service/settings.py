"""All of fundwatch's settings in one pydantic-settings class (environment: FUNDWATCH_*)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

if TYPE_CHECKING:
    from ingest.validate import Limits

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
    instance_id: str | None = None  # static group membership; default: this host and the API port

    @property
    def worker_instance_id(self) -> str:
        """Stable across restarts of the same worker, so a restart takes its partitions back at once instead
        of sharing them with its own dead predecessor until the session times out (KIP-345)."""
        import socket

        return self.instance_id or f"fundwatch-{socket.gethostname()}-{self.port}"

    db_path: str = "var/fundwatch.db"  # the single-machine store (SQLite)
    # set: the store is this PostgreSQL database instead (postgresql://user:password@host:port/db), shared by
    # several workers and API processes; ops/postgres.sh start prints one
    db_dsn: str | None = None

    @field_validator("db_dsn")
    @classmethod
    def _postgres_uri(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("postgresql://", "postgres://")):
            raise ValueError("db_dsn is a PostgreSQL URI: postgresql://user:password@host:port/database")
        return v or None

    @property
    def store_target(self) -> str:
        """What the store opens: the DSN when one is configured, else the SQLite file."""
        return self.db_dsn or self.db_path
    checkpoint_dir: str = "var/checkpoints"  # run: state + positions, one file per topic prefix and group
    checkpoint_every_seconds: float = 60.0

    @property
    def checkpoint_path(self) -> str:
        return f"{self.checkpoint_dir}/{self.topic_prefix}{self.group_id}.ckpt"
    dead_letter_file: str = "var/deadletters.jsonl"
    dead_letter_max_ratio: float = 0.05
    dead_letter_min_seen: int = 1_000

    # the door (ingest/validate.py; README "Bad input"): what a record may say and how far its time may stray
    validate_max_amount_fen: int = 10**15
    validate_max_annual_rate: float = 10.0
    validate_money_ahead_days: float = 7.0  # + money_late_days must stay within the ledger's 14-day duplicate memory
    validate_money_late_days: float = 7.0
    validate_registry_ahead_days: float = 45.0  # Platform.updated_at, Account.opened_at, Listing.listed_at
    validate_disclosure_ahead_days: float = 45.0
    validate_disclosure_late_days: float = 400.0

    def limits(self) -> "Limits":
        from ingest.validate import Limits
        from schemas.records import DAY_MS

        return Limits(max_amount=self.validate_max_amount_fen, max_annual_rate=self.validate_max_annual_rate,
                      money_ahead_ms=int(self.validate_money_ahead_days * DAY_MS),
                      money_late_ms=int(self.validate_money_late_days * DAY_MS),
                      registry_ahead_ms=int(self.validate_registry_ahead_days * DAY_MS),
                      disclosure_ahead_ms=int(self.validate_disclosure_ahead_days * DAY_MS),
                      disclosure_late_ms=int(self.validate_disclosure_late_days * DAY_MS))

    assess_every_days: int = 7  # event-time cadence of scoring
    # event-time cadence of the population models' refits (and whenever a segment's size moves by a tenth):
    # what they fit moves with monthly disclosures and 90-day windows, while each fit cost a quarter of a replay
    refit_every_days: int = 28
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
    webhook_allow_loopback: bool = False  # receivers on this host (tests, a local relay)
    webhooks_per_principal: int = 5
    trust_proxy_headers: bool = False  # X-Forwarded-For names the client only behind a proxy you run
    tip_max_bytes: int = 8_192
    tip_rate_per_hour: int = 10  # tip-offs accepted per client address and hour
    reports_kept_per_hour: int = 20  # kept briefings per key and hour: each is stored for good (a briefing is weekly)
    max_request_bytes: int = 1_048_576
    outbox_retention_days: float = 30.0  # alert events kept for SSE resumption and webhook redelivery

    api_key: str | None = None  # for `fundwatch top` (a client, not the service)

    health_max_lag_records: int = 100_000  # /healthz answers 503 when the pipeline is further behind
    health_stall_seconds: float = 180.0  # ... or when its loop has not turned for this long
    # ... or when the moment this worker last assessed has waited this long for the group's population fit
    health_population_stale_seconds: float = 300.0
    health_broker_down_seconds: float = 30.0  # ... or when the broker has not answered for this long

    host: str = "127.0.0.1"
    port: int = 8000
    consume: bool = False  # the API process also runs the Kafka pipeline (fundwatch run)
