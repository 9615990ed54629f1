"""The remote backend: a running batchyard server's HTTP API (``--url`` / ``BATCHYARD_URL``).

Batches and files go through the OpenAI-compatible routes; parts, keys, schedules and
deployment health through our own extensions. The server's error envelope becomes a one-line
CommandError; a refused connection says which address was tried.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import orjson

from batchyard.cli.common import JsonObject, fail

if TYPE_CHECKING:
    from batchyard.domain.records import BatchRecord
    from batchyard.domain.reports import FailureGroup, PartSummary

#: Seconds to wait for the server (uploads of large files get their own, longer, timeout).
TIMEOUT = httpx.Timeout(30.0, connect=5.0)


def _batch(data: JsonObject) -> BatchRecord:
    from batchyard.domain.records import BatchRecord

    fields = BatchRecord.model_fields
    return BatchRecord.model_validate({k: v for k, v in data.items() if k in fields})


def _error_text(response: httpx.Response) -> str:
    try:
        error = response.json().get("error") or {}
    except ValueError:
        return f"HTTP {response.status_code}: {response.text[:200]}"
    message = error.get("message") or response.reason_phrase
    code = error.get("code")
    return f"{message} [{code}]" if code else str(message)


def _custom_id(line: bytes) -> str:
    return str(orjson.loads(line).get("custom_id", ""))


class RemoteBackend:
    """The :class:`~batchyard.cli.backend.Backend` over a server's HTTP API."""

    def __init__(self, url: str, api_key: str | None,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.base = url.rstrip("/")
        if self.base.endswith("/v1"):
            self.base = self.base[: -len("/v1")]
        self.where = f"server {self.base} (--url / BATCHYARD_URL)"
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.http = httpx.Client(base_url=self.base, headers=headers, timeout=TIMEOUT,
                                 transport=transport)

    def close(self) -> None:
        """Close the connection pool."""
        self.http.close()

    def _call(self, method: str, path: str, *, missing_ok: bool = False, **kwargs: Any) -> Any:
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            fail(f"cannot reach the batchyard server at {self.base}: "
                 f"{exc.__class__.__name__}: {exc}")
        if missing_ok and response.status_code == 404:
            return None
        if response.status_code >= 400:
            fail(f"{self.base}{path}: {_error_text(response)}")
        return response.json()

    def _lines(self, file_id: str | None) -> Iterator[bytes]:
        if not file_id:
            return
        try:
            with self.http.stream("GET", f"/v1/files/{file_id}/content") as response:
                if response.status_code >= 400:
                    response.read()
                    fail(f"file {file_id}: {_error_text(response)}")
                for line in response.iter_lines():
                    if line.strip():
                        yield line.encode("utf-8") + b"\n"
        except httpx.TransportError as exc:
            fail(f"cannot reach the batchyard server at {self.base}: {exc}")

    def create_batch(self, path: Path, *, endpoint: str, model: str | None,
                     provider: str | None) -> BatchRecord:
        """Upload, then create (a forced provider picks its route prefix)."""
        with path.open("rb") as fh:
            uploaded = self._call("POST", "/v1/files", data={"purpose": "batch"},
                                  files={"file": (path.name, fh, "application/jsonl")},
                                  timeout=httpx.Timeout(600.0, connect=5.0))
        body: JsonObject = {"input_file_id": uploaded["id"], "endpoint": endpoint,
                            "completion_window": "24h"}
        if model:
            body["model"] = model
        prefix = f"/{provider}/v1" if provider else "/v1"
        return _batch(self._call("POST", f"{prefix}/batches", json=body))

    def get_batch(self, batch_id: str) -> BatchRecord:
        """GET /v1/batches/{id}."""
        return _batch(self._call("GET", f"/v1/batches/{batch_id}"))

    def list_batches(self, limit: int) -> list[BatchRecord]:
        """GET /v1/batches."""
        page = self._call("GET", "/v1/batches", params={"limit": limit})
        return [_batch(item) for item in page["data"]]

    def cancel_batch(self, batch_id: str) -> BatchRecord:
        """POST /v1/batches/{id}/cancel."""
        return _batch(self._call("POST", f"/v1/batches/{batch_id}/cancel"))

    def parts(self, batch_id: str) -> list[PartSummary]:
        """GET /v1/batches/{id}/parts (our extension)."""
        from batchyard.domain.reports import PartSummary

        page = self._call("GET", f"/v1/batches/{batch_id}/parts", missing_ok=True)
        if page is None:  # a server without the parts route
            return []
        fields = PartSummary.model_fields
        return [PartSummary.model_validate({k: v for k, v in item.items() if k in fields})
                for item in page["data"]]

    def failures(self, batch_id: str, examples: int = 3) -> list[FailureGroup]:
        """Grouped from the batch's error file (its lines carry no line numbers)."""
        from batchyard.domain.reports import FailureExample, FailureGroup

        batch = self.get_batch(batch_id)
        counts: dict[str, int] = {}
        samples: dict[str, list[FailureExample]] = {}
        for line in self._lines(batch.error_file_id):
            example, code = _failure(line)
            counts[code] = counts.get(code, 0) + 1
            if len(samples.setdefault(code, [])) < examples:
                samples[code].append(example)
        order = sorted(counts, key=lambda c: (-counts[c], c))
        return [FailureGroup(code=c, count=counts[c], examples=tuple(samples[c])) for c in order]

    def result_lines(self, batch_id: str, *, failed_only: bool) -> Iterator[bytes]:
        """The output and error files merged back into input order."""
        batch = self.get_batch(batch_id)
        errors = self._lines(batch.error_file_id)
        if failed_only:
            yield from errors
            return
        position = {_custom_id(line): i for i, line in
                    enumerate(self._lines(batch.input_file_id))}
        yield from heapq.merge(self._lines(batch.output_file_id), errors,
                               key=lambda line: position.get(_custom_id(line), len(position)))

    def create_key(self, body: JsonObject) -> JsonObject:
        """POST /admin/keys."""
        return dict(self._call("POST", "/admin/keys", json=body))

    def list_keys(self) -> list[JsonObject]:
        """GET /admin/keys."""
        return list(self._call("GET", "/admin/keys")["data"])

    def revoke_key(self, key_id: str) -> JsonObject:
        """DELETE /admin/keys/{id}."""
        return dict(self._call("DELETE", f"/admin/keys/{key_id}"))

    def cost_report(self, query: JsonObject) -> JsonObject:
        """GET /admin/costs (master key)."""
        params = {("key_id" if k == "owner" else k): v for k, v in query.items()
                  if v is not None}
        return dict(self._call("GET", "/admin/costs", params=params))

    def request_costs(self, batch_id: str) -> JsonObject:
        """GET /admin/costs/requests (master key; with another key: no per-request costs)."""
        try:
            response = self.http.get("/admin/costs/requests", params={"batch_id": batch_id})
        except httpx.TransportError:
            return {"object": "list", "data": []}
        if response.status_code >= 400:
            return {"object": "list", "data": []}
        return dict(response.json())

    def create_schedule(self, spec: JsonObject) -> JsonObject:
        """POST /v1/schedules."""
        return dict(self._call("POST", "/v1/schedules", json=spec))

    def list_schedules(self) -> list[JsonObject]:
        """GET /v1/schedules."""
        return list(self._call("GET", "/v1/schedules")["data"])

    def schedule_action(self, schedule_id: str, action: str) -> JsonObject:
        """GET, POST .../pause|resume, or DELETE one schedule."""
        path = f"/v1/schedules/{schedule_id}"
        if action == "get":
            return dict(self._call("GET", path))
        if action == "delete":
            return dict(self._call("DELETE", path))
        return dict(self._call("POST", f"{path}/{action}"))

    def schedule_runs(self, schedule_id: str, limit: int) -> list[JsonObject]:
        """GET /v1/schedules/{id}/runs."""
        page = self._call("GET", f"/v1/schedules/{schedule_id}/runs", params={"limit": limit})
        return list(page["data"])

    def deployment_health(self) -> list[JsonObject]:
        """GET /health/deployments (master key): the server's own checks."""
        return list(self._call("GET", "/health/deployments")["data"])


def _failure(line: bytes) -> tuple[Any, str]:
    from batchyard.domain.reports import FailureExample

    data = orjson.loads(line)
    response = data.get("response") or {}
    error = data.get("error") or ((response.get("body") or {}).get("error")) or {}
    code = str(error.get("code") or error.get("type") or "")
    return FailureExample(custom_id=str(data.get("custom_id", "")),
                          status_code=response.get("status_code"),
                          message=error.get("message")), code
