"""The OpenAI adapter: how each Files and Batches operation looks on OpenAI's wire.

:class:`OpenAIOperations` builds every request and names the parser for its answer; it does
no I/O; :mod:`batchyard.providers.client` sends the operations, sync or async. Azure
(:mod:`batchyard.providers.azure`) is this adapter with other URLs, auth and paging rules.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from batchyard.providers.base import (
    ProviderBatch,
    ProviderConfig,
    ProviderFile,
    ProviderPage,
    UploadSource,
)
from batchyard.providers.http import Call, Op, Upload, upload_filename
from batchyard.providers.wire import (
    parse_batch,
    parse_deleted,
    parse_file,
    parse_page,
)

OPENAI_API_BASE = "https://api.openai.com/v1"
JSONL_CONTENT_TYPE = "application/jsonl"


def _file_page(body: Any) -> ProviderPage[ProviderFile]:
    return parse_page(body, parse_file)


def _batch_page(body: Any) -> ProviderPage[ProviderBatch]:
    return parse_page(body, parse_batch)


class OpenAIOperations:
    """Request building and answer parsing for OpenAI's Files and Batches API."""

    #: ``limit`` when listing every file (OpenAI's maximum and default).
    files_page_size = 10_000

    def __init__(self, config: ProviderConfig) -> None:
        self.config = config
        self.base_url = (config.api_base or OPENAI_API_BASE).rstrip("/")

    # -- what differs per provider ------------------------------------------------------
    def auth_headers(self) -> dict[str, str]:
        """``Authorization: Bearer <key>`` (sent on every request by the client)."""
        key = self.config.api_key
        return {"Authorization": f"Bearer {key.get_secret_value()}"} if key else {}

    def url(self, *segments: str) -> str:
        """An absolute URL under the API base; ids are path-quoted."""
        return "/".join([self.base_url, *(quote(part, safe="") for part in segments)])

    def query(self, **params: str | int | None) -> dict[str, str | int]:
        """Query parameters without the ``None`` ones (Azure adds ``api-version``)."""
        return {name: value for name, value in params.items() if value is not None}

    def list_files_query(self, purpose: str | None, limit: int | None,
                         after: str | None) -> dict[str, str | int]:
        """Query for one page of ``GET /files``."""
        return self.query(purpose=purpose, limit=limit, after=after)

    # -- files ---------------------------------------------------------------------------
    def upload_file(self, source: UploadSource, *, filename: str | None,
                    purpose: str) -> Op[ProviderFile]:
        """``POST /files`` (multipart; the file part is streamed)."""
        upload = Upload(source=source, filename=upload_filename(source, filename),
                        fields={"purpose": purpose}, content_type=JSONL_CONTENT_TYPE)
        return Op(Call("POST", self.url("files"), self.query(), upload=upload), parse_file)

    def retrieve_file(self, file_id: str) -> Op[ProviderFile]:
        """``GET /files/{id}``."""
        return Op(Call("GET", self.url("files", file_id), self.query()), parse_file)

    def list_files_page(self, purpose: str | None, limit: int | None,
                        after: str | None) -> Op[ProviderPage[ProviderFile]]:
        """One page of ``GET /files``."""
        params = self.list_files_query(purpose, limit, after)
        return Op(Call("GET", self.url("files"), params), _file_page)

    def delete_file(self, file_id: str) -> Op[bool]:
        """``DELETE /files/{id}``."""
        return Op(Call("DELETE", self.url("files", file_id), self.query()), parse_deleted)

    def file_content(self, file_id: str) -> Call:
        """``GET /files/{id}/content`` (raw bytes, streamed by the executor)."""
        return Call("GET", self.url("files", file_id, "content"), self.query())

    # -- batches -------------------------------------------------------------------------
    def create_batch(self, *, input_file_id: str, endpoint: str, completion_window: str,
                     metadata: dict[str, str] | None) -> Op[ProviderBatch]:
        """``POST /batches``."""
        body: dict[str, Any] = {"input_file_id": input_file_id, "endpoint": endpoint,
                                "completion_window": completion_window}
        if metadata is not None:
            body["metadata"] = metadata
        return Op(Call("POST", self.url("batches"), self.query(), json=body), parse_batch)

    def retrieve_batch(self, batch_id: str) -> Op[ProviderBatch]:
        """``GET /batches/{id}``."""
        return Op(Call("GET", self.url("batches", batch_id), self.query()), parse_batch)

    def list_batches_page(self, limit: int | None,
                          after: str | None) -> Op[ProviderPage[ProviderBatch]]:
        """One page of ``GET /batches``."""
        params = self.query(limit=limit, after=after)
        return Op(Call("GET", self.url("batches"), params), _batch_page)

    def cancel_batch(self, batch_id: str) -> Op[ProviderBatch]:
        """``POST /batches/{id}/cancel``."""
        return Op(Call("POST", self.url("batches", batch_id, "cancel"), self.query()),
                  parse_batch)
