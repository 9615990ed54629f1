"""Settings: the only place that reads the environment.

Every entry point (API, worker, CLI, SDK) builds one ``Settings`` and passes it down. Keys
are ``SecretStr`` so they never end up in a log line or a repr. Env names carry the prefix
``BATCHYARD_`` with ``__`` for nesting (``BATCHYARD_HTTP__MAX_ATTEMPTS=5``); the provider
credentials also answer to the names users already have (``OPENAI_API_KEY``,
``AZURE_API_KEY`` ...), as in LiteLLM.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, BaseModel, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class HttpSettings(BaseModel):
    """How provider adapters talk HTTP."""

    connect_timeout: float = 5.0
    read_timeout: float = 600.0
    max_attempts: int = 5
    backoff_initial: float = 0.5
    backoff_max: float = 8.0
    #: Give up retrying once this many seconds have passed since the first attempt.
    retry_total_seconds: float = 120.0
    #: A Retry-After longer than this is not waited for (the call fails at once).
    max_retry_after: float = 120.0


class PipelineSettings(BaseModel):
    """How the workers split, submit, poll and retry."""

    part_max_requests: int = 50_000
    part_max_bytes: int = 200 * 1024 * 1024
    max_request_attempts: int = 3
    poll_min_seconds: float = 30.0
    poll_max_seconds: float = 600.0
    poll_backoff: float = 1.5
    #: The first poll of a new provider batch (and polls of a part being cancelled) come
    #: this soon, so a rejected input shows in seconds; later polls back off from
    #: ``poll_min_seconds``.
    first_poll_seconds: float = 5.0
    #: A pipeline step failing with the same unexpected error this many times in a row ends
    #: its batch (or part) ``failed`` with ``internal_error`` instead of being retried forever.
    max_task_failures: int = 5
    #: Beat tick for polling due parts and sweeping lost work.
    tick_seconds: float = 5.0
    #: A part stuck in a transient state longer than this is re-nudged by the sweep.
    stale_seconds: float = 60.0
    #: When a deployment says token_limit_exceeded, wait this long before resubmitting.
    quota_retry_seconds: float = 300.0
    #: How long a provider's list may lag behind its creates. After a crash, a look-up that
    #: finds no batch (or upload) for a recorded intent younger than this waits and looks
    #: again instead of concluding the create never happened.
    provider_list_lag_seconds: float = 60.0
    #: Clock difference tolerated between us and a provider when matching a lost Anthropic
    #: create by its ``created_at`` (Anthropic batches carry no metadata to find them by).
    provider_clock_skew_seconds: float = 30.0
    #: ``max_tokens`` given to a chat line routed to Anthropic that sets none.
    anthropic_default_max_tokens: int = 4096
    ingest_batch_rows: int = 2_000
    #: Prefix of the Celery queue names (``<queue>.batches``, ``<queue>.parts``,
    #: ``<queue>.tick``); separate deployments (or test runs) on one broker use their own.
    queue: str = "batchyard"
    #: How many provider batches one ``poll`` task checks at the same time.
    poll_concurrency: int = 16
    #: How many due parts one ``poll`` task claims; the beat tick sends one ``poll`` nudge
    #: per this many due parts, and any worker may run them.
    poll_claim_size: int = 100
    #: How long polls of a deployment pause after it answered 429 without a Retry-After.
    poll_rate_limit_seconds: float = 10.0
    #: Read timeout of one poll (a retrieve or cancel): a stalled call holds back its whole
    #: claim; a poll that times out is rescheduled.
    poll_timeout_seconds: float = 10.0


class ScheduleSettings(BaseModel):
    """Scheduled batch runs and completion webhooks."""

    #: Beat interval of the scheduler tick (fires due schedules, sends due webhooks).
    tick_seconds: float = 15.0
    #: A slot this late is still "on time"; older due slots count as missed (catch-up policy).
    misfire_grace_seconds: float = 300.0
    #: Signs webhooks named in a batch's metadata (a schedule may carry its own secret).
    webhook_secret: SecretStr | None = None
    webhook_timeout_seconds: float = 10.0
    webhook_max_attempts: int = 8
    webhook_backoff_initial: float = 10.0
    webhook_backoff_max: float = 3600.0
    #: A delivery stuck in "sending" this long (worker died mid-POST) is sent again.
    webhook_stale_seconds: float = 120.0
    #: Webhooks are never sent to loopback, private, link-local, multicast or reserved
    #: addresses unless listed here: host names (allowed whatever they resolve to), addresses
    #: or CIDR networks, e.g. ``["hooks.internal", "10.20.0.0/16"]``
    #: (``BATCHYARD_SCHEDULES__WEBHOOK_ALLOW='["127.0.0.1"]'``).
    webhook_allow: list[str] = []
    #: Let virtual keys (not only the master key / CLI) create callable and path sources,
    #: which run code or read files on the scheduler's host.
    allow_code_sources_for_keys: bool = False


class S3Settings(BaseModel):
    """The S3-compatible object store used when ``storage_backend`` is ``s3``.

    Credentials left unset fall back to boto3's own chain (``AWS_ACCESS_KEY_ID`` ...,
    a shared credentials file, an instance role).
    """

    bucket: str = ""
    #: Prepended to every storage key (``batchyard/`` keeps a shared bucket tidy).
    prefix: str = ""
    #: For S3-compatible servers (MinIO, Ceph, R2 ...); unset means AWS S3 itself.
    endpoint_url: str | None = None
    region: str | None = None
    access_key_id: SecretStr | None = None
    secret_access_key: SecretStr | None = None
    #: Uploads go up as multipart parts of this size (S3's minimum is 5 MiB).
    part_bytes: int = 8 * 1024 * 1024


class ApiSettings(BaseModel):
    """The OpenAI-compatible HTTP API."""

    host: str = "127.0.0.1"
    port: int = 4000
    max_upload_bytes: int = 512 * 1024 * 1024
    #: Total size of a request's headers above which it is refused with 431.
    max_header_bytes: int = 32 * 1024
    #: A request body chunk that takes longer than this to arrive ends the request (408).
    body_read_timeout: float = 30.0
    #: A request's header block that takes longer than this to arrive is refused (408).
    header_read_timeout: float = 10.0
    #: uvicorn processes for ``batchyard serve``; 0 = one per CPU core (at most 4). One
    #: process is CPU-bound near 500 creates/s; a second one halves create latency under load.
    workers: int = 0

    @property
    def effective_workers(self) -> int:
        """The number of API processes in force."""
        import os

        return self.workers if self.workers > 0 else max(1, min(os.cpu_count() or 1, 4))


class MetricsSettings(BaseModel):
    """Prometheus metrics (the API serves ``/metrics``; a worker can serve its own port)."""

    #: Port of a worker's own metrics endpoint (0: none). Set it on workers that run on
    #: another host than the API, so Prometheus can scrape their counters there.
    worker_port: int = 0
    #: Address the worker's metrics endpoint binds; 0.0.0.0 to let another host scrape it.
    worker_addr: str = "127.0.0.1"


class Settings(BaseSettings):
    """All of batchyard's configuration."""

    model_config = SettingsConfigDict(
        env_prefix="BATCHYARD_", env_nested_delimiter="__", extra="ignore",
        populate_by_name=True,
    )

    #: Where the embedded default keeps its SQLite files and stored uploads: the per-user
    #: data directory (``~/.local/share/batchyard`` on Linux) unless ``BATCHYARD_DATA_DIR``
    #: says otherwise, so every command finds the same database whatever the current directory.
    data_dir: Path = Field(default_factory=lambda: default_data_dir())
    #: SQLAlchemy URL. Default: SQLite in ``data_dir``.
    database_url: str | None = None
    #: Celery broker URL. Default: an embedded SQLite broker in ``data_dir``.
    broker_url: str | None = None
    #: ``database`` keeps file bytes in SQL (any worker on any host can read them);
    #: ``local`` keeps them under ``data_dir/files``; ``s3`` in an S3-compatible bucket
    #: (settings under ``s3``; needs ``pip install 'batchyard[s3]'``).
    storage_backend: str = "database"
    master_key: SecretStr | None = None
    #: A LiteLLM-shaped ``config.yaml`` with ``model_list``.
    config_file: Path | None = None

    openai_api_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("BATCHYARD_OPENAI_API_KEY", "OPENAI_API_KEY"))
    openai_api_base: str | None = Field(
        default=None, validation_alias=AliasChoices("BATCHYARD_OPENAI_API_BASE", "OPENAI_API_BASE",
                                                    "OPENAI_BASE_URL"))
    azure_api_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("BATCHYARD_AZURE_API_KEY", "AZURE_API_KEY",
                                                    "AZURE_OPENAI_API_KEY"))
    azure_api_base: str | None = Field(
        default=None, validation_alias=AliasChoices("BATCHYARD_AZURE_API_BASE", "AZURE_API_BASE",
                                                    "AZURE_OPENAI_ENDPOINT"))
    azure_api_version: str | None = Field(
        default=None, validation_alias=AliasChoices("BATCHYARD_AZURE_API_VERSION",
                                                    "AZURE_API_VERSION", "OPENAI_API_VERSION"))
    anthropic_api_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("BATCHYARD_ANTHROPIC_API_KEY",
                                                    "ANTHROPIC_API_KEY"))
    anthropic_api_base: str | None = Field(
        default=None, validation_alias=AliasChoices("BATCHYARD_ANTHROPIC_API_BASE",
                                                    "ANTHROPIC_API_BASE", "ANTHROPIC_BASE_URL"))

    #: Test-only crash hook: a worker SIGKILLs itself at this named pipeline point
    #: (``mid_prepare``, ``after_upload``, ``after_create``, ``mid_ingest`` ...) to prove
    #: crash safety.
    crash_at: str | None = None

    http: HttpSettings = HttpSettings()
    pipeline: PipelineSettings = PipelineSettings()
    api: ApiSettings = ApiSettings()
    schedules: ScheduleSettings = ScheduleSettings()
    s3: S3Settings = S3Settings()
    metrics: MetricsSettings = MetricsSettings()

    @property
    def effective_database_url(self) -> str:
        """The database URL in force (SQLite under ``data_dir`` unless configured)."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'batchyard.db').resolve()}"

    @property
    def effective_broker_url(self) -> str:
        """The broker URL in force (an embedded SQLite broker unless configured)."""
        if self.broker_url:
            return self.broker_url
        return f"sqla+sqlite:///{(self.data_dir / 'broker.db').resolve()}"

    @property
    def is_embedded(self) -> bool:
        """True when running on the embedded default (no external broker)."""
        return not self.broker_url


def default_data_dir() -> Path:
    """The per-user data directory (platformdirs), used when ``BATCHYARD_DATA_DIR`` is unset."""
    from platformdirs import user_data_path

    return user_data_path("batchyard", appauthor=False)


def env_value(name: str) -> str | None:
    """Resolve ``os.environ/NAME`` references from config files (the only other env read)."""
    import os

    return os.environ.get(name)
