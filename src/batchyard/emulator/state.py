"""The live emulator: files, batches, faults, and the operations the routes call."""

from __future__ import annotations

import math
import shutil
import tempfile
import threading
import time
import uuid
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from batchyard.emulator import ids
from batchyard.emulator.config import EmulatorConfig, FaultKnobs
from batchyard.emulator.errors import EmulatorError, bad_request, not_found_batch, not_found_file
from batchyard.emulator.message_batches import MessageBatches
from batchyard.emulator.requests import (
    Outcome,
    hashed_failure,
    http_failure,
    is_transient,
    marker_of,
    marker_outcome,
)
from batchyard.emulator.runner import BatchRunner, Lanes
from batchyard.emulator.store import TERMINAL, BatchEntry, FileEntry, Store
from batchyard.emulator.validation import ValidationResult, normalize_url, validate_lines

T = TypeVar("T")

ENDPOINTS = frozenset({
    "/v1/responses", "/v1/chat/completions", "/v1/embeddings", "/v1/completions",
    "/v1/moderations", "/v1/images/generations", "/v1/images/edits", "/v1/videos",
})


@dataclass(frozen=True)
class CallFault:
    """What to do to one HTTP call: delay it, then maybe answer 429/500 or drop it."""

    delay: float = 0.0
    kind: str | None = None  # "rate_limit" | "overloaded" | "server_error" | "drop"


