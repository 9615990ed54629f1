"""Files and Batches endpoints, written once and mounted per surface.

Surface differences handled here: Azure's dated surface answers an upload with 201 and a
``Location``, a batch create with 201 (+ enqueued-token headers) from 2025-04-01-preview on,
and its 2024-10-21 file list has no cursors.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, Response
from starlette.concurrency import run_in_threadpool

from batchyard.emulator import render, uploads
from batchyard.emulator.errors import Surface, bad_request
from batchyard.emulator.state import Emulator
from batchyard.emulator.store import page

_PAGED_FILES_SINCE = "2025-04-01"


class BigChunkFileResponse(FileResponse):
    """A file streamed in 1 MB reads and sends instead of Starlette's 64 KB: a 30 MB output
    file is 30 trips through the event loop and the middleware, not 480."""

    chunk_size = 1024 * 1024


def _emu(request: Request) -> Emulator:
    emulator: Emulator = request.app.state.emulator
    return emulator


def _api_version(request: Request) -> str:
    return request.query_params.get("api-version", "")


def _int_param(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise bad_request(f"Invalid '{name}': must be an integer in [{low}, {high}].", name)
    return int(raw)


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(data), status_code=status, headers=headers,
                    media_type="application/json")


def file_routes(surface: Surface) -> APIRouter:
    """``/files`` endpoints for one surface."""
    router = APIRouter()

    @router.post("/files")
    async def upload_file(request: Request) -> Response:
        emu = _emu(request)
        path = emu.new_upload_path()
        received = await uploads.receive(request.headers.get("content-type", ""),
                                         request.stream(), path, emu.config.max_file_bytes)
        try:
            filename, purpose, ttl = uploads.check_upload(received, emu.flavor == "azure")
        except Exception:
            received.discard()
            raise
        entry = emu.add_upload(filename=filename, purpose=purpose, path=path,
                               size=received.size, expires_after=ttl)
        if surface != "azure":
            return _json(render.file_object(entry))
        location = f"{request.base_url}openai/files/{entry.id}?api-version={_api_version(request)}"
        return _json(render.file_object(entry), 201, {"location": location})

    @router.get("/files")
    def list_files(request: Request) -> Response:
        order = request.query_params.get("order", "desc")
        if order not in ("asc", "desc"):
            raise bad_request("Invalid 'order': must be 'asc' or 'desc'.", "order")
        limit = _int_param(request, "limit", 10_000, 1, 10_000)
        items = _emu(request).store.list_files(request.query_params.get("purpose"), order)
        chunk, more = page(items, request.query_params.get("after"), limit)
        cursors = surface != "azure" or _api_version(request) >= _PAGED_FILES_SINCE
        if not cursors:  # one page of everything (after the cursor, so SDK paging ends)
            chunk, more = page(items, request.query_params.get("after"), len(items))
        return _json(render.list_page([render.file_object(f) for f in chunk], more,
                                      cursors=cursors))

    @router.get("/files/{file_id}")
    def retrieve_file(request: Request, file_id: str) -> Response:
        return _json(render.file_object(_emu(request).get_file(file_id)))

    @router.delete("/files/{file_id}")
    def delete_file(request: Request, file_id: str) -> Response:
        return _json(render.deleted_file(_emu(request).delete_file(file_id)))

    @router.get("/files/{file_id}/content")
    def file_content(request: Request, file_id: str) -> Response:
        entry = _emu(request).get_file(file_id)
        return BigChunkFileResponse(entry.path, media_type="application/octet-stream",
                            filename=entry.filename, content_disposition_type="attachment")

    return router


def batch_routes(surface: Surface) -> APIRouter:
    """``/batches`` endpoints for one surface."""
    router = APIRouter()

    @router.post("/batches")
    async def create_batch(request: Request) -> Response:
        try:
            body = orjson.loads(await request.body())
        except orjson.JSONDecodeError as exc:
            raise bad_request("The request body is not valid JSON.") from exc
        emu = _emu(request)
        data = await run_in_threadpool(
            emu.create_batch, body, lambda batch: render.batch_object(batch, surface)
        )
        if surface == "azure" and _api_version(request) >= _PAGED_FILES_SINCE:
            used = emu.store.enqueued_tokens(data.get("model") or "")
            quota = emu.faults.enqueued_token_quota
            headers = {"deployment-enqueued-tokens": str(used),
                       "deployment-maximum-enqueued-tokens": str(quota or 0)}
            return _json(data, 201, headers)
        return _json(data)

    @router.get("/batches")
    def list_batches(request: Request) -> Response:
        limit = _int_param(request, "limit", 20, 1, 100)
        items = _emu(request).store.list_batches()
        chunk, more = page(items, request.query_params.get("after"), limit)
        with _emu(request).store.lock:
            data = [render.batch_object(b, surface) for b in chunk]
        return _json(render.list_page(data, more))

    @router.get("/batches/{batch_id}")
    def retrieve_batch(request: Request, batch_id: str) -> Response:
        emu = _emu(request)
        batch = emu.get_batch(batch_id)
        with emu.store.lock:
            return _json(render.batch_object(batch, surface))

    @router.post("/batches/{batch_id}/cancel")
    def cancel_batch(request: Request, batch_id: str) -> Response:
        emu = _emu(request)
        batch = emu.cancel_batch(batch_id)
        with emu.store.lock:
            return _json(render.batch_object(batch, surface))

    return router
