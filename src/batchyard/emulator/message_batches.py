"""Anthropic Message Batches: create, retrieve, list, cancel, delete, results.

A batch is ``in_progress`` from its create, ``canceling`` once a cancel is asked for, and
``ended`` when every request has a result. ``request_counts`` show every request as
``processing`` until the end, then move all at once. The requests arrive inline in the
create body; they are written to disk as JSONL and the runner streams them, writing result
lines to disk in an order that is not the input order (as the real service warns).
"""

from __future__ import annotations

import re
import threading
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import orjson

from batchyard.emulator import ids
from batchyard.emulator.config import EmulatorConfig
from batchyard.emulator.errors import EmulatorError
from batchyard.emulator.messages import MessageResult, run_message
from batchyard.emulator.requests import Outcome
from batchyard.emulator.runner import Lanes
from batchyard.emulator.store import Store

CUSTOM_ID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_BUFFER = 1024 * 1024
_OUTCOMES = ("succeeded", "errored", "canceled", "expired")


@dataclass
class MessageBatchEntry:
    """One Message Batch; times are unix seconds (floats, rendered as RFC 3339)."""

    id: str
    created_at: float
    expires_at: float
    total: int
    model: str | None
    first_custom_id: str
    requests_path: Path
    status: str = "in_progress"
    ended_at: float | None = None
    cancel_initiated_at: float | None = None
    results_path: Path | None = None
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(_OUTCOMES, 0))
    listed_from: float = 0.0
    deleted: bool = False
    cancel_requested: threading.Event = field(default_factory=threading.Event)

    def request_counts(self) -> dict[str, int]:
        """Everything ``processing`` until the batch ends, then the outcome tallies."""
        if self.status != "ended":
            return {"processing": self.total, **dict.fromkeys(_OUTCOMES, 0)}
        return {"processing": 0, **self.counts}


def rfc3339(seconds: float | None) -> str | None:
    """``2024-08-20T18:37:24.100435Z``."""
    if seconds is None:
        return None
    return datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z")


def batch_object(batch: MessageBatchEntry, base_url: str) -> dict[str, Any]:
    """The MessageBatch wire object."""
    results_url = None
    if batch.status == "ended":
        results_url = f"{base_url.rstrip('/')}/v1/messages/batches/{batch.id}/results"
    return {
        "id": batch.id, "type": "message_batch", "processing_status": batch.status,
        "request_counts": batch.request_counts(), "ended_at": rfc3339(batch.ended_at),
        "created_at": rfc3339(batch.created_at), "expires_at": rfc3339(batch.expires_at),
        "archived_at": None, "cancel_initiated_at": rfc3339(batch.cancel_initiated_at),
        "results_url": results_url,
    }


class Host(Protocol):
    """What Message Batches need from the live emulator."""

    config: EmulatorConfig
    store: Store
    data_dir: Path

    lanes: Lanes

    def request_fault(self, line: dict[str, Any]) -> Outcome | None: ...
    def list_visible_from(self) -> float: ...
    def track(self, runner: Any) -> None: ...


def bad(message: str) -> EmulatorError:
    return EmulatorError(400, message)


def not_found(batch_id: str) -> EmulatorError:
    return EmulatorError(404, f"message_batch_id: no batch found with id {batch_id!r}")


class MessageBatches:
    """The Message Batches operations over the emulator's store."""

    def __init__(self, host: Host) -> None:
        self.host = host

    def create(self, raw: bytes) -> dict[str, Any]:
        """Check the envelope, store the requests, start the runner; answers the batch."""
        if len(raw) > self.host.config.max_batch_bytes:
            raise EmulatorError(413, "Request exceeds the maximum allowed number of bytes.")
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise bad("The request body is not valid JSON.") from exc
        requests = _check_envelope(body, self.host.config.request_limit())
        now = time.time()
        batch_id = ids.message_batch_id()
        path = self.host.data_dir / f"{batch_id}_requests.jsonl"
        with path.open("wb", buffering=_BUFFER) as out:
            for item in requests:
                out.write(orjson.dumps(item) + b"\n")
        first = requests[0]
        params = first["params"] if isinstance(first["params"], dict) else {}
        model = params.get("model") if isinstance(params.get("model"), str) else None
        batch = MessageBatchEntry(
            id=batch_id, created_at=now, expires_at=now + self.host.config.completion_window,
            total=len(requests), model=model, first_custom_id=first["custom_id"],
            requests_path=path, listed_from=self.host.list_visible_from())
        del requests, body
        store = self.host.store
        with store.lock:
            store.message_batches[batch.id] = batch
            store.message_created.append(batch)
            answer = batch_object(batch, "")
        runner = MessageBatchRunner(self.host, batch)
        self.host.track(runner)
        self.host.lanes.line_up(runner)
        runner.start()
        return answer

    def get(self, batch_id: str) -> MessageBatchEntry:
        with self.host.store.lock:
            batch = self.host.store.message_batches.get(batch_id)
        if batch is None or batch.deleted:
            raise not_found(batch_id)
        return batch

    def list_page(self, limit: int, after_id: str | None,
                  before_id: str | None) -> tuple[list[MessageBatchEntry], bool]:
        """Newest first; ``after_id`` pages to older batches, ``before_id`` to newer ones."""
        now = time.monotonic()
        with self.host.store.lock:
            items = [b for b in self.host.store.message_batches.values()
                     if not b.deleted and b.listed_from <= now][::-1]
        ids_ = [b.id for b in items]
        if before_id:
            end = ids_.index(before_id) if before_id in ids_ else 0
            start = max(0, end - limit)
            return items[start:end], start > 0
        start = ids_.index(after_id) + 1 if after_id in ids_ else (len(items) if after_id else 0)
        return items[start:start + limit], start + limit < len(items)

    def cancel(self, batch_id: str) -> MessageBatchEntry:
        batch = self.get(batch_id)
        with self.host.store.lock:
            if batch.status == "ended":
                raise bad(f"Batch {batch_id} has already ended and cannot be canceled.")
            if batch.status == "in_progress":
                batch.status = "canceling"
                batch.cancel_initiated_at = time.time()
                batch.cancel_requested.set()
        return batch

    def delete(self, batch_id: str) -> dict[str, str]:
        batch = self.get(batch_id)
        with self.host.store.lock:
            if batch.status != "ended":
                raise bad(f"Batch {batch_id} cannot be deleted while it is still processing; "
                          "cancel it first.")
            batch.deleted = True
        if batch.results_path is not None:
            batch.results_path.unlink(missing_ok=True)
        return {"id": batch.id, "type": "message_batch_deleted"}

    def results_path(self, batch_id: str) -> Path:
        batch = self.get(batch_id)
        if batch.status != "ended" or batch.results_path is None:
            raise EmulatorError(404, f"Results for batch {batch_id} are not available yet; "
                                "the batch is still processing.")
        return batch.results_path