class Emulator:
    """The state behind one emulator app: inspect it with :meth:`stats`, steer it with
    :meth:`set_faults`, start over with :meth:`reset`."""

    def __init__(self, config: EmulatorConfig) -> None:
        self.config = config
        self.flavor = config.flavor
        self.store = Store()
        self.faults = config.initial_faults()
        self._lock = threading.Lock()
        self._attempts: dict[str, int] = {}
        self._runners: list[Any] = []
        self.lanes = Lanes(config.running_batches)
        self.message_batches = MessageBatches(self)
        if config.data_dir:
            self.data_dir = Path(config.data_dir)
            self.data_dir.mkdir(parents=True, exist_ok=True)
            self._owns_dir = False
        else:
            self.data_dir = Path(tempfile.mkdtemp(prefix="batchyard-emulator-"))
            self._owns_dir = True
            weakref.finalize(self, shutil.rmtree, self.data_dir, True)

    # -- inspection and control ----------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        """Every upload and batch ever created (survives deletes), with filenames/metadata."""
        return self.store.stats()

    def set_faults(self, **knobs: Any) -> FaultKnobs:
        """Change fault knobs (names as in :class:`FaultKnobs`); unknown names raise."""
        with self._lock:
            merged = {**self.faults.model_dump(), **knobs}
            self.faults = FaultKnobs(**merged)
            return self.faults

    def reset(self) -> None:
        """Forget all files, batches, counters and faults (back to the start-up config)."""
        self._stop_runners()
        with self.store.lock:
            paths = [f.path for f in self.store.files.values()]
            self.store = Store()
        for path in paths:
            path.unlink(missing_ok=True)
        with self._lock:
            self.faults = self.config.initial_faults()
            self._attempts.clear()

    def close(self) -> None:
        """Stop background work and remove the temp directory (if the emulator made it)."""
        self._stop_runners()
        if self._owns_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def track(self, runner: Any) -> None:
        """Remember a batch's runner thread, so reset() and close() can stop it."""
        with self._lock:
            self._runners = [r for r in self._runners if r.is_alive()] + [runner]

    def _stop_runners(self) -> None:
        with self._lock:
            runners, self._runners = self._runners, []
        for runner in runners:
            runner.stopped.set()
            runner.batch.cancel_requested.set()
        for runner in runners:
            runner.join(timeout=5)

    # -- faults --------------------------------------------------------------------------
    def _take(self, knob: str) -> bool:
        """Consume one unit of a countdown knob (call with self._lock held)."""
        left = getattr(self.faults, knob)
        if left <= 0:
            return False
        setattr(self.faults, knob, left - 1)
        return True

    def take_call_fault(self, method: str, path: str) -> CallFault | None:
        """The fault (if any) for an API call; consumes the matching countdowns."""
        with self._lock:
            f = self.faults
            if f.fault_path and f.fault_path not in path:
                return None
            if f.fault_method and f.fault_method.upper() != method.upper():
                return None
            delay = f.slow_delay if self._take("slow_next") else 0.0
            kind = None
            for knob, name in (("drop_next", "drop"), ("rate_limit_next", "rate_limit"),
                               ("overloaded_next", "overloaded"),
                               ("server_error_next", "server_error")):
                if self._take(knob):
                    kind = name
                    break
        return CallFault(delay, kind) if delay or kind else None

    def list_visible_from(self) -> float:
        """When something created now may show in list answers (the lagging-list fault)."""
        return time.monotonic() + self.faults.list_lag

    def take_forced_validation(self) -> str | None:
        with self._lock:
            return self.faults.fail_validation_code if self._take("fail_validation_next") else None

    def take_no_output(self) -> bool:
        with self._lock:
            return self._take("no_output_file_next")

    def request_fault(self, line: dict[str, Any]) -> Outcome | None:
        """A per-request failure for this line on this attempt, or None to run it."""
        marker = marker_of(line)
        rate = self.faults.request_failure_rate
        if marker is None and rate <= 0:
            return None
        custom_id = str(line["custom_id"])
        with self._lock:
            attempt = self._attempts[custom_id] = self._attempts.get(custom_id, 0) + 1
        if marker is not None:
            return marker_outcome(marker, attempt)
        if not hashed_failure(custom_id, rate):
            return None
        status = self.faults.request_failure_status
        return None if is_transient(status) and attempt > 1 else http_failure(status)

    def reserve_tokens(self, batch: BatchEntry, result: ValidationResult) -> None:
        """Hold the batch's tokens against its model's quota, or add token_limit_exceeded."""
        quota = self.faults.enqueued_token_quota
        model = result.model or ""
        with self.store.lock:
            used = self.store.enqueued_tokens(model, exclude=batch.id)
            if quota is not None and used + result.tokens > quota:
                result.add("token_limit_exceeded", _quota_message(model, quota), None)
                return
            batch.model, batch.enqueued_tokens = result.model, result.tokens

    # -- files ---------------------------------------------------------------------------
    def new_upload_path(self) -> Path:
        return self.data_dir / f"upload-{uuid.uuid4().hex}"

    def add_upload(
        self, *, filename: str, purpose: str, path: Path, size: int, expires_after: int | None
    ) -> FileEntry:
        now = int(time.time())
        if expires_after is None and purpose == "batch" and self.flavor == "openai":
            expires_after = 30 * 86400
        entry = FileEntry(
            id=ids.upload_file_id(self.flavor), filename=filename, purpose=purpose,
            bytes=size, created_at=now, path=path,
            expires_at=now + expires_after if expires_after else None,
            listed_from=self.list_visible_from(),
        )
        self.store.add_upload(entry)
        return entry

    def get_file(self, file_id: str) -> FileEntry:
        entry = self.store.live_file(file_id)
        if entry is None:
            raise not_found_file(file_id)
        return entry

    def delete_file(self, file_id: str) -> FileEntry:
        entry = self.get_file(file_id)
        entry.deleted = True
        # Runners hold their input open, so unlinking never breaks a running batch.
        entry.path.unlink(missing_ok=True)
        return entry

    # -- batches -------------------------------------------------------------------------
    def create_batch(self, body: Any, snapshot: Callable[[BatchEntry], T]) -> T:
        """Check the create body, record the batch (``validating``) and start its runner.

        ``snapshot`` renders the batch before the runner starts, so the answer always shows
        the ``validating`` status a provider returns, however fast the runner is.
        """
        request = _check_create_body(body, azure=self.flavor == "azure")
        source_file = self.get_file(request["input_file_id"])
        if source_file.purpose != "batch":
            raise bad_request("The input file must be uploaded with purpose 'batch'.",
                              "input_file_id")
        if self.flavor == "azure" and self.config.azure_fail_fast_quota:
            self._fail_fast_quota(source_file, request["endpoint"])
        now = int(time.time())
        batch = BatchEntry(
            id=ids.batch_id(self.flavor), created_at=now,
            expires_at=now + math.ceil(self.config.completion_window),
            not_found_left=self.faults.not_found_after_create,
            listed_from=self.list_visible_from(), **request,
        )
        source = source_file.path.open("rb")
        self.store.add_batch(batch)
        answer = snapshot(batch)
        runner = BatchRunner(self, batch, source)
        self.track(runner)
        self.lanes.line_up(runner)
        runner.start()
        return answer

    def _fail_fast_quota(self, source_file: FileEntry, endpoint: str) -> None:
        quota = self.faults.enqueued_token_quota
        if quota is None:
            return
        with source_file.path.open("rb") as handle:
            result = validate_lines(handle, endpoint=endpoint, azure=True,
                                    max_requests=self.config.request_limit())
        model = result.model or ""
        if self.store.enqueued_tokens(model) + result.tokens > quota:
            raise EmulatorError(400, "token_limit_exceeded: " + _quota_message(model, quota),
                                code="token_limit_exceeded", azure_code="token_limit_exceeded")

    def get_batch(self, batch_id: str) -> BatchEntry:
        with self.store.lock:
            batch = self.store.batches.get(batch_id)
            if batch is None:
                raise not_found_batch(batch_id)
            batch.retrieves += 1
            if batch.not_found_left > 0:  # emulates read-after-create lag
                batch.not_found_left -= 1
                raise not_found_batch(batch_id)
            return batch

    def cancel_batch(self, batch_id: str) -> BatchEntry:
        with self.store.lock:
            batch = self.store.batches.get(batch_id)
            if batch is None:
                raise not_found_batch(batch_id)
            if batch.status in TERMINAL:
                raise EmulatorError(
                    400, f"Cannot cancel a batch with status '{batch.status}'.",
                    azure_code="unexpectedEntityState")
            if batch.status != "cancelling":
                batch.status = "cancelling"
                batch.timestamps["cancelling_at"] = int(time.time())
                batch.cancel_requested.set()
            return batch


