"""The web dashboard, mounted at ``/ui``: server-rendered pages plus HTML fragments that a
few lines of JavaScript poll, so a running batch updates without reloading the page.

It is another front end over the same services as the API (same key check, same owner
scoping, same cancel), plus the read-only aggregates of :mod:`batchyard.db.dashboard`.
Templates and static files ship inside the package; nothing is fetched from the network.
"""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
from fastapi import APIRouter, Depends, FastAPI, Form, Request
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool
from starlette.responses import RedirectResponse, Response, StreamingResponse

from batchyard.db import dashboard
from batchyard.domain.lifecycle import OPEN_BATCH_STATUSES, TERMINAL_BATCH_STATUSES, BatchStatus
from batchyard.errors import AuthenticationError, BatchyardError, NotFoundError
from batchyard.services import batches as batch_service
from batchyard.services import files as file_service
from batchyard.services import keys
from batchyard.services import schedules as schedule_service
from batchyard.services.keys import Principal
from batchyard.ui import session
from batchyard.ui.formatting import install_filters

HERE = Path(__file__).parent
STATUSES = [s.value for s in BatchStatus]
POLL_MS = 2000


def build_ui(parent: FastAPI) -> FastAPI:
    """The dashboard app; it uses the services of ``parent`` (the API app it is mounted in)."""
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    install_filters(templates.env)
    ui = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    ui.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")

    def svc() -> Any:
        return parent.state.services

    async def who(request: Request) -> Principal:
        return await session.current(svc(), request)

    def page(request: Request, name: str, context: dict[str, Any], status: int = 200) -> Response:
        context.setdefault("poll_ms", POLL_MS)
        response = templates.TemplateResponse(request, name, context, status_code=status)
        response.headers["cache-control"] = "no-store"
        return response

    _install_handlers(ui, page)
    ui.include_router(_auth_routes(svc, page))
    ui.include_router(_batch_routes(svc, who, page))
    ui.include_router(_download_routes(svc, who))
    ui.include_router(_other_routes(svc, who, page))
    return ui


Page = Callable[..., Response]


def _install_handlers(ui: FastAPI, page: Page) -> None:
    async def sign_in(request: Request, exc: Exception) -> Response:
        if request.headers.get("x-fragment"):
            return Response(status_code=401)  # the polling script sends the user to sign in
        return RedirectResponse("/ui/login", status_code=303)

    async def failure(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, BatchyardError)
        status = exc.http_status if exc.http_status < 500 else 500
        return page(request, "error.html", {"message": exc.message, "status": status,
                                            "principal": None}, status)

    ui.add_exception_handler(session.SignInRequired, sign_in)
    ui.add_exception_handler(BatchyardError, failure)


def _auth_routes(svc: Callable[[], Any], page: Page) -> APIRouter:
    router = APIRouter()

    @router.get("/")
    async def home() -> Response:
        return RedirectResponse("/ui/batches", status_code=303)

    @router.get("/login")
    async def login_form(request: Request) -> Response:
        keyless = svc().settings.master_key is None and session.is_local(request)
        return page(request, "login.html", {"error": None, "keyless": keyless,
                                            "principal": None})

    @router.post("/login")
    async def login(request: Request, key: str = Form("")) -> Response:
        session.check_origin(request)
        token = key.strip() or None
        try:
            await session.resolve(svc(), request, token)
        except AuthenticationError:
            return page(request, "login.html", {"error": "That key was not accepted.",
                                                "keyless": False, "principal": None}, 401)
        response = RedirectResponse("/ui/batches", status_code=303)
        session.remember(response, request, token)
        return response

    @router.post("/logout")
    async def logout(request: Request) -> Response:
        session.check_origin(request)
        response = RedirectResponse("/ui/login", status_code=303)
        session.forget(response)
        return response

    return router


def _filter(principal: Principal, status: str | None, q: str | None) -> dashboard.BatchFilter:
    return dashboard.BatchFilter(owner=principal.owner,
                                 status=status if status in STATUSES else None,
                                 query=(q or "").strip()[:200] or None)


def _list_context(svc: Any, flt: dashboard.BatchFilter) -> dict[str, Any]:
    with dashboard.connect(svc.engine) as conn:
        if flt.query:
            rows, counts = dashboard.search_batches(conn, flt)
        else:
            rows = dashboard.list_batches(conn, flt)
            counts = dashboard.status_counts(conn, flt)
    return {"batches": rows, "counts": counts, "statuses": STATUSES, "status": flt.status,
            "q": flt.query or "", "now": time.time(), "open": OPEN_BATCH_STATUSES,
            "show_cost": any(r["cost"] is not None or r["estimate"] is not None for r in rows)}


def _detail_context(svc: Any, batch_id: str, owner: str | None) -> dict[str, Any]:
    record = batch_service.get_batch(svc, batch_id, owner=owner)
    with dashboard.connect(svc.engine) as conn:
        parts = dashboard.batch_parts(conn, batch_id)
        events = dashboard.batch_events(conn, batch_id)
        failures = dashboard.failed_by_code(conn, batch_id)
    done = sum(p["done"] or 0 for p in parts)
    return {"batch": record, "parts": parts, "events": events, "failures": failures,
            "now": time.time(), "live_done": done,
            "terminal": record.status in TERMINAL_BATCH_STATUSES,
            "validation_errors": list(record.errors.data) if record.errors else []}


