"""``/v1/files``: upload (streamed to the file store), list, retrieve, content, delete."""

from __future__ import annotations

import contextlib
import logging
from collections import deque
from functools import partial
from typing import Any, BinaryIO, Literal, cast

import anyio
import anyio.from_thread
from fastapi import APIRouter, Depends, Query, Request
from starlette.requests import ClientDisconnect
from starlette.responses import Response, StreamingResponse

from batchyard.api.deps import principal, services_of
from batchyard.api.multipart import StreamingForm, boundary_of, too_large
from batchyard.api.wire import FILE_PURPOSES, file_object, json_response, list_object
from batchyard.domain.records import FileRecord
from batchyard.errors import BatchyardError, InvalidInputError
from batchyard.services import files as file_service
from batchyard.services import keys
from batchyard.services.container import Services
from batchyard.services.keys import Principal

logger = logging.getLogger(__name__)

#: Room for multipart boundaries and text fields on top of the file's own size.
MULTIPART_OVERHEAD = 1024 * 1024
#: After refusing an upload, read (and drop) at most this much of the rest of the body so
#: the client sees our 413/400 instead of a reset connection.
DRAIN_LIMIT = 64 * 1024 * 1024
EXPIRES_MIN, EXPIRES_MAX = 3600, 2_592_000


#: A worker thread's pull asks the event loop for at least this much body per hop (what has
#: arrived in up to this many receive() calls): one hop per ~64 KiB message cost a thread
#: round trip each, ~3,200 of them for a 200 MB upload.
PULL_BYTES = 1 << 20


class BodyPuller:
    """Pulls request body chunks from a worker thread (the event loop does the receiving)."""

    def __init__(self, request: Request) -> None:
        self._receive = request.receive
        self._done = False
        self._pending: deque[bytes] = deque()

    async def _next_messages(self) -> list[bytes]:
        pieces: list[bytes] = []
        size = 0
        while not self._done and size < PULL_BYTES:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                raise ClientDisconnect()
            self._done = not message.get("more_body", False)
            body = cast(bytes, message.get("body", b""))
            if body:
                pieces.append(body)
                size += len(body)
        return pieces

    def __call__(self) -> bytes:
        """The next body message's bytes (b"" at the end); one thread hop per ~1 MiB.

        The messages of a hop are handed out one by one, not joined: joining copied every
        byte of the upload once more, and the parser takes pieces of any size.
        """
        while not self._pending and not self._done:
            self._pending.extend(anyio.from_thread.run(self._next_messages))
        return self._pending.popleft() if self._pending else b""

    def drain(self, limit: int = DRAIN_LIMIT) -> None:
        """Read and drop up to ``limit`` more bytes (stopping if the client stalls)."""
        seen = 0
        try:
            while seen <= limit and (chunk := self()):
                seen += len(chunk)
        except BatchyardError:
            return


def _purpose(value: str | None) -> str:
    if not value:
        raise InvalidInputError("Missing required parameter: 'purpose'.", param="purpose",
                                code="missing_required_parameter")
    if value not in FILE_PURPOSES:
        raise InvalidInputError(f"Invalid value for 'purpose': {value!r}. Supported values are: "
                                f"{', '.join(FILE_PURPOSES)}.", param="purpose",
                                code="invalid_value")
    return value


def _first(fields: dict[str, str], *names: str) -> str | None:
    """The value of the first of ``names`` that was sent (an empty value counts as sent)."""
    return next((fields[name] for name in names if name in fields), None)


def _expires_after(fields: dict[str, str]) -> int | None:
    anchor = _first(fields, "expires_after[anchor]", "expires_after.anchor")
    seconds = _first(fields, "expires_after[seconds]", "expires_after.seconds")
    if anchor is None and seconds is None:
        return None
    if anchor != "created_at":
        raise InvalidInputError("expires_after.anchor must be 'created_at'.",
                                param="expires_after.anchor", code="invalid_value")
    try:
        value = int(seconds or "")
    except ValueError:
        value = -1
    if not EXPIRES_MIN <= value <= EXPIRES_MAX:
        raise InvalidInputError(f"expires_after.seconds must be between {EXPIRES_MIN} and "
                                f"{EXPIRES_MAX}.", param="expires_after.seconds",
                                code="invalid_value")
    return value


