"""Azure OpenAI's two surfaces.

* dated ("legacy"): ``/openai/files...`` and ``/openai/batches...``, ``?api-version=``
  required, Microsoft error envelope;
* v1: ``/openai/v1/files...`` and ``/openai/v1/batches...``, OpenAI shapes, no api-version.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from batchyard.emulator.errors import EmulatorError
from batchyard.emulator.handlers import batch_routes, file_routes


def require_api_version(request: Request) -> None:
    """The dated surface refuses calls without ``api-version``."""
    if not request.query_params.get("api-version"):
        raise EmulatorError(
            400,
            "The api-version query parameter (?api-version=) is required for all requests.",
            param="api-version",
            azure_code="MissingApiVersionParameter",
        )


def azure_routers() -> list[APIRouter]:
    """The v1 router first (its prefix is the more specific one), then the dated one."""
    v1 = APIRouter(prefix="/openai/v1")
    v1.include_router(file_routes("azure_v1"))
    v1.include_router(batch_routes("azure_v1"))
    legacy = APIRouter(prefix="/openai", dependencies=[Depends(require_api_version)])
    legacy.include_router(file_routes("azure"))
    legacy.include_router(batch_routes("azure"))
    return [v1, legacy]