def _quota_message(model: str, quota: int) -> str:
    return (f"Enqueued token limit reached for {model} in organization org-emulator. "
            f"Limit: {quota:,} enqueued tokens. Please try again once some in_progress "
            "batches have been completed.")


def _check_create_body(body: Any, *, azure: bool) -> dict[str, Any]:
    """Validate a create-batch body; returns the BatchEntry fields it sets."""
    if not isinstance(body, dict):
        raise bad_request("The request body must be a JSON object.")
    file_id = body.get("input_file_id")
    if not isinstance(file_id, str) or not file_id:
        raise bad_request("Missing required parameter: 'input_file_id'.", "input_file_id")
    endpoint = body.get("endpoint")
    allowed = {normalize_url(e, azure) for e in ENDPOINTS}
    if not isinstance(endpoint, str) or normalize_url(endpoint, azure) not in allowed:
        raise bad_request(f"Invalid value for 'endpoint': {endpoint!r}.", "endpoint")
    window = body.get("completion_window")
    if not isinstance(window, str) or (window != "24h" and not azure):
        # Azure accepts the call and fails the job later (see the runner).
        raise bad_request("Invalid value for 'completion_window': must be '24h'.",
                          "completion_window")
    return {
        "input_file_id": file_id,
        "endpoint": endpoint,
        "completion_window": window,
        "metadata": _check_metadata(body.get("metadata")),
        "output_expires_after": _check_expiry(body.get("output_expires_after"), azure),
    }


def _check_metadata(metadata: Any) -> dict[str, str] | None:
    if metadata is None:
        return None
    if not isinstance(metadata, dict) or len(metadata) > 16:
        raise bad_request("metadata must be an object of at most 16 pairs.", "metadata")
    for key, value in metadata.items():
        if not isinstance(value, str) or len(key) > 64 or len(value) > 512:
            raise bad_request("metadata keys must be <= 64 chars and values strings <= 512.",
                              "metadata")
    return dict(metadata)


def _check_expiry(value: Any, azure: bool) -> int | None:
    if value is None:
        return None
    low = 1_209_600 if azure else 3600
    seconds = value.get("seconds") if isinstance(value, dict) else None
    if (not isinstance(seconds, int) or not low <= seconds <= 2_592_000
            or value.get("anchor") != "created_at"):
        raise bad_request(f"output_expires_after needs anchor 'created_at' and seconds in "
                          f"[{low}, 2592000].", "output_expires_after")
    return seconds
