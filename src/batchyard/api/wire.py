"""Wire models of our API: OpenAI's shapes for files, batches, lists and create bodies.

Service records are converted here and only here; every key OpenAI sends is present (``null``
when unset) so strict clients parse our objects like theirs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

import orjson
from pydantic import BaseModel, ConfigDict, Field, field_validator
from starlette.responses import Response

from batchyard.domain.reports import PartSummary
from batchyard.domain.schedule_records import ScheduleRecord, ScheduleRunRecord

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

BATCH_ENDPOINTS = ("/v1/responses", "/v1/chat/completions", "/v1/embeddings", "/v1/completions",
                   "/v1/moderations", "/v1/images/generations", "/v1/images/edits", "/v1/videos")
#: Azure's own docs write the endpoint without /v1; accepted on the /azure routes.
AZURE_ENDPOINTS = tuple(e.removeprefix("/v1") for e in BATCH_ENDPOINTS)
#: Lines already in Anthropic's shape (body = Messages params); accepted on the /anthropic routes.
ANTHROPIC_ENDPOINTS = ("/v1/messages",)
FILE_PURPOSES = ("assistants", "batch", "fine-tune", "vision", "user_data", "evals")
METADATA_MAX_PAIRS, METADATA_MAX_KEY, METADATA_MAX_VALUE = 16, 64, 512

_FILE_FIELDS = ("id", "bytes", "created_at", "expires_at", "filename", "purpose", "status",
                "status_details")
_BATCH_FIELDS = ("id", "endpoint", "model", "errors", "input_file_id", "completion_window",
                 "status", "output_file_id", "error_file_id", "created_at", "in_progress_at",
                 "expires_at", "finalizing_at", "completed_at", "failed_at", "expired_at",
                 "cancelling_at", "cancelled_at", "request_counts", "usage", "metadata",
                 "cost")


class CreateBatchBody(BaseModel):
    """``POST /v1/batches`` body: OpenAI's fields plus ``model`` (route to a model group)."""

    model_config = ConfigDict(extra="ignore")

    input_file_id: str
    endpoint: str
    completion_window: Literal["24h"]
    metadata: dict[str, str] | None = None
    model: str | None = None

    @field_validator("metadata")
    @classmethod
    def _metadata_limits(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        if value is None:
            return None
        if len(value) > METADATA_MAX_PAIRS:
            raise ValueError(f"at most {METADATA_MAX_PAIRS} key-value pairs are allowed")
        for key, item in value.items():
            if len(key) > METADATA_MAX_KEY:
                raise ValueError(f"keys must be at most {METADATA_MAX_KEY} characters")
            if len(item) > METADATA_MAX_VALUE:
                raise ValueError(f"values must be at most {METADATA_MAX_VALUE} characters")
        return value


class CreateKeyBody(BaseModel):
    """``POST /admin/keys`` body."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200, pattern=r"\S")
    max_file_bytes: int | None = Field(default=None, gt=0, le=2**63 - 1)
    max_batches_in_flight: int | None = Field(default=None, gt=0, le=2**31 - 1)
    can_schedule: bool = False


#: What the wire renderers take: a service record (pydantic), a dataclass or a mapping.
Record: TypeAlias = "BaseModel | DataclassInstance | Mapping[str, Any]"


def plain(obj: Any) -> Any:
    """A record (dataclass, pydantic model, mapping or scalar) as plain JSON-able data."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, BaseModel):
        return obj.model_dump(mode="json")
    if isinstance(obj, dict):
        return {str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [plain(v) for v in obj]
    return obj


def file_object(record: Record) -> dict[str, Any]:
    """OpenAI's File object."""
    data = plain(record)
    wire = {key: data.get(key) for key in _FILE_FIELDS}
    wire["object"] = "file"
    wire["status"] = wire["status"] or "processed"
    return wire


def _errors_wire(errors: Any) -> Any:
    if errors is None or (isinstance(errors, dict) and "data" in errors):
        return errors
    items = errors if isinstance(errors, list) else [errors]
    return {"object": "list", "data": items} if items else None


def batch_object(record: Record) -> dict[str, Any]:
    """OpenAI's Batch object."""
    data = plain(record)
    wire = {key: data.get(key) for key in _BATCH_FIELDS}
    wire["object"] = "batch"
    wire["errors"] = _errors_wire(wire["errors"])
    if wire["request_counts"] is None:
        wire["request_counts"] = {"total": int(data.get("total") or 0),
                                  "completed": int(data.get("completed") or 0),
                                  "failed": int(data.get("failed") or 0)}
    return wire


def part_object(part: PartSummary) -> dict[str, Any]:
    """One part of a batch (batchyard's extension): deployment, provider batch and counts."""
    return {"object": "batch.part", **part.model_dump(mode="json")}


def schedule_object(record: ScheduleRecord) -> dict[str, Any]:
    """A schedule as the API and CLI show it (the webhook secret only as a flag)."""
    return {
        "id": record.id, "object": "schedule", "name": record.name, "cron": record.cron,
        "timezone": record.timezone, "source": record.source, "endpoint": record.endpoint,
        "model": record.model, "completion_window": record.completion_window,
        "metadata": record.metadata, "webhook_url": record.webhook_url,
        "webhook_secret_set": record.webhook_secret is not None, "overlap": record.overlap,
        "catch_up": record.catch_up, "enabled": record.enabled,
        "next_fire_at": record.next_fire_at, "last_fire_at": record.last_fire_at,
        "created_at": record.created_at, "owner": record.owner,
    }


def schedule_run_object(run: ScheduleRunRecord) -> dict[str, Any]:
    """A schedule run as the API and CLI show it."""
    return {
        "id": run.id, "object": "schedule.run", "schedule_id": run.schedule_id,
        "fire_time": run.fire_time, "status": run.status, "batch_id": run.batch_id,
        "file_id": run.file_id, "reason": run.reason, "error": run.error,
        "missed": run.missed, "batch_status": run.batch_status,
        "created_at": run.created_at, "finished_at": run.finished_at,
    }


def list_object(items: Iterable[dict[str, Any]], *, has_more: bool) -> dict[str, Any]:
    """OpenAI's cursor page: object, data, first_id, last_id, has_more."""
    data = list(items)
    return {"object": "list", "data": data, "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None, "has_more": bool(has_more)}


def json_response(body: Any, status_code: int = 200) -> Response:
    """A JSON response serialized with orjson (the hot paths avoid a second validation)."""
    return Response(orjson.dumps(body), status_code=status_code, media_type="application/json")
