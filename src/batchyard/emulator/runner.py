"""The background life of one batch: validating -> in_progress -> finalizing -> completed.

Each batch runs in its own daemon thread so a long file never blocks the HTTP event loop
(and so an app driven in-process through ``httpx.ASGITransport`` still progresses). The
input is read twice, line by line (validation, then execution); results stream to disk.

With ``running_batches`` set, batches take turns through :class:`Lanes` in arrival order
(a queued batch stays ``validating``), so on a busy emulator the first batch ends first
instead of every batch ending late together.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any, Protocol

import orjson

from batchyard.emulator import ids
from batchyard.emulator.config import EmulatorConfig
from batchyard.emulator.requests import CANCELLED, EXPIRED, Outcome, run_request
from batchyard.emulator.store import BatchEntry, FileEntry, Store
from batchyard.emulator.validation import ValidationResult, validate_lines

logger = logging.getLogger(__name__)
_BUFFER = 1024 * 1024
_BOM = b"\xef\xbb\xbf"


class Lanes:
    """At most ``slots`` batches at work at once, admitted in arrival order (None: no limit).

    A waiting runner checks ``halted`` every 50 ms, so a cancel or a reset reaches a queued
    batch at once whatever the batches ahead of it do.
    """

    def __init__(self, slots: int | None) -> None:
        self.slots = slots
        self._cond = threading.Condition()
        self._queue: deque[object] = deque()
        self._busy = 0

    def line_up(self, token: object) -> None:
        """Take a place in the queue now (at create, so the order is the arrival order)."""
        if self.slots is not None:
            with self._cond:
                self._queue.append(token)

    def enter(self, token: object, halted: Callable[[], bool]) -> bool:
        """Wait for a lane; False (and no lane taken) once ``halted()`` is true meanwhile."""
        if self.slots is None:
            return True
        with self._cond:
            if token not in self._queue:
                self._queue.append(token)
            while self._busy >= self.slots or self._queue[0] is not token:
                if halted():
                    self._queue.remove(token)
                    self._cond.notify_all()
                    return False
                self._cond.wait(0.05)
            self._queue.popleft()
            self._busy += 1
            return True

    def leave(self) -> None:
        if self.slots is None:
            return
        with self._cond:
            self._busy -= 1
            self._cond.notify_all()


class RunnerHost(Protocol):
    """What a runner needs from the live emulator (the state module implements it), so the
    runner never imports the state module that starts it."""

    config: EmulatorConfig
    store: Store
    data_dir: Path
    lanes: Lanes

    def take_forced_validation(self) -> str | None: ...
    def take_no_output(self) -> bool: ...
    def reserve_tokens(self, batch: BatchEntry, result: ValidationResult) -> None: ...
    def request_fault(self, line: dict[str, Any]) -> Outcome | None: ...


class _Sinks:
    """The output and error files being written for a batch."""

    def __init__(self, directory: Path, batch_id: str) -> None:
        self.output_path = directory / f"{batch_id}_output.jsonl"
        self.error_path = directory / f"{batch_id}_error.jsonl"
        self.output: IO[bytes] = self.output_path.open("wb", buffering=_BUFFER)
        self.error: IO[bytes] = self.error_path.open("wb", buffering=_BUFFER)

    def close(self) -> None:
        self.output.close()
        self.error.close()


class BatchRunner(threading.Thread):
    """Drives one batch through the provider's status sequence at the configured speed."""

    def __init__(self, emulator: RunnerHost, batch: BatchEntry, source: IO[bytes]) -> None:
        super().__init__(name=f"emulator-{batch.id}", daemon=True)
        self.emu = emulator
        self.cfg = emulator.config
        self.batch = batch
        self.source = source
        self.azure = emulator.config.flavor == "azure"
        self.stopped = threading.Event()  # set by reset()/close(): abandon quietly
        self.deadline = time.monotonic() + self.cfg.completion_window
        self.tokens_in = self.tokens_out = 0

    # -- helpers -------------------------------------------------------------------------
    def _wait(self, seconds: float) -> bool:
        """Sleep; False when cancelled (or stopped) meanwhile."""
        if seconds > 0:
            self.batch.cancel_requested.wait(seconds)
        return not self._halted()

    def _halted(self) -> bool:
        return self.batch.cancel_requested.is_set() or self.stopped.is_set()

    def _lines(self) -> Iterator[bytes]:
        self.source.seek(0)
        yield from self.source

    def _set(self, status: str, **fields: Any) -> None:
        with self.emu.store.lock:
            if self.batch.status == "cancelling" and status != "cancelled":
                return  # cancel wins over progress
            self.batch.status = status
            self.batch.timestamps[f"{status}_at"] = int(time.time())
            for key, value in fields.items():
                setattr(self.batch, key, value)

    # -- the life ------------------------------------------------------------------------
    def run(self) -> None:
        try:
            self._life()
        except Exception:
            logger.exception("emulator.batch_crashed", extra={"batch_id": self.batch.id})
            self._fail([{"code": "internal_error", "message": "The emulator failed.",
                         "param": None, "line": None}])
        finally:
            self.source.close()

    def _life(self) -> None:
        lanes = self.emu.lanes
        if not lanes.enter(self, self._halted):
            return self._cancelled(None, run_started=False)
        in_lane = True
        try:
            if not self._wait(self.cfg.validation_delay):
                return self._cancelled(None, run_started=False)
            result = self._validate()
            if result.errors:
                return self._fail(result.errors)
            with self.emu.store.lock:
                cancelled = self.batch.cancel_requested.is_set()
                if not cancelled:
                    self._set("in_progress", total=result.total)
            if cancelled:  # outside the lock: the grace period must not block the API
                return self._cancelled(None, run_started=False)
            sinks = _Sinks(self.emu.data_dir, self.batch.id)
            try:
                unrun = self._execute(sinks)
                lanes.leave()  # the rest is waiting and file bookkeeping
                in_lane = False
                self._conclude(sinks, unrun)
            finally:
                sinks.close()
        finally:
            if in_lane:
                lanes.leave()

    def _validate(self) -> ValidationResult:
        result = validate_lines(
            self._lines(),
            endpoint=self.batch.endpoint,
            azure=self.azure,
            max_requests=self.cfg.request_limit(),
            known_models=self.cfg.known_models,
        )
        if not result.errors and self.batch.completion_window != "24h":
            result.add("invalid_request", "completion_window must be '24h'.", None,
                       "completion_window")
        forced = self.emu.take_forced_validation()
        if not result.errors and forced:
            result.add(forced, f"Validation failed ({forced}), as the emulator was told.", 1)
        if not result.errors:
            self.emu.reserve_tokens(self.batch, result)
        return result

    def _fail(self, errors: list[dict[str, Any]]) -> None:
        if self.batch.cancel_requested.is_set():  # a cancel during validation wins
            return self._cancelled(None, run_started=False)
        self._set("failed", errors=errors, enqueued_tokens=0)

    # -- execution -----------------------------------------------------------------------
    def _execute(self, sinks: _Sinks) -> list[str]:
        """Run lines until done, cancelled or expired; returns custom_ids never run."""
        unrun: list[str] = []
        expires, deadline, cfg = not self.azure, self.deadline, self.cfg
        cancel, stopped = self.batch.cancel_requested, self.stopped
        azure, dims, fault = self.azure, cfg.embedding_dimensions, self.emu.request_fault
        record, loads, now = self._record, orjson.loads, time.monotonic
        for raw in self._lines():
            if raw.isspace() or not raw:
                continue
            line = loads(raw.removeprefix(_BOM))
            if unrun or cancel.is_set() or stopped.is_set() or (expires and now() >= deadline):
                unrun.append(line["custom_id"])
                continue
            if cfg.request_latency > 0:  # read per line: it may be changed on a live emulator
                cancel.wait(cfg.request_latency)
            outcome = run_request(line, azure=azure, dims=dims, injected=fault(line))
            record(sinks, line["custom_id"], outcome)
        return unrun

    def _record(self, sinks: _Sinks, custom_id: str, outcome: Outcome) -> None:
        """Write one output (2xx) or error line, rendered in one go."""
        response = None
        if outcome.status is not None:
            response = {"status_code": outcome.status,
                        "request_id": ids.request_id(self.cfg.flavor), "body": outcome.body}
        if self.azure:
            item = {"custom_id": custom_id, "response": response, "error": outcome.error}
        else:
            item = {"id": ids.batch_request_id(), "custom_id": custom_id, "response": response,
                    "error": outcome.error}
        b = self.batch
        if outcome.ok:
            sinks.output.write(orjson.dumps(item, option=orjson.OPT_APPEND_NEWLINE))
            self.tokens_in += outcome.tokens_in
            self.tokens_out += outcome.tokens_out
            b.completed += 1
        else:
            sinks.error.write(orjson.dumps(item, option=orjson.OPT_APPEND_NEWLINE))
            b.failed += 1

    def _conclude(self, sinks: _Sinks, unrun: list[str]) -> None:
        if self.stopped.is_set():
            return
        if self.batch.cancel_requested.is_set():
            self._wait_grace()
            return self._cancelled(sinks, run_started=True, unrun=unrun)
        if unrun:  # only expiry leaves requests unrun without a cancel
            self._write_unrun(sinks, unrun, EXPIRED)
            return self._publish(sinks, "expired")
        self._set("finalizing")
        if not self._wait(self.cfg.finalize_delay) and self.batch.cancel_requested.is_set():
            self._wait_grace()
            return self._cancelled(sinks, run_started=True)
        self._publish(sinks, "completed")

    def _wait_grace(self) -> None:
        if self.cfg.cancel_grace > 0:
            self.stopped.wait(self.cfg.cancel_grace)

    def _write_unrun(self, sinks: _Sinks, unrun: list[str], error: dict[str, str]) -> None:
        for custom_id in unrun:
            self._record(sinks, custom_id, Outcome(None, None, error))

    def _cancelled(
        self, sinks: _Sinks | None, *, run_started: bool, unrun: list[str] | None = None
    ) -> None:
        if self.stopped.is_set():
            return
        if not run_started or sinks is None:
            self._wait_grace()
            self._set("cancelled", enqueued_tokens=0)
            return
        self._write_unrun(sinks, unrun or [], CANCELLED)
        self._publish(sinks, "cancelled")

    # -- result files --------------------------------------------------------------------
    def _publish(self, sinks: _Sinks, status: str) -> None:
        """Register the result files (per the flavor's rules) and enter ``status``."""
        sinks.close()
        b = self.batch
        drop_output = self.emu.take_no_output()
        output_id = None
        if b.completed and not drop_output:
            output_id = self._register(sinks.output_path)
        error_id = None
        if b.failed or self.azure:  # Azure always creates an error file, maybe empty
            error_id = self._register(sinks.error_path)
        usage = {"input_tokens": self.tokens_in, "output_tokens": self.tokens_out,
                 "total_tokens": self.tokens_in + self.tokens_out}
        with self.emu.store.lock:
            b.status = status
            b.timestamps[f"{status}_at"] = int(time.time())
            b.output_file_id, b.error_file_id = output_id, error_id
            b.usage, b.enqueued_tokens = usage, 0

    def _register(self, path: Path) -> str:
        now = int(time.time())
        ttl = self.batch.output_expires_after
        if ttl is None and not self.azure:
            ttl = 30 * 86400
        entry = FileEntry(
            id=ids.output_file_id(self.cfg.flavor),
            filename=path.name,
            purpose="batch_output",
            bytes=path.stat().st_size,
            created_at=now,
            path=path,
            expires_at=now + ttl if ttl else None,
        )
        self.emu.store.add_output(entry)
        return entry.id