def _batch_routes(svc: Callable[[], Any], who: Any, page: Page) -> APIRouter:
    router = APIRouter()

    @router.get("/batches")
    async def batches(request: Request, status: str | None = None, q: str | None = None,
                      principal: Principal = Depends(who)) -> Response:
        context = await run_in_threadpool(_list_context, svc(), _filter(principal, status, q))
        return page(request, "batches.html", {**context, "principal": principal})

    @router.get("/fragments/batches")
    async def batch_rows(request: Request, status: str | None = None, q: str | None = None,
                         principal: Principal = Depends(who)) -> Response:
        context = await run_in_threadpool(_list_context, svc(), _filter(principal, status, q))
        return page(request, "_batch_rows.html", context)

    @router.get("/batches/{batch_id}")
    async def batch(request: Request, batch_id: str,
                    principal: Principal = Depends(who)) -> Response:
        context = await run_in_threadpool(_detail_context, svc(), batch_id, principal.owner)
        return page(request, "batch.html", {**context, "principal": principal})

    @router.get("/fragments/batches/{batch_id}")
    async def batch_live(request: Request, batch_id: str,
                         principal: Principal = Depends(who)) -> Response:
        context = await run_in_threadpool(_detail_context, svc(), batch_id, principal.owner)
        return page(request, "_batch_live.html", context)

    @router.post("/batches/{batch_id}/cancel")
    async def cancel(request: Request, batch_id: str,
                     principal: Principal = Depends(who)) -> Response:
        session.check_origin(request)
        await run_in_threadpool(batch_service.cancel_batch, svc(), batch_id,
                                owner=principal.owner)
        return RedirectResponse(f"/ui/batches/{batch_id}", status_code=303)

    return router


def _attachment(chunks: Iterator[bytes], filename: str, media_type: str) -> Response:
    return StreamingResponse(chunks, media_type=media_type, headers={
        "content-disposition": f'attachment; filename="{filename}"',
        "cache-control": "no-store"})


def _jsonl_results(svc: Any, batch_id: str) -> Iterator[bytes]:
    with dashboard.connect(svc.engine) as conn:
        for row in dashboard.iter_results(conn, batch_id):
            body = row.pop("response_body")
            row["response"] = orjson.loads(body) if body else None
            yield orjson.dumps(row) + b"\n"


def _csv_results(svc: Any, batch_id: str) -> Iterator[bytes]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(dashboard.RESULT_COLUMNS)
    with dashboard.connect(svc.engine) as conn:
        for n, row in enumerate(dashboard.iter_results(conn, batch_id), start=1):
            writer.writerow([row[c] for c in dashboard.RESULT_COLUMNS])
            if n % 500 == 0:
                yield buffer.getvalue().encode()
                buffer.seek(0)
                buffer.truncate()
    yield buffer.getvalue().encode()


def _download_routes(svc: Callable[[], Any], who: Any) -> APIRouter:
    router = APIRouter()

    @router.get("/batches/{batch_id}/results.{fmt}")
    async def results(batch_id: str, fmt: str, principal: Principal = Depends(who)) -> Response:
        if fmt not in ("jsonl", "csv"):
            raise NotFoundError(f"No such download: results.{fmt}")
        await run_in_threadpool(batch_service.get_batch, svc(), batch_id, owner=principal.owner)
        if fmt == "csv":
            return _attachment(_csv_results(svc(), batch_id), f"{batch_id}_results.csv",
                               "text/csv")
        return _attachment(_jsonl_results(svc(), batch_id), f"{batch_id}_results.jsonl",
                           "application/jsonl")

    @router.get("/files/{file_id}")
    async def file_content(file_id: str, principal: Principal = Depends(who)) -> Response:
        record = await run_in_threadpool(file_service.get_file, svc(), file_id,
                                         owner=principal.owner)
        chunks = file_service.iter_file_content(svc(), file_id, owner=principal.owner)
        return _attachment(chunks, record.filename, "application/octet-stream")

    return router


def _schedules_context(svc: Any, owner: str | None) -> dict[str, Any]:
    items = schedule_service.list_schedules(svc, owner=owner)
    runs = {s.id: schedule_service.list_runs(svc, s.id, owner=owner, limit=5) for s in items}
    return {"schedules": items, "runs": runs, "now": time.time()}


def _deployments_context(svc: Any) -> dict[str, Any]:
    with dashboard.connect(svc.engine) as conn:
        load = dashboard.deployment_load(conn)
    now = time.time()
    rows = []
    for dep in svc.deployments.all():
        info = load.get(dep.id, {"parts": 0, "tokens": 0, "blocked_until": None})
        blocked = info["blocked_until"] is not None and info["blocked_until"] > now
        rows.append({"id": dep.id, "model_name": dep.model_name, "provider": dep.provider,
                     "mode": dep.mode, "quota": dep.enqueued_token_quota, **info,
                     "health": "blocked (quota)" if blocked else "ok"})
    return {"deployments": rows, "now": now}


def _other_routes(svc: Callable[[], Any], who: Any, page: Page) -> APIRouter:
    router = APIRouter()

    @router.get("/schedules")
    async def schedules(request: Request, principal: Principal = Depends(who)) -> Response:
        context = await run_in_threadpool(_schedules_context, svc(), principal.owner)
        return page(request, "schedules.html", {**context, "principal": principal})

    @router.post("/schedules/{schedule_id}/{action}")
    async def toggle(request: Request, schedule_id: str, action: str,
                     principal: Principal = Depends(who)) -> Response:
        session.check_origin(request)
        if action not in ("pause", "resume"):
            raise NotFoundError(f"No such action: {action}")
        fn = schedule_service.pause_schedule if action == "pause" else \
            schedule_service.resume_schedule
        await run_in_threadpool(fn, svc(), schedule_id, owner=principal.owner)
        return RedirectResponse("/ui/schedules", status_code=303)

    @router.get("/deployments")
    async def deployments(request: Request, principal: Principal = Depends(who)) -> Response:
        keys.require_master(principal)
        context = await run_in_threadpool(_deployments_context, svc())
        return page(request, "deployments.html", {**context, "principal": principal})

    return router
