"""Anthropic's surface: ``/v1/messages/batches``."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from batchyard.emulator.errors import EmulatorError
from batchyard.emulator.handlers import BigChunkFileResponse
from batchyard.emulator.message_batches import MessageBatches, batch_object
from batchyard.emulator.state import Emulator


def _batches(request: Request) -> MessageBatches:
    emulator: Emulator = request.app.state.emulator
    return emulator.message_batches


def _json(data: Any) -> Response:
    return Response(orjson.dumps(data), media_type="application/json")


def _base(request: Request) -> str:
    return str(request.base_url)


def _limit(request: Request) -> int:
    raw = request.query_params.get("limit", "20")
    if not raw.isdigit() or not 1 <= int(raw) <= 1000:
        raise EmulatorError(400, "limit: Input should be between 1 and 1000")
    return int(raw)


def anthropic_router() -> APIRouter:
    """The Message Batches API mounted under ``/v1/messages/batches``."""
    router = APIRouter(prefix="/v1/messages/batches")

    @router.post("")
    async def create(request: Request) -> Response:
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > _batches(request).host.config.max_batch_bytes:
            raise EmulatorError(413, "Request exceeds the maximum allowed number of bytes.")
        raw = await request.body()
        return _json(await run_in_threadpool(_batches(request).create, raw))

    @router.get("")
    def list_batches(request: Request) -> Response:
        params = request.query_params
        if params.get("after_id") and params.get("before_id"):
            raise EmulatorError(400, "Only one of after_id and before_id may be given.")
        chunk, more = _batches(request).list_page(_limit(request), params.get("after_id"),
                                                  params.get("before_id"))
        with _batches(request).host.store.lock:
            data = [batch_object(b, _base(request)) for b in chunk]
        return _json({"data": data, "has_more": more,
                      "first_id": data[0]["id"] if data else None,
                      "last_id": data[-1]["id"] if data else None})

    @router.get("/{batch_id}")
    def retrieve(request: Request, batch_id: str) -> Response:
        batches = _batches(request)
        batch = batches.get(batch_id)
        with batches.host.store.lock:
            return _json(batch_object(batch, _base(request)))

    @router.post("/{batch_id}/cancel")
    def cancel(request: Request, batch_id: str) -> Response:
        batches = _batches(request)
        batch = batches.cancel(batch_id)
        with batches.host.store.lock:
            return _json(batch_object(batch, _base(request)))

    @router.delete("/{batch_id}")
    def delete(request: Request, batch_id: str) -> Response:
        return _json(_batches(request).delete(batch_id))

    @router.get("/{batch_id}/results")
    def results(request: Request, batch_id: str) -> Response:
        path = _batches(request).results_path(batch_id)
        return BigChunkFileResponse(path, media_type="application/binary")

    return router
