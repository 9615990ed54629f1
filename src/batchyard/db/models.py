"""ORM tables (SQLAlchemy 2.0). Rows are converted to domain records in ``db/`` only.

Times are unix seconds (ints) as on the OpenAI wire, except scheduling columns that need
sub-second precision (floats). JSON columns hold provider/user JSON verbatim.
"""

from __future__ import annotations

from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


#: The sums kept per part in ``PartRow.result_totals``.
TOTAL_KEYS = ("completed", "failed", "input_tokens", "output_tokens", "cached_tokens",
              "cost_pico", "priced", "unpriced", "output_bytes", "error_bytes")


class Base(DeclarativeBase):
    """Declarative base; ``Base.metadata`` is what Alembic targets."""

    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {dict[str, Any]: JSON, list[Any]: JSON}


class ApiKeyRow(Base):
    """A virtual API key (the master key is not stored; it comes from Settings)."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    key_prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[int] = mapped_column(BigInteger)
    revoked_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    max_file_bytes: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    max_batches_in_flight: Mapped[int | None] = mapped_column(Integer, nullable=True)
    can_schedule: Mapped[bool] = mapped_column(Boolean, default=False)
    #: Spending limit in pico-dollars (10^-12 USD); ``budget_period``: total | monthly.
    max_budget_pico: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    budget_period: Mapped[str | None] = mapped_column(String(10), nullable=True)


class FileRow(Base):
    """A file as our API shows it: an uploaded input, or an output/error file we generate."""

    __tablename__ = "files"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    owner_key_id: Mapped[str | None] = mapped_column(String(40), nullable=True, index=True)
    filename: Mapped[str] = mapped_column(String(500))
    purpose: Mapped[str] = mapped_column(String(40))
    bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[int] = mapped_column(BigInteger, index=True)
    expires_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    status: Mapped[str] = mapped_column(String(20), default="processed")
    #: input | output | error. Output/error content is rendered from result rows.
    kind: Mapped[str] = mapped_column(String(10), default="input")
    #: For output/error files: the batch whose results they render.
    batch_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    #: Where the bytes live in the file store (input files only).
    storage_key: Mapped[str | None] = mapped_column(String(200), nullable=True)
    sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)


class FileChunkRow(Base):
    """File bytes kept in the database, so a worker on any host can read them."""

    __tablename__ = "file_chunks"

    storage_key: Mapped[str] = mapped_column(String(200), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class BatchRow(Base):
    """The public, OpenAI-shaped batch. Its status is derived from its parts."""

    __tablename__ = "batches"
    __table_args__ = (
        # The dashboard's list: newest first within one status, or one owner.
        Index("ix_batches_status_created", "status", "created_at"),
        Index("ix_batches_owner_created", "owner_key_id", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    owner_key_id: Mapped[str | None] = mapped_column(String(40), nullable=True, index=True)
    endpoint: Mapped[str] = mapped_column(String(100))
    input_file_id: Mapped[str] = mapped_column(ForeignKey("files.id"))
    completion_window: Mapped[str] = mapped_column(String(10), default="24h")
    #: Model group requested (create body or JSONL); parts route it to deployments.
    model: Mapped[str | None] = mapped_column(String(200), nullable=True)
    #: Force a provider (openai | azure) from the /openai/... or /azure/... routes.
    provider: Mapped[str | None] = mapped_column(String(20), nullable=True)
    status: Mapped[str] = mapped_column(String(20), index=True)
    metadata_: Mapped[dict[str, Any] | None] = mapped_column("metadata", JSON, nullable=True)
    errors: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    output_file_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    error_file_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[int] = mapped_column(BigInteger, index=True)
    in_progress_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    expires_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    finalizing_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    completed_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    failed_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    expired_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    cancelling_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    cancelled_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    total: Mapped[int] = mapped_column(Integer, default=0)
    completed: Mapped[int] = mapped_column(Integer, default=0)
    failed: Mapped[int] = mapped_column(Integer, default=0)
    input_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    output_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    cached_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    reasoning_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    #: Pipeline progress marker used by the sweep (accepted, prepared, finalized ...).
    stage: Mapped[str] = mapped_column(String(20), default="accepted", index=True)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    updated_at: Mapped[float] = mapped_column(Float, default=0.0)
    #: When the pipeline should next act on the batch; a task claims it by pushing this
    #: forward (a lease), the sweep re-nudges batches whose time has come.
    due_at: Mapped[float] = mapped_column(Float, default=0.0, index=True)
    #: Money in pico-dollars (10^-12 USD, integers sum exactly everywhere): the sum of the
    #: priced result rows so far, and the estimate recorded when the input was split.
    cost_pico: Mapped[int] = mapped_column(BigInteger, default=0)
    estimate_pico: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    cost_currency: Mapped[str | None] = mapped_column(String(3), nullable=True)
    priced_requests: Mapped[int] = mapped_column(Integer, default=0)
    unpriced_requests: Mapped[int] = mapped_column(Integer, default=0)
    #: Unexpected failures of the batch's current step in a row (same error), and which.
    failure_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    failure_key: Mapped[str | None] = mapped_column(String(200), nullable=True)


class PartRow(Base):
    """One provider batch: a slice of a batch's requests sent to one deployment."""

    __tablename__ = "parts"
    __table_args__ = (
        UniqueConstraint("batch_id", "seq", name="uq_parts_batch_seq"),
        Index("ix_parts_status_next_poll", "status", "next_poll_at"),
        Index("ix_parts_status_deployment", "status", "deployment"),  # metrics by deployment
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    batch_id: Mapped[str] = mapped_column(ForeignKey("batches.id"), index=True)
    seq: Mapped[int] = mapped_column(Integer)
    #: 1 for the first pass; n for the (n-1)th retry of failed requests.
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    deployment: Mapped[str | None] = mapped_column(String(200), nullable=True)
    status: Mapped[str] = mapped_column(String(30), index=True)
    request_count: Mapped[int] = mapped_column(Integer, default=0)
    byte_size: Mapped[int] = mapped_column(BigInteger, default=0)
    estimated_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    storage_key: Mapped[str | None] = mapped_column(String(200), nullable=True)
    provider_file_id: Mapped[str | None] = mapped_column(String(100), nullable=True)
    provider_batch_id: Mapped[str | None] = mapped_column(String(100), nullable=True)
    provider_status: Mapped[str | None] = mapped_column(String(30), nullable=True)
    provider_output_file_id: Mapped[str | None] = mapped_column(String(100), nullable=True)
    provider_error_file_id: Mapped[str | None] = mapped_column(String(100), nullable=True)
    provider_errors: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    #: When the pipeline should next act on the part (poll it, or retry a step). Claiming a
    #: part pushes it forward, so it doubles as a lease against a second worker.
    next_poll_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    poll_interval: Mapped[float | None] = mapped_column(Float, nullable=True)
    side_effect_attempts: Mapped[int] = mapped_column(Integer, default=0)
    #: Requests the provider reported done at the last poll (progress resets the backoff).
    provider_done: Mapped[int] = mapped_column(Integer, default=0)
    #: The provider's own request counts at the last poll (live progress).
    provider_completed: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    provider_failed: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    #: Unexpected failures of the part's current step in a row (same error), and which.
    failure_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    failure_key: Mapped[str | None] = mapped_column(String(200), nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[float] = mapped_column(Float)
    #: Estimated cost of the part's requests in pico-dollars (null: unpriced model).
    estimate_pico: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    #: Sums over the part's result rows (see ``db.results.TOTAL_KEYS``), set at ingest and
    #: raised by the final error rows written for its unanswered requests; null for parts
    #: created before it existed (their batch sums result rows instead).
    result_totals: Mapped[dict[str, int] | None] = mapped_column(
        JSON, nullable=True, default=lambda: dict.fromkeys(TOTAL_KEYS, 0))


class RequestRow(Base):
    """One input line of a batch."""

    __tablename__ = "requests"
    __table_args__ = (UniqueConstraint("batch_id", "custom_id", name="uq_requests_batch_custom"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"),
                                    primary_key=True, autoincrement=True)
    #: No foreign key (migration 0560): rows are COPYed in bulk by code that has just read
    #: the batch row, and batches are never deleted.
    batch_id: Mapped[str] = mapped_column(String(64))
    custom_id: Mapped[str] = mapped_column(String(512))
    line_no: Mapped[int] = mapped_column(Integer)
    #: The request line as JSON text (rewritten with the deployment model per part).
    body: Mapped[str] = mapped_column(Text)
    part_id: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    #: pending | submitted | succeeded | failed (final) | retry (waiting for a new part)
    state: Mapped[str] = mapped_column(String(20), default="pending")


class ResultRow(Base):
    """The outcome of one request: exactly one row per (batch, custom_id).

    Keyed by (batch_id, line_no) (migration 0570: the request's input line, unique in its
    batch; the reads in input order use it) with no id column: each index costs every
    ingested row an entry, so there are two, this key and the unique (batch_id, custom_id)
    that makes a second ingest of the same output merge instead of adding rows.
    """

    __tablename__ = "results"
    __table_args__ = (
        UniqueConstraint("batch_id", "custom_id", name="uq_results_batch_custom"),
    )

    #: No foreign key (migration 0560): rows are COPYed in bulk by code that has just read
    #: the batch row, and batches are never deleted.
    batch_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    custom_id: Mapped[str] = mapped_column(String(512))
    line_no: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    part_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    #: True when the request succeeded (2xx); such rows form the output file.
    ok: Mapped[bool] = mapped_column(Boolean)
    status_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    provider_request_id: Mapped[str | None] = mapped_column(String(100), nullable=True)
    #: The provider's response body as JSON text (null for non-HTTP errors).
    response_body: Mapped[str | None] = mapped_column(Text, nullable=True)
    error_code: Mapped[str | None] = mapped_column(String(100), nullable=True)
    error_message: Mapped[str | None] = mapped_column(Text, nullable=True)
    input_tokens: Mapped[int] = mapped_column(Integer, default=0)
    output_tokens: Mapped[int] = mapped_column(Integer, default=0)
    total_tokens: Mapped[int] = mapped_column(Integer, default=0)
    #: Length of this row's line in the rendered output/error file (0: not computed yet);
    #: finalize sums it for the file's ``bytes`` instead of rendering every row again.
    rendered_bytes: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[int] = mapped_column(BigInteger)
    #: The model that answered (from the response) and cached input tokens (of input_tokens).
    model: Mapped[str | None] = mapped_column(String(200), nullable=True)
    cached_tokens: Mapped[int] = mapped_column(Integer, default=0)
    #: The request's cost in pico-dollars (10^-12 USD), or null with ``unpriced_reason``;
    #: ``price_source`` is ``genai-prices <version>`` or ``config:<deployment id>``.
    cost_pico: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    cost_currency: Mapped[str | None] = mapped_column(String(3), nullable=True)
    price_source: Mapped[str | None] = mapped_column(String(100), nullable=True)
    unpriced_reason: Mapped[str | None] = mapped_column(Text, nullable=True)


class EventRow(Base):
    """Every status transition of a batch or a part: the batch's history is a query."""

    __tablename__ = "events"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"),
                                    primary_key=True, autoincrement=True)
    batch_id: Mapped[str] = mapped_column(String(64), index=True)
    part_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    entity: Mapped[str] = mapped_column(String(10))
    from_status: Mapped[str | None] = mapped_column(String(30), nullable=True)
    to_status: Mapped[str] = mapped_column(String(30))
    at: Mapped[float] = mapped_column(Float)
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)


class DeploymentStateRow(Base):
    """Shared per-deployment state, e.g. blocked after the provider said token_limit_exceeded."""

    __tablename__ = "deployment_state"

    deployment_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    blocked_until: Mapped[float | None] = mapped_column(Float, nullable=True)
    #: The provider rate-limited (429) a poll: no part of the deployment is polled before.
    poll_paused_until: Mapped[float | None] = mapped_column(Float, nullable=True)
    #: Round-robin / weighted routing counter, bumped on every choice.
    counter: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[float] = mapped_column(Float, default=0.0)
