"""Frozen domain records with OpenAI's field names, passed between services and front ends.

The service layer returns these; ``db/`` converts ORM rows into them and the API turns them
into its wire models (adding ``object`` and dropping internal fields such as ``kind`` and
``owner_key_id``). Timestamps are Unix seconds, as in OpenAI's objects.
"""

from __future__ import annotations

from typing import Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from batchyard.domain.lifecycle import BatchStatus


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class FileRecord(_Record):
    """A stored file: an uploaded input, or an output/error file we render from results."""

    id: str
    bytes: int
    created_at: int
    expires_at: int | None = None
    filename: str
    purpose: str
    #: OpenAI's file status (``uploaded`` / ``processed`` / ``error``).
    status: str = "processed"
    #: Ours: ``input`` (bytes in the file store), ``output`` or ``error`` (rendered from
    #: result rows of ``batch_id``).
    kind: str = "input"
    #: The API key that owns it; ``None`` for the master key.
    owner_key_id: str | None = None


class BatchError(_Record):
    """One entry of ``errors.data``: why a batch failed validation (line is 1-based)."""

    code: str
    message: str
    param: str | None = None
    line: int | None = None


class BatchErrors(_Record):
    """OpenAI's ``errors`` list object."""

    object: str = "list"
    data: tuple[BatchError, ...] = ()


class RequestCounts(_Record):
    """How many requests the batch has, and how many ended well or badly."""

    total: int = 0
    completed: int = 0
    failed: int = 0


class InputTokensDetails(_Record):
    """Part of :class:`BatchUsage`."""

    cached_tokens: int = 0


class OutputTokensDetails(_Record):
    """Part of :class:`BatchUsage`."""

    reasoning_tokens: int = 0


class BatchUsage(_Record):
    """Token totals over every result of the batch (OpenAI's ``usage``)."""

    input_tokens: int = 0
    input_tokens_details: InputTokensDetails = InputTokensDetails()
    output_tokens: int = 0
    output_tokens_details: OutputTokensDetails = OutputTokensDetails()
    total_tokens: int = 0


class BatchCost(_Record):
    """Ours (the Batch object's ``cost``): spend so far and the estimate, exact decimals.

    Amounts are decimal strings (``"0.000412"``) so no JSON float rounds them;
    ``priced_requests`` / ``unpriced_requests`` count answers with and without a known price.
    """

    currency: str = "USD"
    actual: str = "0"
    estimate: str | None = None
    priced_requests: int = 0
    unpriced_requests: int = 0


class BatchRecord(_Record):
    """The public batch: every field of OpenAI's Batch object, plus its owner."""

    id: str
    endpoint: str
    model: str | None = None
    errors: BatchErrors | None = None
    input_file_id: str
    completion_window: str = "24h"
    status: BatchStatus
    output_file_id: str | None = None
    error_file_id: str | None = None
    created_at: int
    in_progress_at: int | None = None
    expires_at: int | None = None
    finalizing_at: int | None = None
    completed_at: int | None = None
    failed_at: int | None = None
    expired_at: int | None = None
    cancelling_at: int | None = None
    cancelled_at: int | None = None
    request_counts: RequestCounts = Field(default_factory=RequestCounts)
    usage: BatchUsage | None = None
    metadata: dict[str, str] | None = None
    owner_key_id: str | None = None
    cost: BatchCost = Field(default_factory=BatchCost)


T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    """One page of a list: OpenAI's cursor fields (pass ``last_id`` as ``after``)."""

    model_config = ConfigDict(frozen=True)

    data: list[T]
    first_id: str | None = None
    last_id: str | None = None
    has_more: bool = False
