"""Settings shared by every service, read from `STUDYSHARE_*` environment variables."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from studyshare.contracts.routes import DEFAULT_BODY_MAX_BYTES
from studyshare.plumbing.kafka_connection import KafkaConnection, SaslMechanism, SecurityProtocol

PLACEHOLDER_SECRETS = {"", "changeme", "change-me", "secret", "dev-secret"}


class ServiceSettings(BaseSettings):
    """Validated at start-up; a service subclasses it and sets `service_name`."""

    model_config = SettingsConfigDict(env_prefix="STUDYSHARE_", extra="ignore")

    service_name: str = "studyshare"
    environment: Literal["development", "test", "production"] = "development"
    log_level: str = "INFO"
    log_json: bool = True

    mongo_url: str = "mongodb://127.0.0.1:27017/?retryWrites=false&directConnection=true"
    database: str | None = None

    kafka_bootstrap: str = "127.0.0.1:9092"
    kafka_security_protocol: SecurityProtocol = Field(
        default="PLAINTEXT",
        description="SASL_SSL on Kubernetes (Strimzi's tls listener, one KafkaUser per "
        "service); PLAINTEXT only for the local broker on loopback",
    )
    kafka_sasl_mechanism: SaslMechanism = "SCRAM-SHA-512"
    kafka_username: str | None = None
    kafka_password: SecretStr | None = None
    kafka_ssl_cafile: Path | None = Field(
        default=None, description="the cluster CA certificate (Strimzi's `ca.crt`)"
    )
    kafka_enable_idempotence: bool = False
    kafka_session_timeout_ms: int = 10_000
    kafka_fetch_max_wait_ms: int = Field(
        default=500,
        ge=10,
        le=30_000,
        description="how long a worker's fetch may wait for new events. Kafka answers as soon "
        "as an event arrives, so this only paces idle polls; the local broker (Tansu) always "
        "waits it out, so the one-machine platform sets 250 ms (faust's own 1,500 ms added "
        "up to 1.5 s to every event's way through a worker; 100 ms doubles an idle "
        "platform's CPU)",
    )
    kafka_rebalance_timeout_ms: int = 10_000

    hot_routes: bool = Field(
        default=True,
        description="answer the routes declared `@hot` without FastAPI's stack first "
        "(`studyshare.plumbing.hot`); off, FastAPI answers them as any other route",
    )
    gc_full_threshold: int = Field(
        default=1000,
        ge=1,
        description="the cyclic garbage collector's third threshold in an API once started "
        "(`studyshare.plumbing.heap`; Python's is 10): collections of the middle generation "
        "between two full ones, each of which walks the whole heap",
    )
    http_host: str = "127.0.0.1"
    http_port: int = 8000
    http_keep_alive_s: int = Field(
        default=75,
        ge=1,
        description="how long an idle keep-alive connection stays open; longer than the idle "
        "time of the proxy in front (gateway 30 s, ingress-nginx 60 s), so that the proxy, not "
        "the service, closes it and never sends a request into a connection being closed",
    )
    http_body_max_bytes: int = Field(
        default=DEFAULT_BODY_MAX_BYTES,
        ge=1024,
        description="the largest request body a route takes unless it has its own limit "
        "(studyshare.contracts.routes.BODY_LIMITS); larger ones get 413 before they are read",
    )
    public_base_url: str = "http://127.0.0.1:8080"

    jwks_url: str = "http://127.0.0.1:8101/.well-known/jwks.json"
    jwks_cache_seconds: int = 300
    session_revocation_feed: bool = Field(
        default=True,
        description="follow identity.events in the API process and refuse access tokens of "
        "ended sessions (logout, refresh-token reuse) and accounts (deactivated, password reset)",
    )
    session_revocation_keep_s: int = Field(
        default=3600,
        ge=60,
        description="how long an ended session is remembered: at least the longest access "
        "token lifetime identity issues (users 900 s, patients 3600 s)",
    )

    identity_internal_url: str | None = Field(
        default=None,
        description="identity's API for service-to-service calls: an API process long-polls "
        "its list of ended sessions (a logout answers once every process has it); unset, "
        "ended sessions arrive only through identity.events (production requires it where "
        "session_revocation_feed is on)",
    )
    session_lease_s: float = Field(
        default=10.0,
        gt=0,
        description="an API process refuses every token (503 SessionStatusUnknown) when its "
        "last successful poll of identity's ended sessions was sent longer ago than this",
    )
    session_poll_wait_s: float = Field(
        default=2.0, gt=0, description="how long identity holds a poll that brings nothing"
    )
    study_store_internal_url: str | None = Field(
        default=None,
        description="the study store's API for service-to-service calls: a command that "
        "narrows access (share: revocation, lock; identity: membership, roles, policy, "
        "deactivation) answers once every study-store API process decides on it",
    )
    access_barrier_timeout_s: float = Field(
        default=12.0,
        gt=0,
        description="how long such a command waits for the study store to confirm (longer "
        "than its lease, so a study-store process that died is waited out); then it answers "
        "anyway, with `StudyShare-Propagated: false`",
    )
    follower_clock_skew_s: float = Field(
        default=1.0,
        ge=0,
        description="how far hosts' clocks may differ: a barrier takes a follower whose last "
        "beat is older than its lease plus this as gone (NTP keeps clocks far closer)",
    )
    internal_token: SecretStr | None = Field(
        default=None,
        description="this service's credential on other services' internal routes "
        "(/internal/...); `dev-internal-<service>` outside production",
    )
    internal_callers: dict[str, SecretStr] = Field(
        default_factory=dict,
        description="the credentials of the services admitted to this service's internal "
        "routes, JSON {service: token}; outside production a missing one is "
        "`dev-internal-<service>`",
    )

    otp_seal_public_key: str = Field(
        default="Fi3sEQTJ/M5ku/UX0rPry+wsvaVxPmr8SiXlIExAXi0=",
        description="notify's public key; one-time codes in events are sealed with it",
    )

    otel_exporter_otlp_endpoint: str | None = Field(
        default=None,
        description="OTLP/HTTP collector (e.g. http://otel-collector.monitoring:4318); traces "
        "are exported there when set, and not recorded at all when not (plumbing.tracing)",
    )
    otel_exporter_otlp_timeout_s: float = Field(default=10.0, gt=0)
    otel_traces_sample_ratio: float = Field(
        default=1.0,
        ge=0.0,
        le=1.0,
        description="share of new traces recorded; a trace started upstream keeps its decision",
    )

    relay_batch_size: int = Field(default=2000, ge=1)
    relay_rescan_s: float = Field(
        default=120.0,
        gt=0,
        description="a relay whose position is gone rescans events recorded this long before its "
        "newest: the longest a transaction stays open (60 s on MongoDB) and clock skew",
    )
    consumer_batch_size: int = Field(default=200, ge=1)
    consumer_batch_within_s: float = Field(default=0.05, gt=0)
    consumer_lag_interval_s: float = Field(
        default=15.0, gt=0, description="how often a worker measures its consumer group's lag"
    )
    # faust's own scratch directory (its table stores are in memory): not the working tree.
    worker_data_dir: Path = Path(tempfile.gettempdir()) / "studyshare-worker"

    @property
    def kafka(self) -> KafkaConnection:
        return KafkaConnection(
            bootstrap=self.kafka_bootstrap,
            security_protocol=self.kafka_security_protocol,
            sasl_mechanism=self.kafka_sasl_mechanism,
            username=self.kafka_username,
            password=self.kafka_password.get_secret_value() if self.kafka_password else None,
            ssl_cafile=self.kafka_ssl_cafile,
        )

    def _check_internal_credentials(self) -> None:
        if self.session_revocation_feed and not self.identity_internal_url:
            raise ValueError(
                "production requires STUDYSHARE_IDENTITY_INTERNAL_URL: a logout must reach "
                "this API's processes before it answers"
            )
        if self.identity_internal_url and not self.internal_token:
            raise ValueError("production requires STUDYSHARE_INTERNAL_TOKEN")
        if _dev_secret(self.internal_token) or any(
            _dev_secret(t) for t in self.internal_callers.values()
        ):
            raise ValueError("development internal credentials are refused in production")
        from studyshare.contracts.routes import INTERNAL_ROUTES

        admitted = {c for r in INTERNAL_ROUTES if r.service == self.service_name for c in r.callers}
        if missing := sorted(admitted - set(self.internal_callers)):
            raise ValueError(
                f"production requires STUDYSHARE_INTERNAL_CALLERS with the credentials of {missing}"
            )

    @property
    def database_name(self) -> str:
        return self.database or f"studyshare_{self.service_name.replace('-', '_')}"

    @model_validator(mode="after")
    def _production_is_strict(self) -> ServiceSettings:
        if self.environment == "production" and not self.kafka_enable_idempotence:
            raise ValueError("production requires STUDYSHARE_KAFKA_ENABLE_IDEMPOTENCE=true")
        if self.environment == "production" and self.kafka_security_protocol != "SASL_SSL":
            raise ValueError(
                "production requires STUDYSHARE_KAFKA_SECURITY_PROTOCOL=SASL_SSL "
                "(TLS and the service's own Kafka user)"
            )
        if self.environment == "production":
            self._check_internal_credentials()
        if self.kafka.uses_sasl and not (self.kafka_username and self.kafka_password):
            raise ValueError(
                "STUDYSHARE_KAFKA_USERNAME and STUDYSHARE_KAFKA_PASSWORD are required with SASL"
            )
        from studyshare.plumbing.sealing import check_not_dev_key

        check_not_dev_key(self.otp_seal_public_key, self.environment)
        return self


def _dev_secret(value: SecretStr | None) -> bool:
    from studyshare.plumbing.internal import DEV_PREFIX

    return value is not None and value.get_secret_value().startswith(DEV_PREFIX)


def refuse_placeholder(value: str, name: str, environment: str) -> str:
    """Secrets may be placeholders in development only."""
    if environment != "development" and value.strip().lower() in PLACEHOLDER_SECRETS:
        raise ValueError(f"{name} must be set to a real secret outside development")
    return value
