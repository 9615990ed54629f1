"""OpenAI's surface: ``/v1/files`` and ``/v1/batches``."""

from __future__ import annotations

from fastapi import APIRouter

from batchyard.emulator.handlers import batch_routes, file_routes


def openai_router() -> APIRouter:
    """The OpenAI API mounted under ``/v1``."""
    router = APIRouter(prefix="/v1")
    router.include_router(file_routes("openai"))
    router.include_router(batch_routes("openai"))
    return router
