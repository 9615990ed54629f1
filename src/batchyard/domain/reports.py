"""Records that explain a batch to a person or a script: each part's provider facts, and the
failed requests grouped by error code. Built by services (from SQL) or by a remote client
(from the API's JSON); rendered by the CLI."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True)


class PartSummary(_Record):
    """One part of a batch: where it went and what the provider says about it."""

    id: str
    seq: int
    attempt: int = 1
    deployment: str | None = None
    status: str
    request_count: int = 0
    provider_batch_id: str | None = None
    provider_status: str | None = None
    #: Requests the provider reported finished (succeeded or failed) at the last poll.
    provider_done: int = 0
    #: Succeeded / failed requests: the provider's live counts while the part is at the
    #: provider, the ingested result rows once it has ended.
    completed: int = 0
    failed: int = 0
    #: The provider's own reason when the part failed (code: message), or the last error.
    error: str | None = None


class FailureExample(_Record):
    """One failed request, as an example of its group."""

    custom_id: str
    line: int | None = None
    status_code: int | None = None
    message: str | None = None


class FailureGroup(_Record):
    """The failed requests that share one error code ("" when the provider gave none)."""

    code: str
    count: int
    examples: tuple[FailureExample, ...] = ()


class ResultPreview(_Record):
    """A short view of one result row (the demo's table)."""

    line: int
    custom_id: str
    status_code: int | None = None
    attempt: int = 1
    answer: str = ""
    error_code: str | None = None