def _check_envelope(body: Any, limit: int) -> list[dict[str, Any]]:
    """The create body's ``requests``; only the envelope is checked here."""
    if not isinstance(body, dict) or not isinstance(body.get("requests"), list):
        raise bad("requests: Field required")
    requests = body["requests"]
    if not requests:
        raise bad("requests: List should have at least 1 item after validation, not 0")
    if len(requests) > limit:
        raise bad(f"requests: List should have at most {limit} items after validation, "
                  f"not {len(requests)}")
    seen: set[str] = set()
    for n, item in enumerate(requests):
        if not isinstance(item, dict) or not isinstance(item.get("params"), dict):
            raise bad(f"requests.{n}.params: Field required")
        custom_id = item.get("custom_id")
        if not isinstance(custom_id, str) or not CUSTOM_ID.match(custom_id):
            raise bad(f"requests.{n}.custom_id: String should match pattern "
                      "'^[a-zA-Z0-9_-]{1,64}$'")
        if custom_id in seen:
            raise bad(f"Duplicate custom_id: {custom_id!r}. Each custom_id in a batch must be "
                      "unique.")
        seen.add(custom_id)
    return requests


class MessageBatchRunner(threading.Thread):
    """Runs one Message Batch to ``ended`` (cancel and expiry included)."""

    def __init__(self, host: Host, batch: MessageBatchEntry) -> None:
        super().__init__(name=f"emulator-{batch.id}", daemon=True)
        self.host = host
        self.cfg = host.config
        self.batch = batch
        self.stopped = threading.Event()
        self.deadline = time.monotonic() + self.cfg.completion_window

    def run(self) -> None:
        b = self.batch
        # A batch waiting for a lane (``running_batches``) stays in_progress; a cancel
        # meanwhile lets it through to answer every request canceled.
        lanes = self.host.lanes
        in_lane = lanes.enter(self, lambda: b.cancel_requested.is_set() or self.stopped.is_set())
        try:
            b.cancel_requested.wait(self.cfg.validation_delay)
            if self.stopped.is_set():
                return
            base = self.host.data_dir / b.id
            sinks = [Path(f"{base}_results_{n}.jsonl") for n in (0, 1)]
            handles = [path.open("wb", buffering=_BUFFER) for path in sinks]
            try:
                for custom_id, result in self._results():
                    b.counts[result.type] += 1
                    # Two interleaved files joined in the other order: not the input order.
                    handles[zlib.crc32(custom_id.encode()) & 1].write(
                        orjson.dumps(result.line(custom_id)) + b"\n")
            finally:
                for handle in handles:
                    handle.close()
        finally:
            if in_lane:
                lanes.leave()
        if self.stopped.is_set():
            return
        if b.cancel_requested.is_set():
            self.stopped.wait(self.cfg.cancel_grace)
        self._end(sinks)

    def _requests(self) -> Iterator[dict[str, Any]]:
        with self.batch.requests_path.open("rb") as source:
            for raw in source:
                yield orjson.loads(raw)

    def _results(self) -> Iterator[tuple[str, MessageResult]]:
        b = self.batch
        for item in self._requests():
            custom_id = item["custom_id"]
            if self.stopped.is_set():
                return
            if b.cancel_requested.is_set():
                yield custom_id, MessageResult("canceled")
                continue
            if time.monotonic() >= self.deadline:
                yield custom_id, MessageResult("expired")
                continue
            if self.cfg.request_latency > 0:
                b.cancel_requested.wait(self.cfg.request_latency)
            fault = self.host.request_fault({"custom_id": custom_id, "body": item["params"]})
            yield custom_id, run_message(item["params"], fault, self.cfg.known_models)

    def _end(self, sinks: list[Path]) -> None:
        results = self.host.data_dir / f"{self.batch.id}_results.jsonl"
        with results.open("wb") as out:
            for path in reversed(sinks):
                with path.open("rb") as part:
                    while chunk := part.read(_BUFFER):
                        out.write(chunk)
                path.unlink()
        with self.host.store.lock:
            self.batch.results_path = results
            self.batch.status = "ended"
            self.batch.ended_at = time.time()
        self.batch.requests_path.unlink(missing_ok=True)
