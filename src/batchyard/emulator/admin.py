"""``/_emulator/*``: inspection and control for tests and demos (no auth, no faults)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import ValidationError

from batchyard.emulator.errors import EmulatorError
from batchyard.emulator.state import Emulator


def admin_router() -> APIRouter:
    """GET stats, GET/POST faults, POST reset."""
    router = APIRouter(prefix="/_emulator")

    def emu(request: Request) -> Emulator:
        emulator: Emulator = request.app.state.emulator
        return emulator

    @router.get("/stats")
    def stats(request: Request) -> dict[str, Any]:
        return emu(request).stats()

    @router.get("/faults")
    def faults(request: Request) -> dict[str, Any]:
        return emu(request).faults.model_dump()

    @router.post("/faults")
    async def set_faults(request: Request) -> dict[str, Any]:
        knobs = await request.json()
        if not isinstance(knobs, dict):
            raise EmulatorError(400, "Send a JSON object of fault knobs.")
        try:
            return emu(request).set_faults(**knobs).model_dump()
        except ValidationError as exc:
            raise EmulatorError(400, str(exc)) from exc

    @router.post("/reset")
    def reset(request: Request) -> dict[str, Any]:
        emu(request).reset()
        return {"reset": True}

    return router