def _file_part(form: StreamingForm) -> Any:
    """The stream to store: the live file part, or a spooled copy if fields follow it."""
    form.read_until_file()
    if form.filename is None:
        raise InvalidInputError("Missing required parameter: 'file'.", param="file",
                                code="missing_required_parameter")
    if "purpose" in form.fields:
        return form.file_stream()
    # Fields normally precede the file (the SDK, and curl -F purpose=... -F file=@...); when
    # they follow it, the file part is spooled (to disk past 1 MB) to reach them.
    spooled = form.spool_file()
    form.finish()
    return spooled


def _store_upload(svc: Services, who: Principal, pull: BodyPuller, boundary: bytes,
                  limit: int) -> FileRecord:
    """Runs in a worker thread: parse the form as it arrives and stream the file part."""
    form = StreamingForm(pull, boundary, max_file_bytes=limit)
    try:
        with contextlib.ExitStack() as cleanup:
            stream = _file_part(form)
            if hasattr(stream, "close"):
                cleanup.callback(stream.close)
            purpose = _purpose(form.fields.get("purpose"))
            if purpose == "batch" and not (form.filename or "").lower().endswith(".jsonl"):
                raise InvalidInputError("Invalid file format for Batch API. Must be .jsonl")
            record = file_service.create_file(
                svc, owner=who.owner, filename=form.filename or "upload.jsonl",
                purpose=purpose, stream=cast(BinaryIO, stream), max_bytes=limit,
                expires_after=_expires_after(form.fields))
        form.finish()
        return record
    except BatchyardError:
        pull.drain()
        raise


def build_router(provider: str | None) -> APIRouter:
    """The files routes (the provider does not matter for files: bytes stay with us)."""
    del provider
    router = APIRouter()

    @router.post("/files")
    async def create_file(request: Request, who: Principal = Depends(principal)) -> Response:
        svc = services_of(request)
        limit = keys.upload_limit(svc, who)
        boundary = boundary_of(request.headers.get("content-type"))
        pull = BodyPuller(request)
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit + MULTIPART_OVERHEAD:
            if int(declared) <= DRAIN_LIMIT:
                await anyio.to_thread.run_sync(pull.drain)
            raise too_large(limit)
        record = await anyio.to_thread.run_sync(
            partial(_store_upload, svc, who, pull, boundary, limit))
        logger.info("api.file_created", extra={"file_id": getattr(record, "id", None)})
        return json_response(file_object(record))

    @router.get("/files")
    def list_files(request: Request, purpose: str | None = None,
                   limit: int = Query(10000, ge=1, le=10000), after: str | None = None,
                   order: Literal["asc", "desc"] = "desc",
                   who: Principal = Depends(principal)) -> Response:
        page = file_service.list_files(services_of(request), owner=who.owner, purpose=purpose,
                                       limit=limit, after=after, order=order)
        return json_response(list_object((file_object(f) for f in page.data),
                                         has_more=page.has_more))

    @router.get("/files/{file_id}")
    def retrieve_file(file_id: str, request: Request,
                      who: Principal = Depends(principal)) -> Response:
        record = file_service.get_file(services_of(request), file_id, owner=who.owner)
        return json_response(file_object(record))

    @router.get("/files/{file_id}/content")
    def file_content(file_id: str, request: Request,
                     who: Principal = Depends(principal)) -> Response:
        svc = services_of(request)
        # Look the file up first so a 404 is answered before the streamed body starts.
        file_service.get_file(svc, file_id, owner=who.owner)
        chunks = file_service.iter_file_content(svc, file_id, owner=who.owner)
        return StreamingResponse(chunks, media_type="application/octet-stream")

    @router.delete("/files/{file_id}")
    def delete_file(file_id: str, request: Request,
                    who: Principal = Depends(principal)) -> Response:
        record = file_service.delete_file(services_of(request), file_id, owner=who.owner)
        return json_response({"id": getattr(record, "id", file_id), "object": "file",
                              "deleted": True})

    return router
